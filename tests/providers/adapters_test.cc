// Each adapter against the fake upstream, through ProviderSet as the pipeline uses it: what goes
// on the wire, and what the sink hears back.
#include <cstdlib>
#include <memory>
#include <string>

#include "base/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "providers/provider_set.h"
#include "tests/providers/recorders.h"
#include "tests/support/fake_upstream.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::FakeReply;
using ::terse::testing::FakeRequest;
using ::terse::testing::FakeUpstream;
using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kKeyEnv[] = "TERSE_TEST_PROVIDER_KEY";
constexpr char kKey[] = "sk-test-not-a-real-key";

class AdaptersTest : public ::testing::Test {
 protected:
  void SetUp() override { ::setenv(kKeyEnv, kKey, 1); }
  void TearDown() override { ::unsetenv(kKeyEnv); }

  // A set with one provider of `kind` named "p" pointing at the fake upstream.
  std::unique_ptr<ProviderSet> MakeSet(v1::Provider::Kind kind, std::string base_url = "") {
    v1::Config config;
    v1::Provider* p = config.add_providers();
    p->set_name("p");
    p->set_kind(kind);
    p->set_base_url(base_url.empty() ? upstream_.base_url() : base_url);
    p->set_api_key_env(kKeyEnv);
    p->mutable_retry()->set_max_attempts(1);
    auto set = ProviderSet::Create(config);
    EXPECT_THAT(set, IsOk());
    return std::move(set).value();
  }

  static Request Chat(Json body, bool stream = false) {
    Request request;
    request.endpoint = Endpoint::kChatCompletions;
    request.stream = stream;
    if (stream) body["stream"] = true;
    request.body = json::WireJson(std::move(body));
    return request;
  }

  // Sends `request` to provider "p" and waits for the end.
  std::shared_ptr<RecordingSink> Run(ProviderSet& set, Request request) {
    auto sink = std::make_shared<RecordingSink>();
    set.Send({set.Find("p")}, std::move(request), sink);
    EXPECT_TRUE(sink->WaitDone());
    return sink;
  }

  static Json Messages(const std::string& user) {
    return {{"model", "gpt-test"},
            {"messages", Json::array({{{"role", "system"}, {"content", "You are terse."}},
                                      {{"role", "user"}, {"content", user}}})}};
  }

  FakeUpstream upstream_;
};

TEST_F(AdaptersTest, OpenAiNonStreamingForwardsTheBodyAndReturnsTheAnswer) {
  auto set = MakeSet(v1::Provider::OPENAI);
  Json body = Messages("what is two plus two");
  body["zz_unknown_field"] = {{"kept", true}};
  body["temperature"] = 0.5;
  auto sink = Run(*set, Chat(body));
  ASSERT_THAT(sink->status(), IsOk());
  Json response = sink->response();
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["choices"][0]["message"]["content"], "what is two plus two");
  EXPECT_EQ(response["usage"]["completion_tokens"], 5);
  EXPECT_TRUE(sink->chunks().empty());

  FakeRequest sent = upstream_.last_request();
  EXPECT_EQ(sent.path, "/v1/chat/completions");
  EXPECT_EQ(sent.Header("authorization"), std::string("Bearer ") + kKey);
  EXPECT_EQ(sent.Header("content-type"), "application/json");
  // Unknown fields reach the upstream unchanged and in order.
  EXPECT_EQ(sent.JsonBody().dump(), body.dump());
}

TEST_F(AdaptersTest, OpenAiStreamingAsksForUsageAndDeliversChunks) {
  auto set = MakeSet(v1::Provider::OPENAI);
  Json body = Messages("one two three");
  body["stream_options"] = {{"other", 1}};
  auto sink = Run(*set, Chat(body, /*stream=*/true));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "one two three");
  Json usage = sink->StreamedUsage();
  ASSERT_TRUE(usage.is_object());
  EXPECT_EQ(usage["completion_tokens"], 3);
  EXPECT_EQ(sink->chunks().front()["object"], "chat.completion.chunk");

  Json sent = upstream_.last_request().JsonBody();
  EXPECT_EQ(sent["stream"], true);
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
  EXPECT_EQ(sent["stream_options"]["other"], 1);
  EXPECT_EQ(upstream_.last_request().Header("accept"), "text/event-stream");
}

// OpenAI-shaped answers are relayed as the upstream wrote them: checked, never re-encoded.
TEST_F(AdaptersTest, OpenAiAnswersKeepTheUpstreamsBytes) {
  const std::string body =
      "{ \"id\": \"c1\", \"object\": \"chat.completion\", \"x_big\": 12345678901234567890123, "
      "\"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": "
      "\"caf\\u00e9\"}, \"finish_reason\": \"stop\"}], \"usage\": {\"prompt_tokens\": 7, "
      "\"completion_tokens\": 2, \"total_tokens\": 9}}\n";
  FakeReply reply;
  reply.raw_body = body;
  upstream_.EnqueueReply(reply);
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = Run(*set, Chat(Messages("hi")));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_TRUE(sink->response_relayed_as_received());
  EXPECT_EQ(sink->response_text(), body);
  EXPECT_EQ(sink->response()["usage"]["prompt_tokens"], 7);

  FakeReply broken;
  broken.raw_body = "{\"id\": \"c1\", \"choices\": [}";
  upstream_.EnqueueReply(broken);
  EXPECT_THAT(Run(*set, Chat(Messages("hi")))->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("invalid JSON")));
}

TEST_F(AdaptersTest, OpenAiStreamChunksKeepTheUpstreamsBytes) {
  const std::string first =
      R"({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "caf\u00e9 \"q\""}, "finish_reason": null}], "x_unknown": [1.50, {"k": true}]})";
  const std::string last =
      R"({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})";
  const std::string usage =
      R"({"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}})";
  FakeReply reply;
  // Events split across writes, a comment line, CRLF endings, and data spread over two lines.
  reply.raw_stream = {
      "data: " + first.substr(0, 20), first.substr(20) + "\r\n\r\n: ping\n\n",
      "data: {\"id\":\"c1\",\ndata: \"choices\":[{\"index\":0,\"delta\":{\"content\":"
      "\"!\"},\"finish_reason\":null}]}\n\n",
      "data: " + last + "\n\ndata: " + usage + "\n\n", "data: [DONE]\n\n"};
  upstream_.EnqueueReply(reply);
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = Run(*set, Chat(Messages("hi"), /*stream=*/true));
  ASSERT_THAT(sink->status(), IsOk());
  ASSERT_EQ(sink->chunks().size(), 4u);
  EXPECT_THAT(
      sink->chunk_texts(),
      ::testing::ElementsAre(
          first,
          R"({"id":"c1","choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}]})",
          last, usage));
  // The two-line event had to be parsed (and re-encoded on one line); the others were not.
  EXPECT_THAT(sink->chunks_relayed_as_received(), ::testing::ElementsAre(true, false, true, true));
  EXPECT_EQ(sink->StreamedText(), "caf\xc3\xa9 \"q\"!");
  EXPECT_EQ(sink->StreamedUsage()["prompt_tokens"], 5);
}

TEST_F(AdaptersTest, TheChunksOfOneReadReachTheSinkInOneCall) {
  const std::string chunk =
      R"({"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]})";
  FakeReply reply;
  reply.raw_stream = {"data: " + chunk + "\n\ndata: " + chunk + "\n\ndata: " + chunk +
                      "\n\ndata: [DONE]\n\n"};  // one write
  upstream_.EnqueueReply(reply);
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = Run(*set, Chat(Messages("hi"), /*stream=*/true));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "aaa");
  EXPECT_EQ(sink->chunk_calls(), 1);

  // A bad event ends the call; the chunks before it in the same read still come first.
  FakeReply error;
  error.raw_stream = {"data: " + chunk + "\n\ndata: " + chunk +
                      "\n\ndata: {\"error\":{\"message\":\"model overloaded\"}}\n\n"};
  upstream_.EnqueueReply(error);
  sink = Run(*set, Chat(Messages("hi"), /*stream=*/true));
  EXPECT_EQ(sink->StreamedText(), "aa");
  EXPECT_THAT(sink->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("model overloaded")));
}

TEST_F(AdaptersTest, OpenAiStreamEventsAreStillChecked) {
  auto set = MakeSet(v1::Provider::OPENAI);
  FakeReply invalid;
  invalid.raw_stream = {"data: {\"choices\":[{\"index\":0}]\n\n"};
  upstream_.EnqueueReply(invalid);
  auto sink = Run(*set, Chat(Messages("hi"), /*stream=*/true));
  EXPECT_THAT(sink->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("invalid stream event")));

  FakeReply error;
  error.raw_stream = {
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n",
      "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}\n\n"};
  upstream_.EnqueueReply(error);
  sink = Run(*set, Chat(Messages("hi"), /*stream=*/true));
  EXPECT_EQ(sink->chunks().size(), 1u);
  EXPECT_THAT(sink->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("model overloaded")));

  // Without [DONE], a finish_reason is a proper end; without either, the stream was cut.
  FakeReply finished;
  finished.raw_stream = {
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"};
  upstream_.EnqueueReply(finished);
  EXPECT_THAT(Run(*set, Chat(Messages("hi"), /*stream=*/true))->status(), IsOk());
  FakeReply cut;
  cut.raw_stream = {"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":null}]}\n\n"};
  upstream_.EnqueueReply(cut);
  EXPECT_THAT(Run(*set, Chat(Messages("hi"), /*stream=*/true))->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("ended before")));

  // The finish_reason is found however the chunk spells it, and only where it counts.
  const std::vector<std::pair<std::string, bool>> last_chunks = {
      {R"({"choices":[{"index":0,"finish_reason" :  "length"}]})", true},
      {R"({"choices":[{"index":0,"delta":{"content":"say \"hi\""},"finish_reason":"stop"}]})",
       true},
      {R"({"choices":[{"index":0,"finish_reason":"stop"}]})", true},
      {R"({"choices":[{"index":0,"delta":{"content":"finish_reason"},"finish_reason":null}]})",
       false},
      {R"({"choices":[{"index":0,"delta":{"x":{"finish_reason":"stop"}},"finish_reason":null}]})",
       false},
  };
  for (const auto& [chunk, finishes] : last_chunks) {
    FakeReply reply;
    reply.raw_stream = {"data: " + chunk + "\n\n"};
    upstream_.EnqueueReply(reply);
    const absl::Status status = Run(*set, Chat(Messages("hi"), /*stream=*/true))->status();
    if (finishes) {
      EXPECT_THAT(status, IsOk()) << chunk;
    } else {
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("ended before")))
          << chunk;
    }
  }
}

TEST_F(AdaptersTest, StreamedChunksArriveBeforeTheUpstreamFinishes) {
  FakeReply reply;
  reply.stall_after_chunks = 2;
  upstream_.SetDefaultReply(reply);
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = std::make_shared<RecordingSink>();
  auto call = set->Send({set->Find("p")}, Chat(Messages("alpha beta gamma"), true), sink);
  ASSERT_TRUE(sink->WaitChunks(3));  // the role chunk and two words, while the upstream stalls
  EXPECT_FALSE(sink->done());
  EXPECT_EQ(sink->StreamedText(), "alpha beta ");

  call->Cancel();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(upstream_.WaitForAnswersCutByClient(1, absl::Seconds(10)));
  EXPECT_EQ(sink->dones(), 1);
}

TEST_F(AdaptersTest, UpstreamClientErrorsKeepStatusMessageTypeAndCode) {
  upstream_.SetDefaultReply(
      FakeReply::Fail(400, "messages is too long", "invalid_request_error", "context_length"));
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = Run(*set, Chat(Messages("x")));
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kInvalidArgument, "messages is too long"));
  ErrorDetail detail = DetailOf(sink->status());
  EXPECT_EQ(detail.http_status, 400);
  EXPECT_EQ(detail.type, "invalid_request_error");
  EXPECT_EQ(detail.code, "context_length");
  EXPECT_EQ(sink->responses(), 0);

  upstream_.SetDefaultReply(FakeReply::Fail(401, "bad key", "authentication_error"));
  sink = Run(*set, Chat(Messages("x")));
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kUnauthenticated, "bad key"));
  EXPECT_EQ(DetailOf(sink->status()).http_status, 401);
}

TEST_F(AdaptersTest, UpstreamServerErrorsBecome502) {
  upstream_.SetDefaultReply(FakeReply::Fail(503, "engine overloaded"));
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = Run(*set, Chat(Messages("x"), true));
  EXPECT_THAT(sink->status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("engine overloaded")));
  EXPECT_EQ(DetailOf(sink->status()).http_status, 502);
  EXPECT_EQ(DetailOf(sink->status()).type, "upstream_error");
}

TEST_F(AdaptersTest, OpenAiCompletionsAndEmbeddings) {
  auto set = MakeSet(v1::Provider::OPENAI);
  Request completion;
  completion.endpoint = Endpoint::kCompletions;
  completion.body =
      json::WireJson(Json{{"model", "gpt-3.5-turbo-instruct"}, {"prompt", "say this"}});
  auto sink = Run(*set, completion);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(upstream_.last_request().path, "/v1/completions");
  EXPECT_EQ(sink->response()["choices"][0]["text"], "say this");

  completion.stream = true;
  completion.body.SetMember("stream", true);
  sink = Run(*set, completion);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "say this");
  EXPECT_TRUE(sink->StreamedUsage().is_object());

  Request embeddings;
  embeddings.endpoint = Endpoint::kEmbeddings;
  embeddings.body = json::WireJson(
      Json{{"model", "text-embedding-3-small"}, {"input", Json::array({"a b", "c"})}});
  sink = Run(*set, embeddings);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(upstream_.last_request().path, "/v1/embeddings");
  EXPECT_EQ(sink->response()["data"].size(), 2u);
  EXPECT_EQ(sink->response()["usage"]["prompt_tokens"], 3);
}

TEST_F(AdaptersTest, AzureUsesTheDeploymentUrlAndApiKeyHeader) {
  auto set = MakeSet(v1::Provider::AZURE_OPENAI,
                     "http://127.0.0.1:" + std::to_string(upstream_.port()) + "/");
  auto sink = Run(*set, Chat(Messages("hello azure")));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->response()["choices"][0]["message"]["content"], "hello azure");
  FakeRequest sent = upstream_.last_request();
  EXPECT_EQ(sent.target, "/openai/deployments/gpt-test/chat/completions?api-version=2024-10-21");
  EXPECT_EQ(sent.Header("api-key"), kKey);
  EXPECT_FALSE(sent.HasHeader("authorization"));

  sink = Run(*set, Chat(Messages("streamed azure"), true));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "streamed azure");
}

TEST_F(AdaptersTest, OpenAiCompatibleWorksWithoutAKey) {
  ::unsetenv(kKeyEnv);
  auto set = MakeSet(v1::Provider::OPENAI_COMPATIBLE);
  auto sink = Run(*set, Chat(Messages("local model"), true));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "local model");
  EXPECT_FALSE(upstream_.last_request().HasHeader("authorization"));
}

TEST_F(AdaptersTest, OpenAiWithoutAKeyFailsClearlyWithoutCallingTheUpstream) {
  ::unsetenv(kKeyEnv);
  auto set = MakeSet(v1::Provider::OPENAI);
  auto sink = Run(*set, Chat(Messages("x")));
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(kKeyEnv)));
  EXPECT_EQ(upstream_.request_count(), 0u);
}

TEST_F(AdaptersTest, ExtraHeadersReachTheUpstreamButNeverClientCredentials) {
  auto set = MakeSet(v1::Provider::OPENAI);
  Request request = Chat(Messages("x"));
  request.headers = {{"OpenAI-Organization", "org-1"}, {"Authorization", "Bearer client-key"}};
  auto sink = Run(*set, request);
  ASSERT_THAT(sink->status(), IsOk());
  FakeRequest sent = upstream_.last_request();
  EXPECT_EQ(sent.Header("openai-organization"), "org-1");
  EXPECT_EQ(sent.Header("authorization"), std::string("Bearer ") + kKey);
}

TEST_F(AdaptersTest, AnthropicTranslatesRequestAndResponse) {
  auto set = MakeSet(v1::Provider::ANTHROPIC);
  Json body = Messages("tell me a story");
  body["stop"] = "THE END";
  auto sink = Run(*set, Chat(body));
  ASSERT_THAT(sink->status(), IsOk());

  FakeRequest sent = upstream_.last_request();
  EXPECT_EQ(sent.path, "/v1/messages");
  EXPECT_EQ(sent.Header("x-api-key"), kKey);
  EXPECT_EQ(sent.Header("anthropic-version"), "2023-06-01");
  EXPECT_FALSE(sent.HasHeader("authorization"));
  Json wire = sent.JsonBody();
  EXPECT_EQ(wire["system"], "You are terse.");
  EXPECT_EQ(wire["max_tokens"], 4096);
  EXPECT_EQ(wire["stop_sequences"], Json::array({"THE END"}));
  ASSERT_EQ(wire["messages"].size(), 1u);
  EXPECT_EQ(wire["messages"][0]["role"], "user");
  EXPECT_EQ(wire["messages"][0]["content"][0]["text"], "tell me a story");

  Json response = sink->response();
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["choices"][0]["message"]["content"], "tell me a story");
  EXPECT_EQ(response["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(response["usage"]["prompt_tokens"], 7);  // 3 system words + 4 user words
  EXPECT_EQ(response["usage"]["completion_tokens"], 4);
  EXPECT_EQ(response["usage"]["total_tokens"], 11);
}

TEST_F(AdaptersTest, AnthropicStreamBecomesOpenAiChunksEndingWithUsage) {
  auto set = MakeSet(v1::Provider::ANTHROPIC);
  Json body = Messages("stream this please");
  body["max_tokens"] = 50;
  auto sink = Run(*set, Chat(body, true));
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(upstream_.last_request().JsonBody()["stream"], true);
  EXPECT_EQ(upstream_.last_request().JsonBody()["max_tokens"], 50);

  std::vector<Json> chunks = sink->chunks();
  ASSERT_GE(chunks.size(), 5u);
  EXPECT_EQ(chunks.front()["object"], "chat.completion.chunk");
  EXPECT_EQ(chunks.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(sink->StreamedText(), "stream this please");
  const Json& finish = chunks[chunks.size() - 2];
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "stop");
  const Json& last = chunks.back();
  EXPECT_TRUE(last["choices"].empty());
  EXPECT_EQ(last["usage"]["prompt_tokens"], 6);
  EXPECT_EQ(last["usage"]["completion_tokens"], 3);
}

TEST_F(AdaptersTest, AnthropicErrorsKeepTheirStatusAndMessage) {
  upstream_.SetDefaultReply(FakeReply::Fail(400, "max_tokens: too large", "invalid_request_error"));
  auto set = MakeSet(v1::Provider::ANTHROPIC);
  auto sink = Run(*set, Chat(Messages("x")));
  EXPECT_THAT(sink->status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "max_tokens: too large"));
  EXPECT_EQ(DetailOf(sink->status()).type, "invalid_request_error");

  upstream_.SetDefaultReply(FakeReply::Fail(529, "Overloaded", "overloaded_error"));
  sink = Run(*set, Chat(Messages("x"), true));
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("Overloaded")));
  EXPECT_EQ(DetailOf(sink->status()).http_status, 502);
}

TEST_F(AdaptersTest, AnthropicRefusesEndpointsItDoesNotHave) {
  auto set = MakeSet(v1::Provider::ANTHROPIC);
  Request embeddings;
  embeddings.endpoint = Endpoint::kEmbeddings;
  embeddings.body = json::WireJson(Json{{"model", "m"}, {"input", "x"}});
  auto sink = Run(*set, embeddings);
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(upstream_.request_count(), 0u);
}

}  // namespace
}  // namespace terse::providers
