// The engine against the fake upstream, once over terse's own HTTP/1.1 connections and once over
// libcurl's (the same contract): bodies, streaming as bytes arrive, keep-alive, stale
// connections, limits, timeouts, cancellation, many exchanges on the one loop thread, shutdown.
#include "providers/http_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "providers/upstream_errors.h"
#include "tests/providers/recorders.h"
#include "tests/support/fake_upstream.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::FakeReply;
using ::terse::testing::FakeUpstream;
using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;

HttpRequest GetRequest(const std::string& url) {
  HttpRequest request;
  request.method = "GET";
  request.url = url;
  return request;
}

// The parameter: whether cleartext exchanges take terse's own HTTP/1.1 path.
class HttpClientTest : public ::testing::TestWithParam<bool> {
 protected:
  std::unique_ptr<HttpClient> NewClient(HttpClientOptions options = {}) {
    options.libcurl_only = !GetParam();
    auto client = HttpClient::Create(options);
    EXPECT_THAT(client, IsOk());
    return std::move(client).value();
  }
  // One GET of `url` on a client of its own, waited for to its end.
  std::shared_ptr<RecordingHttpHandler> GetToTheEnd(const std::string& url) {
    auto client = NewClient();
    auto handler = std::make_shared<RecordingHttpHandler>();
    client->Start(GetRequest(url), handler);
    EXPECT_TRUE(handler->WaitDone());
    return handler;
  }
  // Checks that the path under test carried `request`: libcurl always sends `Accept: */*`,
  // terse's own client sends only the headers it is given.
  void ExpectCarriedByThePathUnderTest(const ::terse::testing::FakeRequest& request) {
    EXPECT_EQ(request.HasHeader("accept"), !GetParam());
  }
};

INSTANTIATE_TEST_SUITE_P(Paths, HttpClientTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "OwnHttp1" : "Libcurl";
                         });

HttpRequest ChatRequest(const FakeUpstream& upstream, const std::string& text, bool stream) {
  HttpRequest request;
  request.url = upstream.base_url() + "/chat/completions";
  request.headers = {{"Content-Type", "application/json"}, {"X-Test", "yes"}};
  Json body = {{"model", "m"},
               {"messages", Json::array({{{"role", "user"}, {"content", text}}})},
               {"stream", stream}};
  request.body = body.dump();
  return request;
}

// A TCP socket bound to an ephemeral port of 127.0.0.1; `*address` says which.
int BoundLoopbackSocket(sockaddr_in* address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  *address = sockaddr_in{};
  address->sin_family = AF_INET;
  address->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(address), sizeof *address), 0);
  socklen_t len = sizeof *address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(address), &len);
  return fd;
}

// A port on 127.0.0.1 with nothing listening (bound, then closed).
int ClosedPort() {
  sockaddr_in addr;
  ::close(BoundLoopbackSocket(&addr));
  return ntohs(addr.sin_port);
}

TEST_P(HttpClientTest, PostsAndReceivesAWholeResponse) {
  FakeUpstream upstream;
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "hello engine", false), handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_EQ(handler->heads(), 1);
  EXPECT_EQ(handler->head().status, 200);
  EXPECT_EQ(handler->head().http_version, 11);
  EXPECT_EQ(handler->head().Header("content-type"), "application/json");
  Json body = Json::parse(handler->body());
  EXPECT_EQ(body["choices"][0]["message"]["content"], "hello engine");

  auto request = upstream.last_request();
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.path, "/v1/chat/completions");
  EXPECT_EQ(request.Header("x-test"), "yes");
  EXPECT_FALSE(request.HasHeader("expect"));
  EXPECT_EQ(request.JsonBody()["messages"][0]["content"], "hello engine");
  ExpectCarriedByThePathUnderTest(request);
}

TEST_P(HttpClientTest, ErrorStatusesArriveAsResponsesNotFailures) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Fail(404, "nope", "invalid_request_error"));
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "x", false), handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_EQ(handler->head().status, 404);
  EXPECT_THAT(handler->body(), HasSubstr("nope"));
}

TEST_P(HttpClientTest, ReusesTheConnectionForSequentialExchanges) {
  FakeUpstream upstream;
  auto client = NewClient();
  for (int i = 0; i < 5; ++i) {
    auto handler = std::make_shared<RecordingHttpHandler>();
    client->Start(ChatRequest(upstream, "again", i % 2 == 1), handler);
    ASSERT_TRUE(handler->WaitDone());
    EXPECT_THAT(handler->status(), IsOk());
  }
  EXPECT_EQ(upstream.request_count(), 5u);
  EXPECT_EQ(upstream.connections_accepted(), 1);
  EXPECT_EQ(client->connections_opened(), 1);
}

// libcurl by default keeps only 4 idle connections per exchange still in flight, so the end of a
// burst used to close most of its connections and the next burst had to open them again.
TEST_P(HttpClientTest, KeepsTheConnectionsOfABurstForTheNextOne) {
  FakeUpstream upstream;
  FakeReply slow;
  slow.head_delay = absl::Milliseconds(300);  // the burst's exchanges overlap, one connection each
  upstream.SetDefaultReply(slow);
  auto client = NewClient();
  constexpr int kCalls = 20;
  for (int burst = 0; burst < 2; ++burst) {
    std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
    for (int i = 0; i < kCalls; ++i) {
      handlers.push_back(std::make_shared<RecordingHttpHandler>());
      client->Start(ChatRequest(upstream, "burst", false), handlers.back());
    }
    for (auto& handler : handlers) {
      ASSERT_TRUE(handler->WaitDone(absl::Seconds(30)));
      EXPECT_THAT(handler->status(), IsOk());
    }
  }
  EXPECT_EQ(upstream.request_count(), 2u * kCalls);
  EXPECT_EQ(upstream.connections_accepted(), kCalls);
  EXPECT_EQ(client->connections_opened(), kCalls);
}

// Handles are reused between exchanges: nothing of one exchange (method, body, headers) may leak
// into the next.
TEST_P(HttpClientTest, ExchangesStartCleanOnReusedHandles) {
  FakeUpstream upstream;
  auto client = NewClient();
  auto post = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "first", false), post);
  ASSERT_TRUE(post->WaitDone());
  EXPECT_THAT(post->status(), IsOk());

  HttpRequest get;
  get.method = "GET";
  get.url = upstream.base_url() + "/models";
  auto second = std::make_shared<RecordingHttpHandler>();
  client->Start(get, second);
  ASSERT_TRUE(second->WaitDone());
  EXPECT_THAT(second->status(), IsOk());
  EXPECT_EQ(second->head().status, 200);

  ASSERT_EQ(upstream.request_count(), 2u);
  const auto requests = upstream.requests();
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_TRUE(requests[0].HasHeader("x-test"));
  EXPECT_EQ(requests[1].method, "GET");
  EXPECT_EQ(requests[1].path, "/v1/models");
  EXPECT_FALSE(requests[1].HasHeader("x-test"));
  EXPECT_FALSE(requests[1].HasHeader("content-type"));
  EXPECT_EQ(requests[1].body, "");
  EXPECT_EQ(client->connections_opened(), 1);

  // The handle keeps its shared options but not the method or body of the last exchange.
  auto post_again = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "third", false), post_again);
  ASSERT_TRUE(post_again->WaitDone());
  HttpRequest del;
  del.method = "DELETE";
  del.url = upstream.base_url() + "/files/f1";
  auto deleted = std::make_shared<RecordingHttpHandler>();
  client->Start(del, deleted);
  ASSERT_TRUE(deleted->WaitDone());
  auto post_last = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "fifth", false), post_last);
  ASSERT_TRUE(post_last->WaitDone());
  EXPECT_THAT(post_last->status(), IsOk());
  ASSERT_EQ(upstream.request_count(), 5u);
  const auto later = upstream.requests();
  EXPECT_EQ(later[2].method, "POST");
  EXPECT_THAT(later[2].body, HasSubstr("third"));
  EXPECT_EQ(later[3].method, "DELETE");
  EXPECT_EQ(later[3].body, "");
  EXPECT_EQ(later[4].method, "POST");
  EXPECT_THAT(later[4].body, HasSubstr("fifth"));
  EXPECT_EQ(client->connections_opened(), 1);
}

// URLs are parsed once and kept (up to a bound): past the bound, and for a URL the strict parse
// refuses, exchanges still go out with the URL's text.
TEST_P(HttpClientTest, ManyDistinctUrlsAndUnparsedOnesAllReachTheUpstream) {
  FakeUpstream upstream;
  auto client = NewClient();
  constexpr int kUrls = 300;  // past the bound of parsed URLs kept
  for (int i = 0; i < kUrls; ++i) {
    HttpRequest get;
    get.method = "GET";
    get.url = upstream.base_url() + "/models?page=" + std::to_string(i % 150);  // each twice
    auto handler = std::make_shared<RecordingHttpHandler>();
    client->Start(get, handler);
    ASSERT_TRUE(handler->WaitDone());
    ASSERT_THAT(handler->status(), IsOk());
  }
  HttpRequest no_scheme;
  no_scheme.method = "GET";
  no_scheme.url = upstream.base_url().substr(std::string("http://").size()) + "/models";
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(no_scheme, handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), IsOk());
  ASSERT_EQ(upstream.request_count(), static_cast<size_t>(kUrls + 1));
  EXPECT_EQ(upstream.requests()[kUrls - 1].target, "/v1/models?page=149");
  EXPECT_EQ(upstream.requests()[kUrls].path, "/v1/models");
}

TEST_P(HttpClientTest, DeliversStreamedBytesBeforeTheResponseEnds) {
  FakeUpstream upstream;
  FakeReply reply;
  reply.stall_after_chunks = 2;  // two words, then nothing until we leave
  upstream.SetDefaultReply(reply);
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  auto call = client->Start(ChatRequest(upstream, "alpha beta gamma delta", true), handler);
  ASSERT_TRUE(handler->WaitBodyContains("beta"));
  EXPECT_EQ(handler->completions(), 0);
  EXPECT_EQ(handler->head().Header("content-type"), "text/event-stream");
  EXPECT_THAT(handler->body(), ::testing::Not(HasSubstr("gamma")));

  call->Cancel();
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kCancelled));
  // The upstream sees its connection end: the cancelled stream is not left running.
  EXPECT_TRUE(upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
  EXPECT_TRUE(upstream.WaitForOpenConnections(0, absl::Seconds(10)));
  call->Cancel();  // idempotent
  EXPECT_EQ(handler->completions(), 1);
}

TEST_P(HttpClientTest, HandlerCanAbortTheExchange) {
  FakeUpstream upstream;
  FakeReply reply;
  reply.stall_after_chunks = 1;
  upstream.SetDefaultReply(reply);
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  handler->set_abort_on_body();
  client->Start(ChatRequest(upstream, "a b c", true), handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST_P(HttpClientTest, ConnectionRefusedIsARetryableUpstreamFailure) {
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  HttpRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/v1/chat/completions";
  request.body = "{}";
  client->Start(request, handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not connect")));
  EXPECT_EQ(DetailOf(handler->status()).http_status, 502);
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kRetry);
  EXPECT_EQ(handler->heads(), 0);
}

TEST_P(HttpClientTest, ConnectTimeoutWhenTheListenerNeverAccepts) {
  // A listener with a full accept queue drops further SYNs, so connecting hangs on loopback.
  sockaddr_in addr;
  const int fd = BoundLoopbackSocket(&addr);
  ASSERT_EQ(::listen(fd, 0), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {  // fill the queue; later connects hang (non-blocking here)
    int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(c);
  }
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  HttpRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";
  request.body = "{}";
  request.connect_timeout = absl::Milliseconds(300);
  client->Start(request, handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                          HasSubstr("connecting to the upstream timed out")));
  EXPECT_EQ(DetailOf(handler->status()).http_status, 504);
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kRetry);
  for (int c : fillers) ::close(c);
  ::close(fd);
}

TEST_P(HttpClientTest, FirstByteTimeoutEndsAStalledExchange) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Stall());
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  HttpRequest request = ChatRequest(upstream, "x", false);
  request.first_byte_timeout = absl::Milliseconds(200);
  client->Start(request, handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no response")));
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kFallBack);
  EXPECT_TRUE(upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST_P(HttpClientTest, TotalTimeoutEndsASlowStream) {
  FakeUpstream upstream;
  FakeReply reply;
  reply.stall_after_chunks = 1;
  upstream.SetDefaultReply(reply);
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  HttpRequest request = ChatRequest(upstream, "a b c", true);
  request.total_timeout = absl::Milliseconds(300);
  client->Start(request, handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("response timed out")));
  EXPECT_EQ(handler->heads(), 1);
}

TEST_P(HttpClientTest, ResetBeforeTheAnswerIsARetryableFailure) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Reset());
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "x", false), handler);
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kRetry);
  // On a connection of its own, the failure is the caller's to see: no second try (which a
  // request that met a stale kept-alive connection gets, below).
  EXPECT_EQ(upstream.request_count(), 1u);
}

TEST_P(HttpClientTest, HundredConcurrentStreamsShareTheOneLoop) {
  FakeUpstream upstream;
  FakeReply reply;
  reply.chunk_delay = absl::Milliseconds(20);
  upstream.SetDefaultReply(reply);
  auto client = NewClient();
  constexpr int kCalls = 100;
  std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
  for (int i = 0; i < kCalls; ++i) {
    handlers.push_back(std::make_shared<RecordingHttpHandler>());
    client->Start(ChatRequest(upstream, "stream number " + std::to_string(i) + " ends", true),
                  handlers.back());
  }
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(handlers[i]->WaitDone(absl::Seconds(60))) << i;
    EXPECT_THAT(handlers[i]->status(), IsOk());
    EXPECT_THAT(handlers[i]->body(), HasSubstr("\"" + std::to_string(i) + " \""));
    EXPECT_THAT(handlers[i]->body(), HasSubstr("[DONE]"));
  }
  EXPECT_EQ(upstream.request_count(), static_cast<size_t>(kCalls));
  EXPECT_EQ(client->active_exchanges(), 0);
  // Every callback of every exchange ran on one and the same thread.
  std::set<std::thread::id> threads;
  for (const auto& handler : handlers) {
    for (std::thread::id id : handler->threads()) threads.insert(id);
  }
  EXPECT_EQ(threads.size(), 1u);
}

TEST_P(HttpClientTest, ScheduledTasksRunOnTheLoopThread) {
  auto client = NewClient();
  struct Seen {
    bool on_loop = false;
    bool stopping = true;
  };
  std::promise<Seen> ran;
  client->Schedule(absl::Milliseconds(10), [&](bool stopping) {
    ran.set_value({client->OnLoopThread(), stopping});
  });
  std::future<Seen> seen = ran.get_future();
  ASSERT_EQ(seen.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Seen result = seen.get();
  EXPECT_TRUE(result.on_loop);
  EXPECT_FALSE(result.stopping);
  EXPECT_FALSE(client->OnLoopThread());
}

TEST_P(HttpClientTest, ShutdownCancelsExchangesAndRunsPendingTasks) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Stall());
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "x", false), handler);
  ASSERT_TRUE(upstream.WaitForRequestCount(1, absl::Seconds(10)));
  int task_ran_stopping = 0;
  client->Schedule(absl::Hours(1), [&](bool stopping) { task_ran_stopping += stopping ? 1 : 100; });
  client.reset();
  EXPECT_EQ(handler->completions(), 1);
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(task_ran_stopping, 1);
}

TEST_P(HttpClientTest, CancelAfterShutdownIsHarmless) {
  FakeUpstream upstream;
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  auto call = client->Start(ChatRequest(upstream, "x", false), handler);
  ASSERT_TRUE(handler->WaitDone());
  client.reset();
  call->Cancel();
  EXPECT_EQ(handler->completions(), 1);
}

// A one-shot upstream: accepts one connection, reads the request head, writes `answer` and
// closes, for answers the fake upstream would never give.
class RawUpstream {
 public:
  explicit RawUpstream(std::string answer) : answer_(std::move(answer)) {
    sockaddr_in addr;
    fd_ = BoundLoopbackSocket(&addr);
    EXPECT_EQ(::listen(fd_, 4), 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string request;
      char buffer[4096];
      for (int reads = 0; reads < 100 && request.find("\r\n\r\n") == std::string::npos; ++reads) {
        const ssize_t n = ::read(c, buffer, sizeof buffer);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      ssize_t ignored = ::write(c, answer_.data(), answer_.size());
      (void)ignored;
      ::close(c);
    });
  }
  ~RawUpstream() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/x"; }

 private:
  std::string answer_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST_P(HttpClientTest, ABodyThatRunsToTheCloseArrivesWhole) {
  RawUpstream upstream("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the very end");
  auto handler = GetToTheEnd(upstream.url());
  ASSERT_EQ(handler->completions(), 1);
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_EQ(handler->head().status, 200);
  EXPECT_EQ(handler->body(), "until the very end");
}

TEST_P(HttpClientTest, AnAnswerCutShortIsARetryableFailure) {
  RawUpstream upstream("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this much");
  auto handler = GetToTheEnd(upstream.url());
  ASSERT_EQ(handler->completions(), 1);
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kRetry);
}

TEST_P(HttpClientTest, AnAnswerThatIsNotHttpIsAnUpstreamFailure) {
  RawUpstream upstream("SSH-2.0-OpenSSH_9.2\r\n\r\n");
  auto handler = GetToTheEnd(upstream.url());
  ASSERT_EQ(handler->completions(), 1);
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(DetailOf(handler->status()).http_status, 502);
  EXPECT_EQ(handler->heads(), 0);
}

TEST_P(HttpClientTest, InterimAnswersAreSkipped) {
  RawUpstream upstream(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  auto handler = GetToTheEnd(upstream.url());
  ASSERT_EQ(handler->completions(), 1);
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_EQ(handler->heads(), 1);
  EXPECT_EQ(handler->head().status, 201);
  EXPECT_EQ(handler->body(), "ok");
}

// The upstream dropped a kept-alive connection just as the next request went out on it: the
// request goes again, once, on a new connection, and the caller sees only the answer.
TEST_P(HttpClientTest, ARequestThatMetAStaleKeptAliveConnectionIsSentAgainOnce) {
  FakeUpstream upstream;
  upstream.EnqueueReply(FakeReply::Text("first"));
  upstream.EnqueueReply(FakeReply::Reset());  // the second request's connection dies unanswered
  auto client = NewClient();
  for (const char* expected : {"first", "second"}) {
    auto handler = std::make_shared<RecordingHttpHandler>();
    client->Start(ChatRequest(upstream, "second", false), handler);
    ASSERT_TRUE(handler->WaitDone());
    ASSERT_THAT(handler->status(), IsOk());
    EXPECT_EQ(Json::parse(handler->body())["choices"][0]["message"]["content"], expected);
  }
  EXPECT_EQ(upstream.request_count(), 3u);
  EXPECT_EQ(upstream.connections_accepted(), 2);
}

TEST_P(HttpClientTest, AnAnswerWithConnectionCloseEndsItsConnection) {
  FakeUpstream upstream;
  FakeReply closing = FakeReply::Text("bye");
  closing.close_after = true;
  upstream.SetDefaultReply(closing);
  auto client = NewClient();
  for (int i = 0; i < 3; ++i) {
    auto handler = std::make_shared<RecordingHttpHandler>();
    client->Start(ChatRequest(upstream, "x", false), handler);
    ASSERT_TRUE(handler->WaitDone());
    ASSERT_THAT(handler->status(), IsOk());
  }
  EXPECT_EQ(upstream.connections_accepted(), 3);
  EXPECT_EQ(upstream.request_count(), 3u);
}

TEST_P(HttpClientTest, ExchangesBeyondTheConnectionLimitWaitForAConnection) {
  FakeUpstream upstream;
  FakeReply slow;
  slow.head_delay = absl::Milliseconds(100);
  upstream.SetDefaultReply(slow);
  HttpClientOptions options;
  options.max_connections_per_host = 2;
  auto client = NewClient(options);
  std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
  for (int i = 0; i < 6; ++i) {
    handlers.push_back(std::make_shared<RecordingHttpHandler>());
    client->Start(ChatRequest(upstream, "call " + std::to_string(i), false), handlers.back());
  }
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(handlers[i]->WaitDone(absl::Seconds(30))) << i;
    EXPECT_THAT(handlers[i]->status(), IsOk());
    EXPECT_THAT(handlers[i]->body(), HasSubstr("call " + std::to_string(i)));
  }
  EXPECT_EQ(upstream.request_count(), 6u);
  EXPECT_EQ(upstream.connections_accepted(), 2);
}

TEST_P(HttpClientTest, LargeBodiesAndLocalhostUrlsGoOutWhole) {
  FakeUpstream upstream;
  auto client = NewClient();
  HttpRequest request = ChatRequest(upstream, std::string(3 << 20, 'w'), false);  // 3 MiB
  request.url = "http://localhost:" + std::to_string(upstream.port()) + "/v1/chat/completions";
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(request, handler);
  ASSERT_TRUE(handler->WaitDone(absl::Seconds(30)));
  EXPECT_THAT(handler->status(), IsOk());
  const auto received = upstream.last_request();
  EXPECT_EQ(received.body.size(), request.body.size());
  EXPECT_EQ(received.body, request.body.view());
  EXPECT_EQ(received.Header("host"), "localhost:" + std::to_string(upstream.port()));
  ExpectCarriedByThePathUnderTest(received);
  EXPECT_EQ(
      Json::parse(handler->body())["choices"][0]["message"]["content"].get<std::string>().size(),
      size_t{3} << 20);
}

// The machine's own name, when it resolves to 127.0.0.1 (as /etc/hosts has it in most
// containers), so a test can reach the fake upstream by a name; empty otherwise.
std::string LoopbackHostName() {
  char name[256] = {0};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "";
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name, nullptr, &hints, &found) != 0 || found == nullptr) return "";
  const bool loopback =
      reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
  ::freeaddrinfo(found);
  return loopback ? name : "";
}

TEST_P(HttpClientTest, HostNamesAreResolvedAndTheirConnectionsReused) {
  const std::string name = LoopbackHostName();
  if (name.empty()) GTEST_SKIP() << "this machine's name does not resolve to 127.0.0.1";
  FakeUpstream upstream;
  auto client = NewClient();
  const std::string url = "http://" + name + ":" + std::to_string(upstream.port()) + "/v1/models";
  // Several at once before the first address is known, then more on the kept connections.
  for (int round = 0; round < 2; ++round) {
    std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
    for (int i = 0; i < 3; ++i) {
      handlers.push_back(std::make_shared<RecordingHttpHandler>());
      client->Start(GetRequest(url), handlers.back());
    }
    for (auto& handler : handlers) {
      ASSERT_TRUE(handler->WaitDone(absl::Seconds(30)));
      EXPECT_THAT(handler->status(), IsOk());
      EXPECT_EQ(handler->head().status, 200);
    }
  }
  EXPECT_EQ(upstream.request_count(), 6u);
  EXPECT_LE(upstream.connections_accepted(), 3);
  EXPECT_EQ(upstream.last_request().Header("host"), name + ":" + std::to_string(upstream.port()));
  ExpectCarriedByThePathUnderTest(upstream.last_request());
}

TEST_P(HttpClientTest, AHostNameThatDoesNotResolveIsARetryableFailure) {
  auto client = NewClient();
  auto handler = std::make_shared<RecordingHttpHandler>();
  client->Start(GetRequest("http://no-such-host.invalid:8080/v1/models"), handler);
  ASSERT_TRUE(handler->WaitDone(absl::Seconds(60)));
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("resolve")));
  EXPECT_EQ(RecoveryOf(handler->status()), Recovery::kRetry);
  EXPECT_EQ(handler->heads(), 0);
}

// A GET goes out without the body it was given (as libcurl sends it), and the connection stays
// usable for the next exchange.
TEST_P(HttpClientTest, AGetCarriesNoBody) {
  FakeUpstream upstream;
  auto client = NewClient();
  HttpRequest get = GetRequest(upstream.base_url() + "/models");
  get.body = "{\"stray\":true}";
  auto first = std::make_shared<RecordingHttpHandler>();
  client->Start(get, first);
  ASSERT_TRUE(first->WaitDone());
  EXPECT_THAT(first->status(), IsOk());
  auto second = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "after the get", false), second);
  ASSERT_TRUE(second->WaitDone());
  EXPECT_THAT(second->status(), IsOk());
  ASSERT_EQ(upstream.request_count(), 2u);
  EXPECT_EQ(upstream.requests()[0].body, "");
  EXPECT_THAT(upstream.requests()[1].body, HasSubstr("after the get"));
  EXPECT_EQ(upstream.connections_accepted(), 1);
}

// The upstream ends a kept-alive connection while it is idle (its keep-alive timeout): the next
// exchange still gets its answer, on a new connection. Whether the client saw the close first or
// its request met the dead connection and was sent again (the stale-connection test), the
// upstream sees the same, so this checks the outcome, not which way the client took.
TEST_P(HttpClientTest, AfterTheUpstreamClosesAnIdleConnectionTheNextExchangeIsAnswered) {
  FakeUpstream upstream;
  FakeReply closing = FakeReply::Text("then silence");
  closing.close_silently_after = true;
  upstream.EnqueueReply(closing);
  auto client = NewClient();
  auto first = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "x", false), first);
  ASSERT_TRUE(first->WaitDone());
  ASSERT_THAT(first->status(), IsOk());
  ASSERT_TRUE(upstream.WaitForOpenConnections(0, absl::Seconds(10)));

  auto second = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "on a new connection", false), second);
  ASSERT_TRUE(second->WaitDone());
  EXPECT_THAT(second->status(), IsOk());
  EXPECT_THAT(second->body(), HasSubstr("on a new connection"));
  EXPECT_EQ(upstream.request_count(), 2u);
  EXPECT_EQ(upstream.connections_accepted(), 2);
}

}  // namespace
}  // namespace terse::providers
