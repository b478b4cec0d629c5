// The HTTP/1.1 transport with a handler of the test's own, no OpenAI API and no pipeline behind
// it: requests reach the handler whole, answers given now, later from another thread, or as a
// stream go out framed, refused requests reach OnRefused, and a client that leaves abandons its
// exchange. (http_server_test covers the transport further, under the OpenAI API.)
#include "proxy/http_transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/errors.h"
#include "tests/proxy/test_env.h"

namespace terse::proxy {
namespace {

using ::terse::proxy::testing::HttpClient;
using ::testing::Contains;
using ::testing::Pair;

// Answers by path: /echo with the request as text, /later from another thread, /stream with
// three pieces of a stream, /hold never (until the client leaves). Records what it saw.
class TestHandler : public HttpHandler {
 public:
  // A delivery from another thread: the answer, given on the connection's thread.
  class Later : public HttpDelivery {
   public:
    explicit Later(HttpExchange exchange) : exchange_(std::move(exchange)) {}
    void Deliver() override { exchange_.Respond(200, "text/plain", "", "later"); }

   private:
    HttpExchange exchange_;
  };

  void OnRequest(HttpRequest request, HttpExchange exchange) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.push_back(request);  // a copy: the room past the body is noted apart
      body_room_.push_back(request.body.capacity() - request.body.size());
    }
    if (request.target == "/echo") {
      return exchange.Respond(200, "text/plain", "x-seen: yes\r\n",
                              absl::StrCat(request.method, " ", request.target, " ", request.body));
    }
    if (request.target == "/later") {
      std::lock_guard<std::mutex> lock(mu_);
      threads_.emplace_back([exchange] { exchange.Schedule(std::make_shared<Later>(exchange)); });
      return;
    }
    if (request.target == "/stream") {
      exchange.StartStream(200, "text/plain", "");
      for (const char* piece : {"one ", "two ", "three"}) exchange.Stream(piece);
      return exchange.EndStream();
    }
    exchange.OnAbandoned([this] {
      std::lock_guard<std::mutex> lock(mu_);
      ++abandoned_;
      changed_.notify_all();
    });
  }

  void OnRefused(const absl::Status& error, const HttpRequest& request,
                 HttpExchange exchange) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      refused_.push_back({error, request});
    }
    exchange.Respond(DetailOf(error).http_status, "text/plain", "", std::string(error.message()));
  }

  ~TestHandler() {
    for (std::thread& t : threads_) t.join();
  }

  std::vector<HttpRequest> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }
  std::vector<size_t> body_room() {
    std::lock_guard<std::mutex> lock(mu_);
    return body_room_;
  }
  std::vector<std::pair<absl::Status, HttpRequest>> refused() {
    std::lock_guard<std::mutex> lock(mu_);
    return refused_;
  }
  bool WaitAbandoned(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return abandoned_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<HttpRequest> requests_;
  std::vector<size_t> body_room_;
  std::vector<std::pair<absl::Status, HttpRequest>> refused_;
  int abandoned_ = 0;
  std::vector<std::thread> threads_;  // answering /later
};

class HttpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpTransportOptions options;
    options.io_threads = 2;
    options.max_body_bytes = 1024;
    auto started = HttpTransport::Start(options, handler_, /*engine=*/nullptr);
    ASSERT_TRUE(started.ok()) << started.status();
    transport_ = *std::move(started);
  }
  void TearDown() override { transport_->Shutdown(absl::Seconds(1)); }

  TestHandler handler_;  // outlives the transport
  std::unique_ptr<HttpTransport> transport_;
};

TEST_F(HttpTransportTest, AWholeRequestReachesTheHandlerAndItsAnswerTheClient) {
  HttpClient client(transport_->port());
  auto r = client.Request("POST", "/echo", "hello", {{"X-Request-Id", "mine-1"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "POST /echo hello");
  EXPECT_EQ(r->Header("x-seen"), "yes");
  EXPECT_EQ(r->Header("content-type"), "text/plain");
  EXPECT_EQ(r->Header("x-request-id"), "mine-1");
  std::vector<HttpRequest> seen = handler_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].request_id, "mine-1");
  EXPECT_THAT(seen[0].headers, Contains(Pair("x-request-id", "mine-1")));  // names lower-cased
  EXPECT_GE(handler_.body_room().at(0), HttpRequest::kBodyEditRoom);
}

TEST_F(HttpTransportTest, AnswersFromOtherThreadsAndStreamsArriveInOrder) {
  HttpClient client(transport_->port());
  auto later = client.Request("GET", "/later");
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->body, "later");
  auto stream = client.Request("GET", "/stream");  // the same connection: kept alive
  ASSERT_TRUE(stream.has_value());
  EXPECT_EQ(stream->Header("transfer-encoding"), "chunked");
  EXPECT_EQ(stream->body, "one two three");
}

TEST_F(HttpTransportTest, RefusedRequestsReachTheHandlerAndTheConnectionCloses) {
  HttpClient big(transport_->port());
  ASSERT_TRUE(big.SendRaw("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n"));
  auto r = big.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(big.WaitClosed());

  HttpClient garbage(transport_->port());
  ASSERT_TRUE(garbage.SendRaw("not http\r\n\r\n"));
  r = garbage.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);

  auto refused = handler_.refused();
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(DetailOf(refused[0].first).http_status, 413);
  EXPECT_EQ(refused[0].second.target, "/echo");  // the head, for the handler to go by
  EXPECT_EQ(refused[0].second.body, "");
  EXPECT_EQ(refused[1].second.target, "");  // nothing could be read
  EXPECT_TRUE(handler_.requests().empty());
}

TEST_F(HttpTransportTest, AClientThatLeavesAbandonsItsExchange) {
  {
    HttpClient client(transport_->port());
    ASSERT_TRUE(client.SendRequest("GET", "/hold", ""));
    for (int i = 0; i < 100 && handler_.requests().empty(); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    client.Close();
  }
  EXPECT_TRUE(handler_.WaitAbandoned(1));
}

}  // namespace
}  // namespace terse::proxy
