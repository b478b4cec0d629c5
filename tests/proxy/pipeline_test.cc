// The pipeline with the real config, the real providers and a fake upstream; the face is a
// recording responder.
#include "proxy/pipeline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/errors.h"
#include "tests/proxy/test_env.h"
#include "tests/support/status_matchers.h"

namespace terse::proxy {
namespace {

using ::terse::proxy::testing::Gateway;
using ::terse::proxy::testing::RecordingResponder;
using ::terse::proxy::testing::ScriptedCompression;
using ::terse::testing::FakeReply;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = RecordingResponder::Kind;

Json Chat(std::string model, std::string text) {
  return Json{{"model", std::move(model)},
              {"messages", Json::array({Json{{"role", "user"}, {"content", std::move(text)}}})}};
}

CallInfo Info(Operation op = Operation::kChatCompletions) {
  CallInfo info;
  info.operation = op;
  info.request_id = "req_test";
  return info;
}

struct Started {
  std::shared_ptr<RecordingResponder> responder = std::make_shared<RecordingResponder>();
  std::unique_ptr<PipelineCall> call;
};

Started Start(Pipeline& pipeline, Json body, CallInfo info = Info()) {
  Started run;
  // As the HTTP face hands it over: the client's text with its value.
  std::string text = body.dump();
  run.call = pipeline.Handle(std::move(info),
                             json::WireJson::FromParsedText(std::move(text), std::move(body)),
                             run.responder);
  return run;
}

// Runs a call to its end and returns the responder.
std::shared_ptr<RecordingResponder> RunToEnd(Pipeline& pipeline, Json body,
                                             CallInfo info = Info()) {
  Started run = Start(pipeline, std::move(body), std::move(info));
  EXPECT_TRUE(run.responder->WaitDone());
  EXPECT_EQ(run.responder->terminal_calls(), 1);
  return run.responder;
}

class PipelineTest : public ::testing::Test {
 protected:
  Gateway gw{Gateway::Options{.start_http = false}};
};

TEST_F(PipelineTest, NonStreamingReplyIsTheUpstreamAnswer) {
  gw.upstream.EnqueueReply(FakeReply::Text("hello back"));
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "hello"));
  auto e = r->terminal();
  ASSERT_EQ(e.kind, Kind::kReply) << e.status;
  EXPECT_EQ(e.json["choices"][0]["message"]["content"], "hello back");
  EXPECT_TRUE(e.json["usage"].is_object());
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/chat/completions");
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["model"], "gpt-4o");
}

TEST_F(PipelineTest, RouteRenamesTheModelInPlace) {
  Json body = Chat("small", "hi");
  body["temperature"] = 0.5;
  RunToEnd(*gw.pipeline, body);
  Json sent = gw.upstream.last_request().JsonBody();
  EXPECT_EQ(sent["model"], "fake-small-2024");
  EXPECT_EQ(sent.begin().key(), "model");  // the field keeps its place
}

TEST_F(PipelineTest, UnknownFieldsReachTheUpstreamUnchangedAndInOrder) {
  Json body = Json::parse(R"({"zeta": 1, "model": "gpt-4o", "alpha": {"b": [1, 2], "a": null},
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                  {"type": "image_url", "image_url": {"url": "data:x"}}], "extra": true}],
    "tools": [{"type": "function", "function": {"name": "f"}}], "some_future_field": "x"})");
  RunToEnd(*gw.pipeline, body);
  Json sent = gw.upstream.last_request().JsonBody();
  EXPECT_EQ(sent.dump(), body.dump());
}

TEST_F(PipelineTest, StreamingRelaysChunksAndHidesTheUsageChunk) {
  Json body = Chat("gpt-4o", "one two three");
  body["stream"] = true;
  auto r = RunToEnd(*gw.pipeline, body);
  auto events = r->events();
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front().kind, Kind::kStartStream);
  EXPECT_EQ(events.back().kind, Kind::kEndStream);
  EXPECT_THAT(events.back().status, ::terse::testing::IsOk());
  std::string text;
  for (const Json& chunk : r->chunks()) {
    EXPECT_FALSE(chunk.contains("usage")) << chunk.dump();
    ASSERT_FALSE(chunk["choices"].empty()) << chunk.dump();
    text += chunk["choices"][0]["delta"].value("content", "");
  }
  EXPECT_THAT(text, HasSubstr("one two three"));
  // terse asked for usage anyway, to book it.
  Json sent = gw.upstream.last_request().JsonBody();
  EXPECT_EQ(sent["stream_options"]["include_usage"], true);
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"prompt\"}"));
}

TEST_F(PipelineTest, StreamingKeepsTheUsageChunkWhenAsked) {
  Json body = Chat("gpt-4o", "one two");
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r = RunToEnd(*gw.pipeline, body);
  auto chunks = r->chunks();
  ASSERT_FALSE(chunks.empty());
  EXPECT_TRUE(chunks.back()["choices"].empty());
  EXPECT_GT(chunks.back()["usage"]["prompt_tokens"].get<int>(), 0);
}

// The upstream's stream events as the fake wrote them: content, the finish, then usage.
const char kContentChunk[] =
    R"({"id": "c9", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "caf\u00e9"}, "finish_reason": null}], "x_vendor": {"kept": [1.50]}})";
const char kFinishChunk[] =
    R"({"id":"c9","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})";
const char kUsageChunk[] =
    R"({"id":"c9","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":41,"completion_tokens":3,"total_tokens":44}})";

FakeReply RawStream(std::vector<std::string> chunks) {
  FakeReply reply;
  for (std::string& chunk : chunks) reply.raw_stream.push_back("data: " + chunk + "\n\n");
  reply.raw_stream.push_back("data: [DONE]\n\n");
  return reply;
}

TEST_F(PipelineTest, StreamChunksAreRelayedAsReceivedAndTheUsageChunkIsBookedThenDropped) {
  gw.upstream.EnqueueReply(RawStream({kContentChunk, kFinishChunk, kUsageChunk}));
  Json body = Chat("gpt-4o", "hi");
  body["stream"] = true;
  auto r = RunToEnd(*gw.pipeline, body);
  std::vector<std::string> texts;
  for (const auto& e : r->events()) {
    if (e.kind != Kind::kChunk) continue;
    EXPECT_TRUE(e.as_received) << e.text;
    texts.push_back(e.text);
  }
  // Byte for byte, and without the usage chunk terse added for itself.
  EXPECT_THAT(texts, ElementsAre(kContentChunk, kFinishChunk));
  EXPECT_THAT(r->terminal().status, ::terse::testing::IsOk());
  const std::string metrics = gw.metrics.RenderPrometheus();
  EXPECT_THAT(metrics,
              HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"prompt\"} 41\n"));
  EXPECT_THAT(metrics,
              HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"completion\"} 3\n"));
}

TEST_F(PipelineTest, AskedForUsageChunkIsRelayedAsReceived) {
  gw.upstream.EnqueueReply(RawStream({kContentChunk, kFinishChunk, kUsageChunk}));
  Json body = Chat("gpt-4o", "hi");
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r = RunToEnd(*gw.pipeline, body);
  auto events = r->events();
  std::vector<std::string> texts;
  for (const auto& e : events) {
    if (e.kind == Kind::kChunk) texts.push_back(e.text);
  }
  EXPECT_THAT(texts, ElementsAre(kContentChunk, kFinishChunk, kUsageChunk));
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"prompt\"} 41\n"));
}

// Some servers put `usage` on the last content chunk: the client that did not ask for usage gets
// that chunk without it; the numbers are booked all the same.
TEST_F(PipelineTest, UsageOnAContentChunkIsRemovedFromItWhenNotAsked) {
  const std::string with_usage =
      R"({"id":"c9","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":1}})";
  gw.upstream.EnqueueReply(RawStream({kContentChunk, with_usage}));
  Json body = Chat("gpt-4o", "hi");
  body["stream"] = true;
  auto r = RunToEnd(*gw.pipeline, body);
  auto chunks = r->chunks();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(
      chunks[1],
      Json::parse(
          R"({"id":"c9","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]})"));
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"prompt\"} 8\n"));
}

TEST_F(PipelineTest, NonStreamingReplyIsTheUpstreamsBytesWithItsUsageBooked) {
  const std::string answer =
      R"({"id": "c9", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "caf\u00e9"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}})";
  FakeReply reply;
  reply.raw_body = answer;
  gw.upstream.EnqueueReply(reply);
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "hi"));
  auto e = r->terminal();
  ASSERT_EQ(e.kind, Kind::kReply) << e.status;
  EXPECT_TRUE(e.as_received);
  EXPECT_EQ(e.text, answer);
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"prompt\"} 12\n"));
}

// Token counts are read off the upstream's bytes without parsing them; odd values count as 0 and
// never break the call, and a key spelled with escapes is still found.
TEST_F(PipelineTest, UsageIsBookedFromOddButValidAnswers) {
  struct Case {
    std::string usage;  // the usage member's text, or a whole answer when it starts with '{"id'
    int prompt;         // the prompt tokens booked
  };
  const std::vector<Case> cases = {
      {R"({"prompt_tokens": 7, "completion_tokens": 1})", 7},
      {R"({"prompt_tokens": 9.0, "completion_tokens": 1})", 9},
      {R"({"prompt_tokens": "11", "completion_tokens": 1})", 0},
      {R"({"prompt_tokens": -5, "completion_tokens": 1})", 0},
      {R"({"prompt_tokens": 1e400, "completion_tokens": 1})", -1},  // not JSON for the parser
      {R"({"prompt_tokens": {"n": 3}, "completion_tokens": 1})", 0},
      {R"(null)", 0},
      {R"({"id": "c9", "choices": [], "usage": {"prompt_tokens": 13}})", 13},
  };
  int booked = 0;
  for (const Case& c : cases) {
    FakeReply reply;
    reply.raw_body = c.usage.rfind(R"({"id")", 0) == 0
                         ? c.usage
                         : R"({"id": "c9", "object": "chat.completion", "choices": [], "usage": )" +
                               c.usage + "}";
    gw.upstream.EnqueueReply(reply);
    auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "hi"));
    if (c.prompt < 0) {
      EXPECT_EQ(r->terminal().kind, Kind::kFail) << c.usage;  // an invalid answer is a 502
      continue;
    }
    ASSERT_EQ(r->terminal().kind, Kind::kReply) << c.usage << " " << r->terminal().status;
    booked += c.prompt;
    EXPECT_THAT(gw.metrics.RenderPrometheus(),
                HasSubstr("terse_upstream_tokens_total{route=\"gpt\",kind=\"prompt\"} " +
                          std::to_string(booked) + "\n"))
        << c.usage;
  }
}

TEST_F(PipelineTest, OrganizationHeadersOnlyWhereTheRouteSaysSo) {
  CallInfo info = Info();
  info.headers = {{"openai-organization", "org-1"}, {"openai-project", "proj-1"}};
  RunToEnd(*gw.pipeline, Chat("org-model", "x"), info);
  EXPECT_EQ(gw.upstream.last_request().Header("openai-organization"), "org-1");
  EXPECT_EQ(gw.upstream.last_request().Header("openai-project"), "proj-1");
  RunToEnd(*gw.pipeline, Chat("gpt-4o", "x"), info);
  EXPECT_FALSE(gw.upstream.last_request().HasHeader("openai-organization"));
  EXPECT_FALSE(gw.upstream.last_request().HasHeader("openai-project"));
}

TEST_F(PipelineTest, EmbeddingsAndCompletionsAreForwarded) {
  Json e = {{"model", "gpt-embed"}, {"input", "hello"}};
  auto r = RunToEnd(*gw.pipeline, e, Info(Operation::kEmbeddings));
  ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/embeddings");
  EXPECT_EQ(r->terminal().json["object"], "list");

  Json c = {{"model", "small"}, {"prompt", "say ok"}};
  r = RunToEnd(*gw.pipeline, c, Info(Operation::kCompletions));
  ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  EXPECT_EQ(gw.upstream.last_request().path, "/v1/completions");
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["model"], "fake-small-2024");
}

struct BadBody {
  std::string name;
  std::string body;
  std::string param;  // expected `param`, "" for none
};

class ValidationTest : public PipelineTest, public ::testing::WithParamInterface<BadBody> {};

TEST_P(ValidationTest, RejectedWithParamAndNeverForwarded) {
  auto r = RunToEnd(*gw.pipeline, Json::parse(GetParam().body));
  auto e = r->terminal();
  ASSERT_EQ(e.kind, Kind::kFail);
  EXPECT_THAT(e.status, StatusIs(absl::StatusCode::kInvalidArgument));
  ErrorDetail d = DetailOf(e.status);
  EXPECT_EQ(d.http_status, 400);
  EXPECT_EQ(d.type, "invalid_request_error");
  EXPECT_EQ(d.param, GetParam().param) << e.status;
  EXPECT_EQ(gw.upstream.request_count(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, ValidationTest,
    ::testing::Values(
        BadBody{"NotAnObject", R"([1, 2])", ""},
        BadBody{"NoModel", R"({"messages": [{"role": "user", "content": "x"}]})", "model"},
        BadBody{"ModelNumber", R"({"model": 4, "messages": []})", "model"},
        BadBody{"NoMessages", R"({"model": "gpt-4o"})", "messages"},
        BadBody{"MessagesObject", R"({"model": "gpt-4o", "messages": {}})", "messages"},
        BadBody{"MessagesEmpty", R"({"model": "gpt-4o", "messages": []})", "messages"},
        BadBody{"MessageString", R"({"model": "gpt-4o", "messages": ["hi"]})", "messages[0]"},
        BadBody{"UnknownRole", R"({"model": "gpt-4o", "messages": [{"role": "wizard",
                 "content": "x"}]})",
                "messages[0].role"},
        BadBody{"RoleNumber", R"({"model": "gpt-4o", "messages": [{"role": 1, "content": "x"}]})",
                "messages[0].role"},
        BadBody{"ContentNumber", R"({"model": "gpt-4o", "messages": [{"role": "user",
                 "content": "a"}, {"role": "user", "content": 5}]})",
                "messages[1].content"},
        BadBody{"UserContentMissing", R"({"model": "gpt-4o", "messages": [{"role": "user"}]})",
                "messages[0].content"},
        BadBody{"PartWithoutType", R"({"model": "gpt-4o", "messages": [{"role": "user",
                 "content": [{"text": "x"}]}]})",
                "messages[0].content[0].type"},
        BadBody{"TextPartNumber", R"({"model": "gpt-4o", "messages": [{"role": "user",
                 "content": [{"type": "text", "text": 3}]}]})",
                "messages[0].content[0].text"},
        BadBody{"StreamString", R"({"model": "gpt-4o", "stream": "yes",
                 "messages": [{"role": "user", "content": "x"}]})",
                "stream"},
        BadBody{"IncludeUsageString", R"({"model": "gpt-4o", "stream": true,
                 "stream_options": {"include_usage": "y"},
                 "messages": [{"role": "user", "content": "x"}]})",
                "stream_options.include_usage"},
        BadBody{"TemperatureString", R"({"model": "gpt-4o", "temperature": "hot",
                 "messages": [{"role": "user", "content": "x"}]})",
                "temperature"},
        BadBody{"MaxTokensFloat", R"({"model": "gpt-4o", "max_tokens": 1.5,
                 "messages": [{"role": "user", "content": "x"}]})",
                "max_tokens"}),
    [](const ::testing::TestParamInfo<BadBody>& info) { return info.param.name; });

TEST_F(PipelineTest, AllRolesAndNullAssistantContentAreAccepted) {
  Json body = Json::parse(R"({"model": "gpt-4o", "messages": [
    {"role": "system", "content": "s"}, {"role": "developer", "content": "d"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
      "function": {"name": "f", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
    {"role": "function", "name": "f", "content": null}]})");
  auto r = RunToEnd(*gw.pipeline, body);
  EXPECT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
}

TEST_F(PipelineTest, EmbeddingsNeedInput) {
  auto r = RunToEnd(*gw.pipeline, Json{{"model", "gpt-embed"}}, Info(Operation::kEmbeddings));
  EXPECT_EQ(DetailOf(r->terminal().status).param, "input");
}

TEST_F(PipelineTest, UnknownModelIs404ModelNotFound) {
  auto r = RunToEnd(*gw.pipeline, Chat("claude-9", "x"));
  auto e = r->terminal();
  ASSERT_EQ(e.kind, Kind::kFail);
  ErrorDetail d = DetailOf(e.status);
  EXPECT_EQ(d.http_status, 404);
  EXPECT_EQ(d.code, "model_not_found");
  EXPECT_EQ(gw.upstream.request_count(), 0u);
}

TEST_F(PipelineTest, Upstream500Is502) {
  gw.upstream.EnqueueReply(FakeReply::Fail(500));
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "x"));
  ASSERT_EQ(r->terminal().kind, Kind::kFail);
  EXPECT_EQ(DetailOf(r->terminal().status).http_status, 502);
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_errors_total{route=\"gpt\",operation=\"chat_completions\","
                        "type=\"upstream_error\"} 1"));
}

TEST_F(PipelineTest, Upstream400IsPassedThrough) {
  gw.upstream.EnqueueReply(FakeReply::Fail(400, "bad temperature", "invalid_request_error"));
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "x"));
  ASSERT_EQ(r->terminal().kind, Kind::kFail);
  EXPECT_EQ(DetailOf(r->terminal().status).http_status, 400);
  EXPECT_THAT(std::string(r->terminal().status.message()), HasSubstr("bad temperature"));
}

TEST_F(PipelineTest, StalledUpstreamIs504) {
  gw.upstream.EnqueueReply(FakeReply::Stall());
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "x"));
  ASSERT_EQ(r->terminal().kind, Kind::kFail);
  EXPECT_EQ(DetailOf(r->terminal().status).http_status, 504);
}

TEST_F(PipelineTest, StreamCutAfterStartEndsWithAnError) {
  FakeReply reply = FakeReply::SlowStream(absl::Milliseconds(1));
  reply.reset_after_chunks = 2;
  gw.upstream.EnqueueReply(reply);
  Json body = Chat("gpt-4o", "a b c d e f");
  body["stream"] = true;
  auto r = RunToEnd(*gw.pipeline, body);
  auto e = r->terminal();
  ASSERT_EQ(e.kind, Kind::kEndStream);
  EXPECT_FALSE(e.status.ok());
}

TEST_F(PipelineTest, CancelStopsTheUpstreamCallAndEndsTheCallOnce) {
  gw.upstream.EnqueueReply(FakeReply::SlowStream(absl::Seconds(1)));
  Json body = Chat("gpt-4o", "a b c d e f g h");
  body["stream"] = true;
  Started run = Start(*gw.pipeline, body);
  ASSERT_TRUE(run.responder->WaitChunks(1));
  run.call->Cancel();
  run.call->Cancel();  // idempotent
  ASSERT_TRUE(run.responder->WaitDone());
  EXPECT_THAT(run.responder->terminal().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(gw.upstream.WaitForAnswersCutByClient(1, absl::Seconds(10)));
  EXPECT_EQ(run.responder->terminal_calls(), 1);
}

TEST_F(PipelineTest, DeadlineAlreadyPassedIs504) {
  CallInfo info = Info();
  info.deadline = absl::Now() - absl::Seconds(1);
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "x"), info);
  EXPECT_EQ(DetailOf(r->terminal().status).http_status, 504);
  EXPECT_EQ(gw.upstream.request_count(), 0u);
}

TEST_F(PipelineTest, ShortDeadlineEndsAStalledCall) {
  gw.upstream.EnqueueReply(FakeReply::Stall());
  CallInfo info = Info();
  info.deadline = absl::Now() + absl::Milliseconds(300);
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "x"), info);
  ASSERT_EQ(r->terminal().kind, Kind::kFail);
  EXPECT_THAT(r->terminal().status, StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(PipelineTest, ListModelsHasTheNonGlobModelsAndUpstreamNames) {
  Json list = gw.pipeline->ListModels();
  EXPECT_EQ(list["object"], "list");
  std::vector<std::string> ids;
  for (const Json& m : list["data"]) {
    EXPECT_EQ(m["object"], "model");
    ids.push_back(m["id"]);
  }
  EXPECT_THAT(ids, ElementsAre("small", "fake-small-2024", "org-model"));
}

TEST(PipelineCompressionTest, ReportReachesTheHeadAndMetrics) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input input) {
    (*input.prompt)[0]["content"] = "short";
    CompressionStep::Result result;
    result.prompt = std::move(input.prompt);
    result.report.set_applied(true);
    result.report.set_original_tokens(100);
    result.report.set_compressed_tokens(40);
    result.report.set_rate(0.4);
    result.report.set_compress_ms(12);
    return absl::StatusOr<CompressionStep::Result>(std::move(result));
  });
  Gateway gw(Gateway::Options{.extra_routes = R"(
  - name: squeezed
    model: squeeze
    provider: fake
    compression: {enabled: true, rate: 0.4}
)",
                              .compression = &step,
                              .start_http = false});
  auto r = RunToEnd(*gw.pipeline, Chat("squeeze", "a very long prompt"));
  ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  EXPECT_TRUE(r->terminal().head.compression.applied());
  EXPECT_EQ(r->terminal().head.compression.compressed_tokens(), 40u);
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["messages"][0]["content"], "short");
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_compression_tokens_saved_total{route=\"squeezed\"} 60"));
  ASSERT_EQ(step.calls().size(), 1u);
  EXPECT_EQ(step.calls()[0].request_id, "req_test");
}

// The request's `terse` object is for terse alone: the step gets it as the overrides, and no
// upstream sees it, whether the route compresses or not.
TEST(PipelineCompressionTest, TheTerseObjectReachesTheStepAndNoUpstream) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input input) {
    EXPECT_EQ(input.overrides, Json::parse(R"({"rate": 0.3})"));
    EXPECT_EQ(input.model, "squeeze");
    CompressionStep::Result result;
    result.prompt = std::move(input.prompt);
    result.report.set_applied(false);
    return absl::StatusOr<CompressionStep::Result>(std::move(result));
  });
  Gateway gw(Gateway::Options{.extra_routes = R"(
  - name: squeezed
    model: squeeze
    provider: fake
    compression: {enabled: true, rate: 0.4}
)",
                              .compression = &step,
                              .start_http = false});
  for (const char* model : {"squeeze", "gpt-4o"}) {  // a compressing route, one that never does
    Json body = Chat(model, "hello");
    body["terse"] = {{"rate", 0.3}};
    auto r = RunToEnd(*gw.pipeline, body);
    ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
    const Json sent = gw.upstream.last_request().JsonBody();
    EXPECT_FALSE(sent.contains("terse")) << model;
    EXPECT_EQ(sent["messages"], body["messages"]) << model;
  }
  EXPECT_EQ(step.calls().size(), 1u) << "a route that never compresses does not ask the step";
}

TEST(PipelineCompressionTest, FailureForwardsUncompressedOrFailsAsConfigured) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input) {
    return absl::StatusOr<CompressionStep::Result>(
        MakeError(absl::StatusCode::kResourceExhausted, "compressor queue full",
                  {.http_status = 503, .retryable = false}));
  });
  Gateway gw(Gateway::Options{.extra_routes = R"(
  - name: lenient
    model: lenient
    provider: fake
    compression: {enabled: true, rate: 0.5}
  - name: strict
    model: strict
    provider: fake
    compression: {enabled: true, rate: 0.5, on_error: fail}
)",
                              .compression = &step,
                              .start_http = false});
  auto r = RunToEnd(*gw.pipeline, Chat("lenient", "keep me whole"));
  ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  EXPECT_FALSE(r->terminal().head.compression.applied());
  EXPECT_EQ(gw.upstream.last_request().JsonBody()["messages"][0]["content"], "keep me whole");
  EXPECT_THAT(gw.metrics.RenderPrometheus(),
              HasSubstr("terse_compression_fallbacks_total{route=\"lenient\"} 1"));

  r = RunToEnd(*gw.pipeline, Chat("strict", "x"));
  ASSERT_EQ(r->terminal().kind, Kind::kFail);
  EXPECT_EQ(DetailOf(r->terminal().status).http_status, 503);
  EXPECT_EQ(gw.upstream.request_count(), 1u);
}

TEST(PipelineCompressionTest, CompressOperationRepliesWithoutCallingTheUpstream) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input input) {
    CompressionStep::Result result;
    result.prompt = std::move(input.prompt);
    result.report.set_applied(false);
    return absl::StatusOr<CompressionStep::Result>(std::move(result));
  });
  Gateway gw(Gateway::Options{.compression = &step, .start_http = false});
  auto r = RunToEnd(*gw.pipeline, Chat("gpt-4o", "hello"), Info(Operation::kCompress));
  ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  EXPECT_EQ(r->terminal().json["messages"][0]["content"], "hello");
  EXPECT_EQ(gw.upstream.request_count(), 0u);
}

TEST(PipelineCompressionTest, CompressOperationFallsBackToTheOriginalMessages) {
  ScriptedCompression step([](const v1::Route&, const CallInfo&, CompressionStep::Input) {
    return absl::StatusOr<CompressionStep::Result>(
        absl::DeadlineExceededError("compression took longer than the route's timeout"));
  });
  Gateway gw(Gateway::Options{.extra_routes = R"(
  - name: lenient
    model: lenient
    provider: fake
    compression: {enabled: true, rate: 0.5}
)",
                              .compression = &step,
                              .start_http = false});
  auto r = RunToEnd(*gw.pipeline, Chat("lenient", "keep me whole"), Info(Operation::kCompress));
  ASSERT_EQ(r->terminal().kind, Kind::kReply) << r->terminal().status;
  EXPECT_EQ(r->terminal().json["messages"][0]["content"], "keep me whole");
  EXPECT_FALSE(r->terminal().head.compression.applied());
  EXPECT_EQ(gw.upstream.request_count(), 0u) << "compress never calls the upstream";
}

TEST(PipelineAdmissionTest, MaxInFlightTurnsAwayTheCallOverTheCapWith503) {
  Gateway gw(Gateway::Options{.limits = "limits: {max_body_bytes: 65536, max_in_flight: 1}\n",
                              .start_http = false});
  gw.upstream.EnqueueReply(FakeReply::Stall());
  Started first = Start(*gw.pipeline, Chat("gpt-4o", "x"));
  ASSERT_TRUE(gw.upstream.WaitForRequestCount(1, absl::Seconds(10)));
  auto second = RunToEnd(*gw.pipeline, Chat("gpt-4o", "y"));
  ASSERT_EQ(second->terminal().kind, Kind::kFail);
  EXPECT_EQ(DetailOf(second->terminal().status).http_status, 503);
  first.call->Cancel();
  ASSERT_TRUE(first.responder->WaitDone());
  auto third = RunToEnd(*gw.pipeline, Chat("gpt-4o", "z"));
  EXPECT_EQ(third->terminal().kind, Kind::kReply) << third->terminal().status;
}

TEST(PassThroughCompressionTest, ReturnsThePromptUnchangedAndNotApplied) {
  PassThroughCompression step;
  v1::Route route;
  const Json messages = Chat("m", "text")["messages"];
  bool called = false;
  step.Compress(route, CallInfo{}, {.prompt = messages, .overrides = Json{{"rate", 0.5}}},
                [&](absl::StatusOr<CompressionStep::Result> result) {
                  called = true;
                  ASSERT_TRUE(result.ok());
                  EXPECT_EQ(result->prompt, messages);
                  EXPECT_FALSE(result->report.applied());
                });
  EXPECT_TRUE(called);
}

}  // namespace
}  // namespace terse::proxy
