// ProviderSet: retries before the first byte, none after it, fallbacks, timeouts, cancellation,
// many streams on the one engine thread, shutdown.
#include "providers/provider_set.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
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

constexpr char kKeyEnv[] = "TERSE_TEST_SET_KEY";

// A port on 127.0.0.1 with nothing listening.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

v1::Provider* AddProvider(v1::Config& config, const std::string& name, const std::string& url,
                          int max_attempts = 3) {
  v1::Provider* p = config.add_providers();
  p->set_name(name);
  p->set_kind(v1::Provider::OPENAI);
  p->set_base_url(url);
  p->set_api_key_env(kKeyEnv);
  p->mutable_retry()->set_max_attempts(max_attempts);
  p->mutable_retry()->set_initial_backoff_ms(1);  // keep tests quick
  p->mutable_retry()->set_max_backoff_ms(5);
  return p;
}

Request Chat(const std::string& text, bool stream) {
  Request request;
  request.stream = stream;
  request.body = json::WireJson(Json{
      {"model", "gpt-test"}, {"messages", Json::array({{{"role", "user"}, {"content", text}}})}});
  if (stream) request.body.SetMember("stream", true);
  return request;
}

class ProviderSetTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv(kKeyEnv, "sk-test", 1); }
  void TearDown() override { ::unsetenv(kKeyEnv); }

  static std::unique_ptr<ProviderSet> Create(const v1::Config& config) {
    auto set = ProviderSet::Create(config);
    EXPECT_THAT(set, IsOk());
    return std::move(set).value();
  }
};

TEST_F(ProviderSetTest, RetriesServerErrorsRateLimitsAndResetsThenSucceeds) {
  FakeUpstream upstream;
  upstream.EnqueueReply(FakeReply::Fail(500, "boom"));
  upstream.EnqueueReply(FakeReply::Fail(429, "slow down", "rate_limit_error"));
  upstream.EnqueueReply(FakeReply::Reset());
  v1::Config config;
  AddProvider(config, "a", upstream.base_url(), /*max_attempts=*/4);
  auto set = Create(config);
  for (bool stream : {false, true}) {
    if (stream) {
      upstream.EnqueueReply(FakeReply::Fail(502, "bad gateway"));
      upstream.EnqueueReply(FakeReply::Reset());
    }
    auto sink = std::make_shared<RecordingSink>();
    set->Send({set->Find("a")}, Chat("finally works", stream), sink);
    ASSERT_TRUE(sink->WaitDone());
    ASSERT_THAT(sink->status(), IsOk());
    if (stream) {
      EXPECT_EQ(sink->StreamedText(), "finally works");
      // One coherent stream: a single role chunk, from the attempt that succeeded.
      int roles = 0;
      for (const Json& chunk : sink->chunks()) {
        if (!chunk["choices"].empty() && chunk["choices"][0]["delta"].contains("role")) ++roles;
      }
      EXPECT_EQ(roles, 1);
    } else {
      EXPECT_EQ(sink->response()["choices"][0]["message"]["content"], "finally works");
    }
    EXPECT_EQ(sink->dones(), 1);
  }
  EXPECT_EQ(upstream.request_count(), 4u + 3u);
}

TEST_F(ProviderSetTest, GivesUpAfterMaxAttemptsWithTheLastError) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Fail(503, "still down"));
  v1::Config config;
  AddProvider(config, "a", upstream.base_url(), /*max_attempts=*/3);
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a")}, Chat("x", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("still down")));
  EXPECT_EQ(DetailOf(sink->status()).http_status, 502);
  EXPECT_EQ(upstream.request_count(), 3u);
}

TEST_F(ProviderSetTest, DoesNotRetryRequestErrors) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Fail(400, "bad request", "invalid_request_error"));
  FakeUpstream second;
  v1::Config config;
  AddProvider(config, "a", upstream.base_url());
  AddProvider(config, "b", second.base_url());
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a"), set->Find("b")}, Chat("x", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kInvalidArgument, "bad request"));
  EXPECT_EQ(upstream.request_count(), 1u);
  EXPECT_EQ(second.request_count(), 0u);
}

TEST_F(ProviderSetTest, NoRetryAfterTheFirstByteReachedTheSink) {
  FakeUpstream upstream;
  FakeReply cut;
  cut.reset_after_chunks = 2;  // two words, then the connection is reset
  upstream.SetDefaultReply(cut);
  FakeUpstream second;
  v1::Config config;
  AddProvider(config, "a", upstream.base_url(), /*max_attempts=*/3);
  AddProvider(config, "b", second.base_url());
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a"), set->Find("b")}, Chat("one two three four", true), sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(sink->StreamedText(), "one two ");
  EXPECT_EQ(upstream.request_count(), 1u);
  EXPECT_EQ(second.request_count(), 0u);
}

TEST_F(ProviderSetTest, FallsBackToTheNextProviderWhenAttemptsAreSpent) {
  FakeUpstream failing;
  failing.SetDefaultReply(FakeReply::Fail(500, "down"));
  FakeUpstream healthy;
  v1::Config config;
  AddProvider(config, "a", failing.base_url(), /*max_attempts=*/2);
  AddProvider(config, "b", healthy.base_url());
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a"), set->Find("b")}, Chat("served by b", true), sink);
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "served by b");
  EXPECT_EQ(failing.request_count(), 2u);
  EXPECT_EQ(healthy.request_count(), 1u);
}

TEST_F(ProviderSetTest, FallsBackAtOnceWhenTheProviderCannotServe) {
  FakeUpstream unauthorized;
  unauthorized.SetDefaultReply(FakeReply::Fail(401, "invalid key", "authentication_error"));
  FakeUpstream healthy;
  v1::Config config;
  AddProvider(config, "a", unauthorized.base_url(), /*max_attempts=*/3);
  AddProvider(config, "b", healthy.base_url());
  v1::Provider* echo = config.add_providers();
  echo->set_name("echo");
  echo->set_kind(v1::Provider::ECHO);
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a"), set->Find("b")}, Chat("x", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(unauthorized.request_count(), 1u);
  EXPECT_EQ(healthy.request_count(), 1u);

  // A provider without a key falls back too (to echo here).
  ::unsetenv(kKeyEnv);
  v1::Config keyless;
  AddProvider(keyless, "a", healthy.base_url());
  *keyless.add_providers() = *echo;
  auto set2 = Create(keyless);
  sink = std::make_shared<RecordingSink>();
  set2->Send({set2->Find("a"), set2->Find("echo")}, Chat("echoed back", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->response()["choices"][0]["message"]["content"], "echoed back");
  EXPECT_EQ(healthy.request_count(), 1u);
}

// A 429 whose head asks for a delay with `header: value`.
FakeReply RateLimited(const std::string& header, const std::string& value) {
  FakeReply reply = FakeReply::Fail(429, "slow down", "rate_limit_error");
  reply.headers.emplace_back(header, value);
  return reply;
}

TEST_F(ProviderSetTest, WaitsTheDelayTheUpstreamAskedForThenSucceeds) {
  FakeUpstream upstream;
  upstream.EnqueueReply(RateLimited("retry-after-ms", "150"));
  v1::Config config;
  // The computed backoff would be ~1 ms: a later retry can only come from the upstream's delay.
  AddProvider(config, "a", upstream.base_url())->mutable_retry()->set_max_backoff_ms(2000);
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a")}, Chat("after the pause", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->response()["choices"][0]["message"]["content"], "after the pause");
  auto requests = upstream.requests();
  ASSERT_EQ(requests.size(), 2u);
  // Measured where the requests arrived; a little slack for timer rounding only.
  EXPECT_GE(requests[1].received - requests[0].received, absl::Milliseconds(140));
}

TEST_F(ProviderSetTest, ADelayBeyondMaxBackoffFallsBackAtOnce) {
  FakeUpstream limited;
  FakeUpstream healthy;
  v1::Config config;
  AddProvider(config, "a", limited.base_url())->mutable_retry()->set_max_backoff_ms(2000);
  AddProvider(config, "b", healthy.base_url());
  auto set = Create(config);
  std::string in_an_hour = absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                                            absl::Now() + absl::Hours(1), absl::UTCTimeZone());
  size_t sent = 0;
  for (const auto& [header, value] : std::vector<std::pair<std::string, std::string>>{
           {"retry-after", "60"}, {"retry-after-ms", "60000"}, {"retry-after", in_an_hour}}) {
    SCOPED_TRACE(header + ": " + value);
    limited.SetDefaultReply(RateLimited(header, value));
    auto sink = std::make_shared<RecordingSink>();
    absl::Time start = absl::Now();
    set->Send({set->Find("a"), set->Find("b")}, Chat("served by b", false), sink);
    // Bounded well under the asked minute: a wait for it would fail here.
    ASSERT_TRUE(sink->WaitDone(absl::Seconds(20)));
    EXPECT_LT(absl::Now() - start, absl::Seconds(20));
    ASSERT_THAT(sink->status(), IsOk());
    EXPECT_EQ(sink->response()["choices"][0]["message"]["content"], "served by b");
    ++sent;
    EXPECT_EQ(limited.request_count(), sent);  // one request each: no retry on "a"
    EXPECT_EQ(healthy.request_count(), sent);
  }
}

TEST_F(ProviderSetTest, ADelayTooLongForTheLastTargetEndsWithThe429) {
  FakeUpstream limited;
  v1::Config config;
  AddProvider(config, "a", limited.base_url())->mutable_retry()->set_max_backoff_ms(60000);
  auto set = Create(config);
  // Beyond max_backoff; then within it but past the request's deadline.
  struct Case {
    std::string retry_after;
    absl::Duration asked;
    absl::Duration deadline_in;
  };
  size_t sent = 0;
  for (const Case& c : {Case{"90", absl::Seconds(90), absl::InfiniteDuration()},
                        Case{"45", absl::Seconds(45), absl::Seconds(30)}}) {
    SCOPED_TRACE("retry-after: " + c.retry_after);
    limited.SetDefaultReply(RateLimited("retry-after", c.retry_after));
    auto sink = std::make_shared<RecordingSink>();
    Request request = Chat("x", false);
    request.deadline = absl::Now() + c.deadline_in;
    set->Send({set->Find("a")}, request, sink);
    ASSERT_TRUE(sink->WaitDone(absl::Seconds(20)));
    EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kResourceExhausted, "slow down"));
    EXPECT_EQ(DetailOf(sink->status()).http_status, 429);
    // The delay stays on the error, for whoever reports it to the client.
    EXPECT_EQ(RetryAfterOf(sink->status()), c.asked);
    EXPECT_EQ(limited.request_count(), ++sent);
  }
}

TEST_F(ProviderSetTest, AGarbageRetryAfterIsIgnored) {
  FakeUpstream upstream;
  upstream.EnqueueReply(RateLimited("retry-after", "soon, maybe"));
  FakeUpstream second;
  v1::Config config;
  v1::Provider* p = AddProvider(config, "a", upstream.base_url());
  p->mutable_retry()->set_initial_backoff_ms(100);
  p->mutable_retry()->set_max_backoff_ms(200);
  AddProvider(config, "b", second.base_url());
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a"), set->Find("b")}, Chat("retried on a", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_THAT(sink->status(), IsOk());
  // The normal backoff ran (jittered within [50, 100] ms): not a fallback, not an instant retry.
  auto requests = upstream.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_GE(requests[1].received - requests[0].received, absl::Milliseconds(45));
  EXPECT_EQ(second.request_count(), 0u);
}

TEST_F(ProviderSetTest, ConnectionRefusedIsRetriedThenReported) {
  v1::Config config;
  AddProvider(config, "a", "http://127.0.0.1:" + std::to_string(ClosedPort()) + "/v1",
              /*max_attempts=*/2);
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a")}, Chat("x", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("could not connect")));
  EXPECT_EQ(DetailOf(sink->status()).http_status, 502);
}

TEST_F(ProviderSetTest, FirstByteTimeoutOnAStalledUpstreamIs504) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Stall());
  v1::Config config;
  AddProvider(config, "a", upstream.base_url())->mutable_timeouts()->set_first_byte_ms(200);
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({set->Find("a")}, Chat("x", true), sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(DetailOf(sink->status()).http_status, 504);
  EXPECT_EQ(upstream.request_count(), 1u);  // a hung upstream is not asked again
  EXPECT_TRUE(upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST_F(ProviderSetTest, APassedDeadlineFailsWithoutCallingTheUpstream) {
  FakeUpstream upstream;
  v1::Config config;
  AddProvider(config, "a", upstream.base_url());
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  Request request = Chat("x", false);
  request.deadline = absl::Now() - absl::Seconds(1);
  set->Send({set->Find("a")}, request, sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_EQ(upstream.request_count(), 0u);
}

TEST_F(ProviderSetTest, CancelMidStreamEndsTheUpstreamConnection) {
  FakeUpstream upstream;
  FakeReply reply;
  reply.stall_after_chunks = 1;
  upstream.SetDefaultReply(reply);
  v1::Config config;
  AddProvider(config, "a", upstream.base_url());
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  auto call = set->Send({set->Find("a")}, Chat("first second", true), sink);
  ASSERT_TRUE(sink->WaitChunks(2));
  call->Cancel();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
  EXPECT_TRUE(upstream.WaitForOpenConnections(0, absl::Seconds(10)));
  call->Cancel();
  EXPECT_EQ(sink->dones(), 1);
  EXPECT_EQ(upstream.request_count(), 1u);
}

TEST_F(ProviderSetTest, CancelDuringBackoffEndsTheCallAtOnce) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Fail(500, "down"));
  v1::Config config;
  v1::Provider* p = AddProvider(config, "a", upstream.base_url(), /*max_attempts=*/3);
  p->mutable_retry()->set_initial_backoff_ms(600000);  // the retry would come in ten minutes
  p->mutable_retry()->set_max_backoff_ms(600000);
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  auto call = set->Send({set->Find("a")}, Chat("x", false), sink);
  ASSERT_TRUE(upstream.WaitForRequestCount(1, absl::Seconds(10)));
  call->Cancel();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(upstream.request_count(), 1u);
}

TEST_F(ProviderSetTest, DestroyingTheSetCancelsPendingCalls) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Stall());
  v1::Config config;
  AddProvider(config, "a", upstream.base_url());
  v1::Provider* echo = config.add_providers();
  echo->set_name("slow-echo");
  echo->set_kind(v1::Provider::ECHO);
  echo->set_echo_delay_ms(600000);
  auto set = Create(config);
  auto stalled = std::make_shared<RecordingSink>();
  set->Send({set->Find("a")}, Chat("x", true), stalled);
  auto echoing = std::make_shared<RecordingSink>();
  set->Send({set->Find("slow-echo")}, Chat("many words to echo", true), echoing);
  ASSERT_TRUE(upstream.WaitForRequestCount(1, absl::Seconds(10)));
  ASSERT_TRUE(echoing->WaitChunks(2));
  set.reset();
  EXPECT_EQ(stalled->dones(), 1);
  EXPECT_THAT(stalled->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(echoing->dones(), 1);
  EXPECT_THAT(echoing->status(), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(ProviderSetTest, HundredConcurrentStreamsRunOnTheOneEngineThread) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::SlowStream(absl::Milliseconds(10)));
  v1::Config config;
  AddProvider(config, "a", upstream.base_url());
  auto set = Create(config);
  constexpr int kCalls = 100;
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < kCalls; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    set->Send({set->Find("a")}, Chat("call " + std::to_string(i) + " streams here", true),
              sinks.back());
  }
  std::set<std::thread::id> threads;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(sinks[i]->WaitDone(absl::Seconds(60))) << i;
    EXPECT_THAT(sinks[i]->status(), IsOk());
    EXPECT_EQ(sinks[i]->StreamedText(), "call " + std::to_string(i) + " streams here");
    EXPECT_TRUE(sinks[i]->StreamedUsage().is_object());
    for (std::thread::id id : sinks[i]->threads()) threads.insert(id);
  }
  EXPECT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());
  EXPECT_EQ(upstream.request_count(), static_cast<size_t>(kCalls));
}

TEST_F(ProviderSetTest, CreateRejectsBadProviders) {
  v1::Config duplicate;
  AddProvider(duplicate, "a", "http://127.0.0.1:1/v1");
  AddProvider(duplicate, "a", "http://127.0.0.1:2/v1");
  EXPECT_THAT(ProviderSet::Create(duplicate),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\"")));

  v1::Config azure;
  v1::Provider* p = azure.add_providers();
  p->set_name("az");
  p->set_kind(v1::Provider::AZURE_OPENAI);
  EXPECT_THAT(ProviderSet::Create(azure),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base_url")));

  v1::Config kindless;
  kindless.add_providers()->set_name("k");
  EXPECT_THAT(ProviderSet::Create(kindless), StatusIs(absl::StatusCode::kInvalidArgument));

  v1::Config fine;
  AddProvider(fine, "a", "http://127.0.0.1:1/v1");
  auto set = Create(fine);
  EXPECT_NE(set->Find("a"), nullptr);
  EXPECT_EQ(set->Find("a")->name(), "a");
  EXPECT_EQ(set->Find("nope"), nullptr);
}

TEST_F(ProviderSetTest, NoTargetsIsAnUpstreamFailure) {
  v1::Config config;
  auto set = Create(config);
  auto sink = std::make_shared<RecordingSink>();
  set->Send({}, Chat("x", false), sink);
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace terse::providers
