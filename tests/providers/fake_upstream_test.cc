// The fake upstream itself, spoken to over a raw socket, so the other tests can trust it.
#include "tests/support/fake_upstream.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace terse::testing {
namespace {

using ::testing::HasSubstr;

// A blocking HTTP/1.1 client on one connection, reading with bounded waits.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }

  void Post(std::string_view path, std::string_view body) {
    std::string request =
        "POST " + std::string(path) + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
    ASSERT_EQ(::send(fd_, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
  }

  // Reads until `until` appears in what was read, the peer closes, or 5 s pass.
  std::string ReadUntil(std::string_view until) {
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (received_.find(until) == std::string::npos && absl::Now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      received_.append(buf, static_cast<size_t>(n));
    }
    std::string out;
    out.swap(received_);
    return out;
  }
  bool closed() const { return closed_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

TEST(FakeUpstreamTest, AnswersChatEchoingTheLastUserMessageAndKeepsTheConnection) {
  FakeUpstream upstream;
  RawClient client(upstream.port());
  ASSERT_TRUE(client.connected());
  client.Post("/v1/chat/completions",
              R"({"model":"m","messages":[{"role":"system","content":"be brief"},)"
              R"({"role":"user","content":"hello there world"}]})");
  std::string answer = client.ReadUntil("}}");
  EXPECT_THAT(answer, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(answer, HasSubstr(R"("content":"hello there world")"));
  EXPECT_THAT(answer, HasSubstr(R"("usage":{"prompt_tokens":5,"completion_tokens":3)"));

  client.Post("/v1/chat/completions",
              R"({"model":"m","stream":true,"stream_options":{"include_usage":true},)"
              R"("messages":[{"role":"user","content":"one two"}]})");
  std::string stream = client.ReadUntil("0\r\n\r\n");
  EXPECT_THAT(stream, HasSubstr("text/event-stream"));
  EXPECT_THAT(stream, HasSubstr(R"("delta":{"content":"one "})"));
  EXPECT_THAT(stream, HasSubstr(R"("choices":[],"usage")"));
  EXPECT_THAT(stream, HasSubstr("data: [DONE]"));

  EXPECT_EQ(upstream.connections_accepted(), 1);
  ASSERT_EQ(upstream.request_count(), 2u);
  EXPECT_EQ(upstream.requests()[0].path, "/v1/chat/completions");
  EXPECT_EQ(upstream.requests()[0].Header("Content-Type"), "application/json");
  EXPECT_EQ(upstream.requests()[1].JsonBody()["stream"], true);
}

TEST(FakeUpstreamTest, FailsResetsAndStallsAsTold) {
  FakeUpstream upstream;
  upstream.EnqueueReply(FakeReply::Fail(429, "slow down", "rate_limit_error"));
  upstream.EnqueueReply(FakeReply::Reset());
  RawClient client(upstream.port());
  client.Post("/v1/chat/completions", R"({"messages":[]})");
  std::string answer = client.ReadUntil("}}");
  EXPECT_THAT(answer, HasSubstr("429 Too Many Requests"));
  EXPECT_THAT(answer, HasSubstr(R"("message":"slow down","type":"rate_limit_error")"));
  client.Post("/v1/chat/completions", R"({"messages":[]})");
  client.ReadUntil("never");
  EXPECT_TRUE(client.closed());

  upstream.SetDefaultReply(FakeReply::Stall());
  {
    RawClient stalled(upstream.port());
    stalled.Post("/v1/chat/completions", R"({"messages":[]})");
    ASSERT_TRUE(upstream.WaitForRequestCount(3, absl::Seconds(5)));
  }
  EXPECT_TRUE(upstream.WaitForAnswersCutByClient(1, absl::Seconds(5)));
}

TEST(FakeUpstreamTest, AnswersAnthropicMessagesWithTypedEvents) {
  FakeUpstream upstream;
  RawClient client(upstream.port());
  client.Post("/v1/messages",
              R"({"model":"claude","max_tokens":10,"stream":true,"system":"sys",)"
              R"("messages":[{"role":"user","content":[{"type":"text","text":"hi you"}]}]})");
  std::string stream = client.ReadUntil("0\r\n\r\n");
  EXPECT_THAT(stream, HasSubstr("event: message_start"));
  EXPECT_THAT(stream, HasSubstr(R"("delta":{"type":"text_delta","text":"hi "})"));
  EXPECT_THAT(stream, HasSubstr(R"("usage":{"output_tokens":2})"));
  EXPECT_THAT(stream, HasSubstr("event: message_stop"));
}

TEST(FakeUpstreamTest, ShutsDownWhileAnswersAreStalled) {
  auto upstream = std::make_unique<FakeUpstream>();
  upstream->SetDefaultReply(FakeReply::Stall());
  RawClient client(upstream->port());
  client.Post("/v1/chat/completions", R"({"messages":[]})");
  ASSERT_TRUE(upstream->WaitForRequestCount(1, absl::Seconds(5)));
  upstream.reset();  // must return although the answer never came
  client.ReadUntil("never");
  EXPECT_TRUE(client.closed());
}

}  // namespace
}  // namespace terse::testing
