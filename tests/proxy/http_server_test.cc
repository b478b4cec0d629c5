// The HTTP face end to end in one process: a real HTTP client, the real server, pipeline and
// providers, and the fake upstream.
#include "proxy/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/errors.h"
#include "tests/proxy/test_env.h"

namespace terse::proxy {
namespace {

using ::terse::proxy::testing::Gateway;
using ::terse::proxy::testing::HttpClient;
using ::terse::proxy::testing::HttpResponse;
using ::terse::proxy::testing::ScriptedCompression;
using ::terse::proxy::testing::SseData;
using ::terse::testing::FakeReply;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string ChatBody(const std::string& model, const std::string& text, bool stream = false) {
  Json body = {{"model", model},
               {"messages", Json::array({Json{{"role", "user"}, {"content", text}}})}};
  if (stream) body["stream"] = true;
  return body.dump();
}

class HttpServerTest : public ::testing::Test {
 protected:
  // A fresh connection that sends one request and reads the response.
  std::optional<HttpResponse> Once(const std::string& method, const std::string& target,
                                   const std::string& body = "",
                                   std::vector<std::pair<std::string, std::string>> headers = {}) {
    HttpClient client(gw.http->port());
    return client.Request(method, target, body, headers);
  }

  // The server still answers a normal request.
  void ExpectStillServing() {
    auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "still here"));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200) << r->body;
  }

  Gateway gw;
};

TEST_F(HttpServerTest, ChatNonStreaming) {
  gw.upstream.EnqueueReply(FakeReply::Text("hi there"));
  auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "hello"),
                {{"authorization", "Bearer sk-secret-test"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("content-type"), "application/json");
  Json body = r->JsonBody();
  EXPECT_EQ(body["choices"][0]["message"]["content"], "hi there");
  EXPECT_THAT(r->Header("x-request-id"), StartsWith("req_"));
  EXPECT_FALSE(r->HasHeader("x-terse-original-tokens"));  // nothing was compressed
}

TEST_F(HttpServerTest, RequestIdIsEchoedOrMadeUp) {
  auto mine = Once("GET", "/v1/models", "", {{"x-request-id", "my-id-42"}});
  ASSERT_TRUE(mine.has_value());
  EXPECT_EQ(mine->Header("x-request-id"), "my-id-42");
  auto made = Once("GET", "/healthz");
  ASSERT_TRUE(made.has_value());
  auto other = Once("GET", "/healthz");
  ASSERT_TRUE(other.has_value());
  EXPECT_THAT(made->Header("x-request-id"), StartsWith("req_"));
  EXPECT_NE(made->Header("x-request-id"), other->Header("x-request-id"));
  auto error = Once("POST", "/v1/chat/completions", "{", {{"x-request-id", "bad-1"}});
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->Header("x-request-id"), "bad-1");
}

TEST_F(HttpServerTest, StreamingChunksArriveAsTheyComeAndEndWithDone) {
  gw.upstream.EnqueueReply(FakeReply::SlowStream(absl::Milliseconds(300)));
  HttpClient client(gw.http->port());
  ASSERT_TRUE(client.SendRequest("POST", "/v1/chat/completions",
                                 ChatBody("gpt-4o", "one two three four five", true)));
  auto head = client.ReadHead();
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->Header("content-type"), "text/event-stream");
  EXPECT_EQ(head->Header("cache-control"), "no-cache");
  EXPECT_EQ(head->Header("x-accel-buffering"), "no");
  EXPECT_EQ(head->Header("transfer-encoding"), "chunked");
  // The first content event is readable while the upstream is still producing the rest.
  std::string first = client.ReadBodyUntil("\"content\":\"one");
  EXPECT_THAT(first, HasSubstr("\"content\":\"one"));
  EXPECT_THAT(first, Not(HasSubstr("[DONE]")));
  std::string all = client.ReadBodyUntil("data: [DONE]\n\n");
  auto events = SseData(all);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json chunk = Json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    EXPECT_FALSE(chunk.contains("usage"));  // not asked for
    if (!chunk["choices"].empty()) text += chunk["choices"][0]["delta"].value("content", "");
  }
  EXPECT_THAT(text, HasSubstr("one two three four five"));
}

TEST_F(HttpServerTest, StreamingUsageChunkOnlyWhenAsked) {
  Json body = Json::parse(ChatBody("gpt-4o", "a b", true));
  body["stream_options"] = {{"include_usage", true}};
  auto r = Once("POST", "/v1/chat/completions", body.dump());
  ASSERT_TRUE(r.has_value());
  auto events = SseData(r->body);
  ASSERT_GE(events.size(), 2u);
  Json usage_chunk = Json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_GT(usage_chunk["usage"]["total_tokens"].get<int>(), 0);
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["stream_options"]["include_usage"], true);

  r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "a b", true));
  ASSERT_TRUE(r.has_value());
  EXPECT_THAT(r->body, Not(HasSubstr("\"usage\"")));
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["stream_options"]["include_usage"], true);
}

// On the wire: the upstream's events byte for byte (in one or several HTTP chunks), the usage
// chunk terse asked for left out, then [DONE].
TEST_F(HttpServerTest, StreamEventsReachTheClientAsTheUpstreamWroteThem) {
  const std::string content =
      R"({"id": "c9", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "caf\u00e9"}, "finish_reason": null}]})";
  const std::string finish =
      R"({"id":"c9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})";
  FakeReply reply;
  reply.raw_stream = {"data: " + content + "\n\ndata: " + finish + "\n\n",
                      "data: {\"id\":\"c9\",\"choices\":[],\"usage\":{\"prompt_tokens\":4}}\n\n"
                      "data: [DONE]\n\n"};
  gw.upstream.EnqueueReply(reply);
  auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "hi", true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "data: " + content + "\n\ndata: " + finish + "\n\ndata: [DONE]\n\n");

  // A chunk whose JSON the upstream spread over two data lines goes on as one line.
  FakeReply spread;
  spread.raw_stream = {
      "data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\n"
      "data: \"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n"
      "data: [DONE]\n\n"};
  gw.upstream.EnqueueReply(spread);
  r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "hi", true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body,
            "data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
            "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");

  const std::string answer = "{\"id\": \"c9\", \"choices\": [], \"usage\": {\"prompt_tokens\": 4}}";
  FakeReply whole;
  whole.raw_body = answer;
  gw.upstream.EnqueueReply(whole);
  r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "hi"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, answer);
  EXPECT_EQ(r->Header("content-length"), std::to_string(answer.size()));
}

// An answer many times one event's reads, arriving whole, comes back whole, again and again on
// one kept-alive connection. (That a lane hosted under an edge-triggered watch takes up what one
// look at its sockets leaves is HostedLaneTest's; Asio's re-armed watch looks again anyway.)
TEST_F(HttpServerTest, ALargeAnswerArrivingWholeIsRelayedWhole) {
  const std::string content(3 << 20, 'a');
  const std::string answer = R"({"id":"c9","object":"chat.completion","choices":[{"index":0,)"
                             R"("message":{"role":"assistant","content":")" +
                             content + R"("},"finish_reason":"stop"}]})";
  HttpClient client(gw.http->port());
  for (int round = 0; round < 3; ++round) {
    FakeReply whole;
    whole.raw_body = answer;
    gw.upstream.EnqueueReply(whole);
    auto r = client.Request("POST", "/v1/chat/completions", ChatBody("gpt-4o", "large"));
    ASSERT_TRUE(r.has_value()) << "round " << round;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body.size(), answer.size()) << "round " << round;
  }
}

TEST_F(HttpServerTest, UnknownFieldsReachTheUpstreamUnchangedAndInOrder) {
  const std::string body =
      R"({"zeta":1,"model":"gpt-4o","messages":[{"role":"user","content":"x"}],)"
      R"("tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto",)"
      R"("some_future_field":{"nested":[1,2,3]}})";
  auto r = Once("POST", "/v1/chat/completions", body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(gw.upstream.last_request().body, body);
}

// Spacing, number spellings and escapes show any re-serialization: what terse changes is
// spliced into the client's text, and the rest reaches the upstream byte for byte.
TEST_F(HttpServerTest, TheBodyIsRelayedAsWrittenButForTheMembersTerseSets) {
  const std::string body = R"({ "model" : "gpt-4o", "temperature": 0.50, "stop": "\u00e9",)"
                           R"( "messages": [ {"role": "user", "content": "x"} ] })";
  auto r = Once("POST", "/v1/chat/completions", body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(gw.upstream.last_request().body, body);

  // A stream: terse asks for the usage, and the request's compression override stays here.
  const std::string stream_body =
      R"({"terse": {"rate": 0.5}, "model":"gpt-4o", "stream": true,  "top_p": 1.0,)"
      R"( "messages":[{"role":"user","content":"x"}]})";
  r = Once("POST", "/v1/chat/completions", stream_body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(
      gw.upstream.last_request().body,
      R"({"model":"gpt-4o", "stream": true,  "top_p": 1.0,)"
      R"( "messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})");
}

TEST_F(HttpServerTest, ModelIsRenamedForTheUpstream) {
  const std::string body = R"({"model": "small", "messages": [{"role": "user", "content": "x"}]})";
  auto r = Once("POST", "/v1/chat/completions", body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(gw.upstream.last_request().body,
            R"({"model": "fake-small-2024", "messages": [{"role": "user", "content": "x"}]})");
}

TEST_F(HttpServerTest, MalformedJsonIs400) {
  auto r = Once("POST", "/v1/chat/completions", R"({"model": "gpt-4o", "messages": [)");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(r->JsonBody()["error"].contains("param"));
  EXPECT_TRUE(r->JsonBody()["error"].contains("code"));
  ExpectStillServing();
}

// 20,000 nested arrays in a field terse does not check once crashed the process (nlohmann's
// serializer recursed once per level); the depth limit refuses them with a 400 saying why.
TEST_F(HttpServerTest, JsonNestedTooDeeplyIs400AndTheProcessKeepsServing) {
  const std::string deep = std::string(20000, '[') + std::string(20000, ']');
  auto r =
      Once("POST", "/v1/chat/completions",
           R"({"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"extra":)" + deep + "}");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "invalid_request_error");
  EXPECT_THAT(r->JsonBody()["error"]["message"].get<std::string>(),
              HasSubstr("more than 512 levels deep"));
  // Within the limit, nesting goes through as written.
  const std::string nested = std::string(500, '[') + std::string(500, ']');
  const std::string body =
      R"({"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"extra":)" + nested + "}";
  r = Once("POST", "/v1/chat/completions", body);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(gw.upstream.last_request().body, body);
  EXPECT_EQ(gw.upstream.request_count(), 1u);
  ExpectStillServing();
}

TEST_F(HttpServerTest, WrongTypesAndUnknownRoleAre400WithParam) {
  auto r = Once("POST", "/v1/chat/completions",
                R"({"model": "gpt-4o", "messages": [{"role": "user", "content": 7}]})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->JsonBody()["error"]["param"], "messages[0].content");
  r = Once("POST", "/v1/chat/completions",
           R"({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->JsonBody()["error"]["param"], "messages[0].role");
  EXPECT_EQ(gw.upstream.request_count(), 0u);
  ExpectStillServing();
}

// Bodies far larger than a read's first room, with a length and chunked, in pieces: each arrives
// whole, and the connection serves the next request after the room it grew (past the 64 KiB a
// connection keeps) is given back.
TEST(HttpServerLargeBodyTest, LargeBodiesArriveWholeInPieces) {
  Gateway gw(Gateway::Options{.limits = "limits: {max_body_bytes: 1048576}\n"});
  HttpClient client(gw.http->port());
  for (int round = 0; round < 3; ++round) {
    const std::string body = ChatBody("gpt-4o", std::string(200000, 'a' + round));
    const std::string head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
        "content-type: application/json\r\n";
    if (round == 0) {
      ASSERT_TRUE(client.SendRaw(head + "content-length: " + std::to_string(body.size()) +
                                 "\r\n\r\n" + body.substr(0, 1000)));
      ASSERT_TRUE(client.SendRaw(body.substr(1000)));
    } else if (round == 1) {
      // Many short reads into one part of the string: each lands after the one before.
      ASSERT_TRUE(
          client.SendRaw(head + "content-length: " + std::to_string(body.size()) + "\r\n\r\n"));
      for (size_t at = 0; at < body.size(); at += 4999) {
        ASSERT_TRUE(client.SendRaw(body.substr(at, 4999)));
        if (at % (20 * 4999) == 0) absl::SleepFor(absl::Milliseconds(2));
      }
    } else {
      std::string chunked = head + "transfer-encoding: chunked\r\n\r\n";
      for (size_t at = 0; at < body.size(); at += 7000) {
        const std::string piece = body.substr(at, 7000);
        chunked += absl::StrCat(absl::Hex(piece.size()), "\r\n", piece, "\r\n");
      }
      ASSERT_TRUE(client.SendRaw(chunked + "0\r\n\r\n"));
    }
    auto r = client.ReadResponse();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(gw.upstream.last_request().body, body) << "round " << round;
  }
  auto r = client.Request("POST", "/v1/chat/completions", ChatBody("gpt-4o", "small again"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
}

// A body of announced length is read up to its end and no further: the rest of it, and a
// pipelined request sent in the same segment, arrive after the head; both are answered in order.
TEST(HttpServerLargeBodyTest, ARequestSentRightAfterALongBodyIsAnsweredAfterIt) {
  Gateway gw(Gateway::Options{.limits = "limits: {max_body_bytes: 1048576}\n"});
  HttpClient client(gw.http->port());
  const std::string body = ChatBody("gpt-4o", std::string(100000, 'q'));
  const std::string next = ChatBody("gpt-4o", "next");
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: ";
  ASSERT_TRUE(client.SendRaw(head + std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 10)));
  ASSERT_TRUE(
      client.SendRaw(body.substr(10) + head + std::to_string(next.size()) + "\r\n\r\n" + next));
  auto first = client.ReadResponse();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 200) << first->body;
  auto second = client.ReadResponse();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status, 200) << second->body;
  const std::vector<terse::testing::FakeRequest> seen = gw.upstream.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(seen[1].body, next);
}

// Resident memory of this process (the gateway runs in it), from /proc.
size_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Clients that announce bodies at the limit and send a few bytes of each hold about what they
// sent, not what they announced: the body's string is sized as its bytes arrive. Sized at once,
// 40 of them held 40 x 8 MiB.
TEST(HttpServerLargeBodyTest, AnnouncedButUnsentBodiesHoldLittleMemory) {
  Gateway gw(Gateway::Options{.limits = "limits: {max_body_bytes: 8388608}\n"});
  constexpr int kClients = 40;
  constexpr size_t kAnnounced = 8 * 1024 * 1024;
  const size_t before = ResidentBytes();
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<HttpClient>(gw.http->port()));
    ASSERT_TRUE(clients.back()->SendRaw(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: " +
        std::to_string(kAnnounced) + "\r\n\r\n{\"model\": \"gpt-4o\""));
  }
  // Each connection gets to its body's read within moments; a bounded wait for the slowest.
  HttpClient probe(gw.http->port());
  auto health = probe.Request("GET", "/healthz");
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  absl::SleepFor(absl::Milliseconds(200));
  const size_t now = ResidentBytes();
  const size_t grown = now > before ? now - before : 0;
  EXPECT_LT(grown, kClients * kAnnounced / 4) << grown;

  // They are still read, and the rest of one body completes its request.
  const std::string sent = R"({"model": "gpt-4o")";
  const std::string middle = R"(, "messages": [{"role": "user", "content": ")";
  const std::string end = R"("}]})";
  const std::string rest =
      middle + std::string(kAnnounced - sent.size() - middle.size() - end.size(), 'z') + end;
  ASSERT_TRUE(clients[0]->SendRaw(rest));
  auto r = clients[0]->ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(gw.upstream.last_request().body.size(), kAnnounced);
}

TEST_F(HttpServerTest, UnknownModelIs404) {
  auto r = Once("POST", "/v1/chat/completions", ChatBody("no-such-model", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->JsonBody()["error"]["code"], "model_not_found");
}

TEST_F(HttpServerTest, OversizedBodyIs413WithoutReadingIt) {
  HttpClient client(gw.http->port());
  // Announce far more than the limit (64 KiB in the test config) and send only the head.
  ASSERT_TRUE(client.SendRaw(
      "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
      "content-length: 10000000\r\n\r\n{\"model\":"));
  auto r = client.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "invalid_request_error");
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(client.WaitClosed());
  ExpectStillServing();
}

TEST_F(HttpServerTest, OversizedChunkedBodyIs413) {
  HttpClient client(gw.http->port());
  std::string piece(32 * 1024, 'x');
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) request += "8000\r\n" + piece + "\r\n";
  client.SendRaw(request);  // may fail part-way once the server closes: that is fine
  auto r = client.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 413);
  ExpectStillServing();
}

TEST_F(HttpServerTest, TruncatedRequestIsDroppedAndNothingIsForwarded) {
  {
    HttpClient client(gw.http->port());
    ASSERT_TRUE(client.SendRaw(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n"
        "{\"model\": \"gpt-4o\""));
    client.Close();
  }
  ExpectStillServing();
  EXPECT_EQ(gw.upstream.request_count(), 1u);  // only the ExpectStillServing request
}

TEST_F(HttpServerTest, GarbageIs400AndClosed) {
  HttpClient client(gw.http->port());
  ASSERT_TRUE(client.SendRaw("THIS IS NOT HTTP\r\n\r\n"));
  auto r = client.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(client.WaitClosed());
  ExpectStillServing();
}

TEST_F(HttpServerTest, Upstream500Is502AndUpstream400PassesThrough) {
  gw.upstream.EnqueueReply(FakeReply::Fail(500));
  auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "upstream_error");

  gw.upstream.EnqueueReply(FakeReply::Fail(400, "bad temperature", "invalid_request_error"));
  r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_THAT(r->JsonBody()["error"]["message"].get<std::string>(), HasSubstr("bad temperature"));
  ExpectStillServing();
}

// An upstream rate limit reaches the client as a 429 with the upstream's wait, in both headers
// the OpenAI SDKs honour; an error without one carries neither.
TEST_F(HttpServerTest, UpstreamRateLimitPassesItsRetryAfterOn) {
  FakeReply limited = FakeReply::Fail(429, "slow down", "rate_limit_error");
  limited.headers = {{"retry-after-ms", "2500"}};
  gw.upstream.EnqueueReply(limited);
  auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "rate_limit_error");
  EXPECT_EQ(r->Header("retry-after-ms"), "2500");
  EXPECT_EQ(r->Header("retry-after"), "3");  // whole seconds, rounded up
  EXPECT_FALSE(r->HasHeader("x-should-retry"));

  gw.upstream.EnqueueReply(FakeReply::Fail(400, "bad temperature", "invalid_request_error"));
  r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_FALSE(r->HasHeader("retry-after"));
  EXPECT_FALSE(r->HasHeader("retry-after-ms"));
}

TEST_F(HttpServerTest, StalledUpstreamIs504) {
  gw.upstream.EnqueueReply(FakeReply::Stall());
  auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 504);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "upstream_error");
  ExpectStillServing();
}

TEST_F(HttpServerTest, FailureAfterTheStreamStartedIsAnErrorEvent) {
  FakeReply reply = FakeReply::SlowStream(absl::Milliseconds(1));
  reply.reset_after_chunks = 2;
  gw.upstream.EnqueueReply(reply);
  auto r = Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "a b c d e f g", true));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  auto events = SseData(r->body);
  ASSERT_FALSE(events.empty());
  Json last = Json::parse(events.back());
  EXPECT_TRUE(last.contains("error")) << r->body;
  EXPECT_THAT(r->body, Not(HasSubstr("[DONE]")));
  ExpectStillServing();
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  HttpClient client(gw.http->port());
  auto first = client.Request("POST", "/v1/chat/completions", ChatBody("gpt-4o", "first"));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 200);
  auto second = client.Request("POST", "/v1/chat/completions", ChatBody("gpt-4o", "second", true));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status, 200);
  EXPECT_THAT(second->body, HasSubstr("[DONE]"));
  auto third = client.Request("GET", "/healthz");
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->status, 200);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  HttpClient client(gw.http->port());
  std::string a = ChatBody("gpt-4o", "alpha");
  std::string b = ChatBody("gpt-4o", "beta");
  ASSERT_TRUE(client.SendRaw("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: " +
                             std::to_string(a.size()) + "\r\n\r\n" + a +
                             "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: " +
                             std::to_string(b.size()) + "\r\n\r\n" + b));
  auto first = client.ReadResponse();
  auto second = client.ReadResponse();
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_THAT(first->body, HasSubstr("alpha"));
  EXPECT_THAT(second->body, HasSubstr("beta"));
}

// Requests answered at once, many in one write: all are answered, in order, each after the
// answer before it is sent.
TEST_F(HttpServerTest, ManyPipelinedRequestsInOneWriteAreAnsweredInOrder) {
  constexpr int kRequests = 3000;
  std::string requests;
  for (int i = 0; i < kRequests; ++i) {
    absl::StrAppend(&requests, "GET /healthz HTTP/1.1\r\nhost: x\r\nx-request-id: r", i,
                    "\r\n\r\n");
  }
  HttpClient client(gw.http->port());
  ASSERT_TRUE(client.SendRaw(requests));
  for (int i = 0; i < kRequests; ++i) {
    auto r = client.ReadResponse();
    ASSERT_TRUE(r.has_value()) << "response " << i;
    EXPECT_EQ(r->status, 200);
    ASSERT_EQ(r->Header("x-request-id"), absl::StrCat("r", i));
  }
}

// A client that half-closes after its request gets the answer, and then the server ends the
// connection at once rather than waiting out the idle timeout: the end of the client's bytes
// came with them, and no later event would tell of it.
TEST_F(HttpServerTest, AClientThatHalfClosesGetsItsAnswerAndTheConnectionEnds) {
  HttpClient client(gw.http->port(), absl::Seconds(10));
  ASSERT_TRUE(client.SendRaw("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
  client.ShutdownSend();
  auto r = client.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(client.WaitClosed());
  ExpectStillServing();
}

// A client that reads nothing for a while: what its socket does not take waits in the session
// and goes out as the socket makes room.
TEST_F(HttpServerTest, ALargeAnswerToAClientThatReadsLateArrivesWhole) {
  const std::string content(4 << 20, 'b');
  FakeReply whole;
  whole.raw_body = R"({"id":"c9","object":"chat.completion","choices":[{"index":0,)"
                   R"("message":{"role":"assistant","content":")" +
                   content + R"("},"finish_reason":"stop"}]})";
  gw.upstream.EnqueueReply(whole);
  HttpClient client(gw.http->port());
  ASSERT_TRUE(client.SendRequest("POST", "/v1/chat/completions", ChatBody("gpt-4o", "late")));
  absl::SleepFor(absl::Milliseconds(300));
  auto r = client.ReadResponse();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), whole.raw_body->size());
  ExpectStillServing();
}

// The second request arrives while the first is being answered (its header is read then, its
// body not): it waits for the first answer to end, then is answered.
TEST_F(HttpServerTest, ARequestSentDuringAnAnswerIsAnsweredAfterIt) {
  gw.upstream.EnqueueReply(FakeReply::SlowStream(absl::Milliseconds(20)));
  HttpClient client(gw.http->port());
  ASSERT_TRUE(client.SendRequest("POST", "/v1/chat/completions",
                                 ChatBody("gpt-4o", "one two three four", true)));
  ASSERT_TRUE(client.ReadHead().has_value());
  client.ReadBodyUntil("data: ");
  const std::string b = ChatBody("gpt-4o", "beta");
  ASSERT_TRUE(client.SendRaw("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: " +
                             std::to_string(b.size()) + "\r\n\r\n" + b));
  // To the end of the first answer (no body holds this needle), then the second.
  EXPECT_THAT(client.ReadBodyUntil("\x01 the end"), HasSubstr("data: [DONE]"));
  auto second = client.ReadResponse();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status, 200);
  EXPECT_THAT(second->body, HasSubstr("beta"));
}

TEST_F(HttpServerTest, ClientDisconnectMidStreamCancelsTheUpstreamCall) {
  gw.upstream.EnqueueReply(FakeReply::SlowStream(absl::Seconds(1)));
  {
    HttpClient client(gw.http->port());
    ASSERT_TRUE(client.SendRequest("POST", "/v1/chat/completions",
                                   ChatBody("gpt-4o", "a b c d e f g h i j", true)));
    ASSERT_TRUE(client.ReadHead().has_value());
    client.ReadBodyUntil("data: ");
    client.Close();
  }
  EXPECT_TRUE(gw.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
  ExpectStillServing();
}

TEST_F(HttpServerTest, ClientDisconnectWhileWaitingCancelsTheUpstreamCall) {
  gw.upstream.EnqueueReply(FakeReply::Stall());
  {
    HttpClient client(gw.http->port());
    ASSERT_TRUE(client.SendRequest("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x")));
    ASSERT_TRUE(gw.upstream.WaitForRequestCount(1, absl::Seconds(10)));
    client.Close();
  }
  EXPECT_TRUE(gw.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405) {
  auto r = Once("POST", "/v1/nope", "{}");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->JsonBody()["error"]["type"], "invalid_request_error");
  r = Once("GET", "/v1/chat/completions");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->Header("allow"), "POST");
  ExpectStillServing();
}

TEST_F(HttpServerTest, ModelsHealthReadyAndMetrics) {
  auto models = Once("GET", "/v1/models");
  ASSERT_TRUE(models.has_value());
  EXPECT_EQ(models->status, 200);
  EXPECT_EQ(models->JsonBody()["object"], "list");
  EXPECT_EQ(models->JsonBody()["data"][0]["id"], "small");

  auto health = Once("GET", "/healthz");
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  auto ready = Once("GET", "/readyz");
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->status, 200);

  Once("POST", "/v1/chat/completions", ChatBody("gpt-4o", "count me"));
  Once("POST", "/v1/chat/completions", "{not json");
  auto metrics = Once("GET", "/metrics");
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(metrics->status, 200);
  EXPECT_THAT(metrics->Header("content-type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(metrics->body, HasSubstr("terse_requests_total{route=\"gpt\",operation="
                                       "\"chat_completions\",status=\"200\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("terse_requests_total{route=\"\",operation="
                                       "\"chat_completions\",status=\"400\"} 1\n"));
  EXPECT_THAT(metrics->body, HasSubstr("terse_request_duration_seconds_bucket"));
  EXPECT_THAT(metrics->body, HasSubstr("terse_upstream_first_byte_seconds_count{route=\"gpt\"} 1"));
  EXPECT_THAT(metrics->body, HasSubstr("terse_in_flight_requests 0\n"));
}

TEST_F(HttpServerTest, EmbeddingsAndCompletionsAreForwarded) {
  auto r = Once("POST", "/v1/embeddings", R"({"model": "gpt-embed", "input": ["a", "b"]})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/embeddings");
  r = Once("POST", "/v1/completions", R"({"model": "gpt-3.5-turbo-instruct", "prompt": "x"})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/completions");
}

// The AzureOpenAI SDK clients put the deployment in the path and the key in `api-key`.
TEST_F(HttpServerTest, AzureDeploymentPathsNameTheModel) {
  auto r = Once("POST", "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-06-01",
                R"({"messages": [{"role": "user", "content": "hi azure"}]})",
                {{"api-key", "azure-key"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->JsonBody()["choices"][0]["message"]["content"], "hi azure");
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/chat/completions");
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["model"], "gpt-4o-prod");

  // The deployment wins over the body's model, as on Azure; embeddings take the same form.
  r = Once("POST", "/openai/deployments/gpt-embed-3/embeddings?api-version=2024-06-01",
           R"({"model": "ignored", "input": "x"})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/embeddings");
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["model"], "gpt-embed-3");

  r = Once("POST", "/openai/deployments/small/completions", R"({"prompt": "x"})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["model"], "fake-small-2024");

  r = Once("POST", "/openai/deployments/gpt-4o/unknown", "{}");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
  r = Once("POST", "/openai/deployments//chat/completions", ChatBody("gpt-4o", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 404);
}

// A gateway whose model `squeeze` goes to a route that compresses through `step`.
Gateway::Options SqueezedRoute(CompressionStep* step) {
  return Gateway::Options{.extra_routes = R"(
  - name: squeezed
    model: squeeze
    provider: fake
    compression: {enabled: true, rate: 0.4}
)",
                          .compression = step};
}

TEST(HttpServerAuthTest, KeysAndCompressionHeaders) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input input) {
    CompressionStep::Result result;
    result.prompt = std::move(input.prompt);
    result.report.set_applied(true);
    result.report.set_original_tokens(1000);
    result.report.set_compressed_tokens(420);
    result.report.set_rate(0.42);
    result.report.set_compress_ms(17.5);
    result.report.set_cache_hit(true);
    return absl::StatusOr<CompressionStep::Result>(std::move(result));
  });
  Gateway gw(SqueezedRoute(&step));
  HttpClient client(gw.http->port());
  auto r = client.Request("POST", "/v1/chat/completions", ChatBody("squeeze", "x"),
                          {{"Authorization", "Bearer sk-one"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("x-terse-original-tokens"), "1000");
  EXPECT_EQ(r->Header("x-terse-compressed-tokens"), "420");
  EXPECT_EQ(r->Header("x-terse-rate"), "0.42");
  EXPECT_EQ(r->Header("x-terse-compress-ms"), "17.50");
  EXPECT_EQ(r->Header("x-terse-cache"), "hit");
  r = client.Request("POST", "/v1/chat/completions", ChatBody("squeeze", "x", true),
                     {{"api-key", "azure-key"}});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("x-terse-compressed-tokens"), "420");
  auto calls = step.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].api_key, "sk-one");
  EXPECT_EQ(calls[1].api_key, "azure-key");
  EXPECT_EQ(calls[0].face, Face::kHttp);
  // The key reaches no upstream header set by terse (the provider sends its own).
  EXPECT_NE(gw.upstream.last_request().Header("authorization"), "Bearer sk-one");
}

// Compression changes the prompt: only `messages` is rewritten, the client's other members reach
// the upstream as written.
TEST(HttpServerCompressionTest, ACompressedRequestKeepsTheTextOfWhatCompressionLeft) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input input) {
    CompressionStep::Result result;
    (*input.prompt)[0]["content"] = "short";
    result.prompt = std::move(input.prompt);
    result.report.set_applied(true);
    return absl::StatusOr<CompressionStep::Result>(std::move(result));
  });
  Gateway gw(SqueezedRoute(&step));
  HttpClient client(gw.http->port());
  auto r = client.Request(
      "POST", "/v1/chat/completions",
      R"({"model": "squeeze", "temperature": 0.50, "terse": {"rate": 0.3},)"
      R"( "messages": [{"role": "user", "content": "a long, long prompt"}], "n": 1})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(gw.upstream.last_request().body,
            R"({"model": "squeeze", "temperature": 0.50,)"
            R"( "messages": [{"role":"user","content":"short"}], "n": 1})");
}

TEST(HttpServerErrorTest, NotRetryableErrorsSayXShouldRetryFalse) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input) {
    return absl::StatusOr<CompressionStep::Result>(
        MakeError(absl::StatusCode::kResourceExhausted, "budget spent",
                  {.http_status = 429, .code = "insufficient_quota", .retryable = false}));
  });
  Gateway gw(Gateway::Options{.extra_routes = R"(
  - name: strict
    model: strict
    provider: fake
    compression: {enabled: true, rate: 0.5, on_error: fail}
)",
                              .compression = &step});
  HttpClient client(gw.http->port());
  auto r = client.Request("POST", "/v1/chat/completions", ChatBody("strict", "x"));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(r->Header("x-should-retry"), "false");
  EXPECT_EQ(r->JsonBody()["error"]["code"], "insufficient_quota");
}

TEST(HttpServerShutdownTest, ShutdownEndsIdleAndBusyConnections) {
  Gateway gw;
  gw.upstream.SetDefaultReply(FakeReply::Stall());
  HttpClient idle(gw.http->port());
  ASSERT_TRUE(idle.Request("GET", "/healthz").has_value());
  HttpClient busy(gw.http->port());
  ASSERT_TRUE(busy.SendRequest("POST", "/v1/chat/completions", ChatBody("gpt-4o", "x")));
  ASSERT_TRUE(gw.upstream.WaitForRequestCount(1, absl::Seconds(10)));
  gw.http->Shutdown(absl::Milliseconds(200));
  EXPECT_TRUE(idle.WaitClosed());
  EXPECT_TRUE(busy.WaitClosed());
  EXPECT_TRUE(gw.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
}

TEST(HttpServerStartTest, PortInUseIsAnError) {
  Gateway gw;
  v1::Config config = gw.config->proto();
  config.mutable_listeners()->mutable_http()->set_port(gw.http->port());
  auto second = HttpServer::Start(config, *gw.pipeline, gw.metrics);
  EXPECT_FALSE(second.ok());
}

}  // namespace
}  // namespace terse::proxy
