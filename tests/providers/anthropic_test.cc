// The OpenAI <-> Anthropic translation on its own: messages, tools, images, responses and the
// typed stream events, including tool use.
#include "providers/anthropic.h"

#include <string>
#include <vector>

#include "base/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;

TEST(ToAnthropicRequestTest, TranslatesAConversationWithTools) {
  Json openai = Json::parse(R"({
    "model": "claude-test",
    "messages": [
      {"role": "system", "content": "Be exact."},
      {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
      {"role": "user", "content": [
        {"type": "text", "text": "What is in this picture, and the weather?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
      {"role": "user", "content": "thanks"}
    ],
    "max_completion_tokens": 300,
    "temperature": 1.7,
    "top_p": 0.9,
    "stop": ["END", "STOP"],
    "user": "u-42",
    "seed": 7,
    "response_format": {"type": "text"},
    "tools": [{"type": "function", "function": {
      "name": "weather", "description": "Weather by city",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": "required",
    "parallel_tool_calls": false
  })");
  absl::StatusOr<Json> out = ToAnthropicRequest(openai, /*stream=*/true);
  ASSERT_THAT(out, IsOk());
  const Json& a = *out;
  EXPECT_EQ(a["model"], "claude-test");
  EXPECT_EQ(a["system"], "Be exact.\n\nUse tools.");
  EXPECT_EQ(a["max_tokens"], 300);
  EXPECT_EQ(a["temperature"], 1.0);
  EXPECT_EQ(a["top_p"], 0.9);
  EXPECT_EQ(a["stop_sequences"], Json::array({"END", "STOP"}));
  EXPECT_EQ(a["metadata"]["user_id"], "u-42");
  EXPECT_EQ(a["stream"], true);
  EXPECT_FALSE(a.contains("seed"));
  EXPECT_FALSE(a.contains("response_format"));
  EXPECT_EQ(a["tools"][0]["name"], "weather");
  EXPECT_EQ(a["tools"][0]["description"], "Weather by city");
  EXPECT_EQ(a["tools"][0]["input_schema"]["properties"]["city"]["type"], "string");
  EXPECT_EQ(a["tool_choice"], Json::parse(R"({"type":"any","disable_parallel_tool_use":true})"));

  const Json& m = a["messages"];
  ASSERT_EQ(m.size(), 3u);  // user, assistant, user (tool result merged with "thanks")
  EXPECT_EQ(m[0]["role"], "user");
  EXPECT_EQ(m[0]["content"][0]["text"], "What is in this picture, and the weather?");
  EXPECT_EQ(m[0]["content"][1],
            Json::parse(R"({"type":"image","source":{"type":"base64","media_type":"image/png",
                            "data":"iVBORw0K"}})"));
  EXPECT_EQ(m[0]["content"][2]["source"],
            Json::parse(R"({"type":"url","url":"https://example.com/cat.jpg"})"));
  EXPECT_EQ(m[1]["role"], "assistant");
  EXPECT_EQ(m[1]["content"][0], Json::parse(R"({"type":"tool_use","id":"call_1","name":"weather",
                            "input":{"city":"Oslo"}})"));
  EXPECT_EQ(m[2]["role"], "user");
  EXPECT_EQ(m[2]["content"][0],
            Json::parse(R"({"type":"tool_result","tool_use_id":"call_1","content":"rain"})"));
  EXPECT_EQ(m[2]["content"][1], Json::parse(R"({"type":"text","text":"thanks"})"));
}

TEST(ToAnthropicRequestTest, DefaultsAndPlainStrings) {
  Json openai = {{"model", "m"},
                 {"max_tokens", 12},
                 {"stop", "X"},
                 {"messages", Json::array({{{"role", "user"}, {"content", "hi"}}})}};
  absl::StatusOr<Json> out = ToAnthropicRequest(openai, /*stream=*/false);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ((*out)["max_tokens"], 12);
  EXPECT_EQ((*out)["stop_sequences"], Json::array({"X"}));
  EXPECT_FALSE(out->contains("system"));
  EXPECT_FALSE(out->contains("stream"));

  openai.erase("max_tokens");
  out = ToAnthropicRequest(openai, false);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ((*out)["max_tokens"], kAnthropicDefaultMaxTokens);
}

TEST(ToAnthropicRequestTest, RejectsWhatAnthropicCannotTake) {
  Json audio = Json::parse(R"({"model":"m","messages":[{"role":"user","content":[
      {"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]})");
  auto out = ToAnthropicRequest(audio, false);
  EXPECT_THAT(out, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(DetailOf(out.status()).param, "messages[0].content[0]");

  Json role = Json::parse(R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})");
  EXPECT_THAT(ToAnthropicRequest(role, false), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ToAnthropicRequest(Json::parse(R"({"model":"m"})"), false),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(FromAnthropicResponseTest, TextToolUseAndCachedUsage) {
  Json message = Json::parse(R"({
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
    "content": [
      {"type": "text", "text": "Let me check."},
      {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}],
    "stop_reason": "tool_use", "stop_sequence": null,
    "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5,
              "cache_read_input_tokens": 20, "output_tokens": 7}
  })");
  absl::StatusOr<Json> out = FromAnthropicResponse(message);
  ASSERT_THAT(out, IsOk());
  const Json& c = *out;
  EXPECT_EQ(c["id"], "msg_1");
  EXPECT_EQ(c["object"], "chat.completion");
  EXPECT_EQ(c["model"], "claude-test");
  const Json& choice = c["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Let me check.");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["id"], "toolu_1");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "weather");
  EXPECT_EQ(
      Json::parse(choice["message"]["tool_calls"][0]["function"]["arguments"].get<std::string>()),
      Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(c["usage"]["prompt_tokens"], 35);
  EXPECT_EQ(c["usage"]["completion_tokens"], 7);
  EXPECT_EQ(c["usage"]["total_tokens"], 42);
  EXPECT_EQ(c["usage"]["prompt_tokens_details"]["cached_tokens"], 20);

  message["stop_reason"] = "max_tokens";
  EXPECT_EQ((*FromAnthropicResponse(message))["choices"][0]["finish_reason"], "length");
  EXPECT_THAT(FromAnthropicResponse(Json::parse(R"({"type":"message"})")),
              StatusIs(absl::StatusCode::kUnavailable));
}

// Feeds typed events to a fresh translator; returns the chunks, or the error.
absl::StatusOr<std::vector<Json>> Translate(const std::vector<std::pair<std::string, Json>>& events,
                                            bool expect_end_ok = true) {
  auto translator = NewAnthropicStreamTranslator();
  std::vector<Json> chunks;
  auto emit = [&](json::WireJson chunk) { chunks.push_back(chunk.json()); };
  for (const auto& [type, data] : events) {
    absl::Status s = translator->OnEvent({type, data.dump(), ""}, emit);
    if (!s.ok()) return s;
  }
  absl::Status end = translator->OnEnd(emit);
  if (!end.ok()) return end;
  return chunks;
}

TEST(AnthropicStreamTest, ToolUseStreamsAsToolCallFragments) {
  std::vector<std::pair<std::string, Json>> events = {
      {"message_start", Json::parse(R"({"type":"message_start","message":{"id":"msg_2",
          "model":"claude-test","content":[],"usage":{"input_tokens":9,"output_tokens":1}}})")},
      {"content_block_start", Json::parse(R"({"type":"content_block_start","index":0,
          "content_block":{"type":"text","text":""}})")},
      {"content_block_delta", Json::parse(R"({"type":"content_block_delta","index":0,
          "delta":{"type":"text_delta","text":"Checking"}})")},
      {"content_block_stop", Json::parse(R"({"type":"content_block_stop","index":0})")},
      {"content_block_start", Json::parse(R"({"type":"content_block_start","index":1,
          "content_block":{"type":"tool_use","id":"toolu_9","name":"weather","input":{}}})")},
      {"content_block_delta", Json::parse(R"({"type":"content_block_delta","index":1,
          "delta":{"type":"input_json_delta","partial_json":"{\"city\": "}})")},
      {"content_block_delta", Json::parse(R"({"type":"content_block_delta","index":1,
          "delta":{"type":"input_json_delta","partial_json":"\"Oslo\"}"}})")},
      {"content_block_stop", Json::parse(R"({"type":"content_block_stop","index":1})")},
      {"message_delta", Json::parse(R"({"type":"message_delta",
          "delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}})")},
      {"message_stop", Json::parse(R"({"type":"message_stop"})")},
  };
  absl::StatusOr<std::vector<Json>> chunks = Translate(events);
  ASSERT_THAT(chunks, IsOk());
  ASSERT_EQ(chunks->size(), 7u);
  const auto& c = *chunks;
  for (const Json& chunk : c) {
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    EXPECT_EQ(chunk["id"], "msg_2");
    EXPECT_EQ(chunk["model"], "claude-test");
  }
  EXPECT_EQ(c[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(c[1]["choices"][0]["delta"]["content"], "Checking");
  EXPECT_EQ(c[2]["choices"][0]["delta"]["tool_calls"][0],
            Json::parse(R"({"index":0,"id":"toolu_9","type":"function",
                            "function":{"name":"weather","arguments":""}})"));
  std::string arguments =
      c[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].get<std::string>() +
      c[4]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].get<std::string>();
  EXPECT_EQ(Json::parse(arguments), Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(c[5]["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_TRUE(c[6]["choices"].empty());
  EXPECT_EQ(c[6]["usage"]["prompt_tokens"], 9);
  EXPECT_EQ(c[6]["usage"]["completion_tokens"], 15);
}

TEST(AnthropicStreamTest, ErrorEventsAndTruncatedStreamsAreErrors) {
  auto error = Translate({{"message_start", Json::parse(R"({"type":"message_start",
                              "message":{"id":"m","model":"x","usage":{}}})")},
                          {"error", Json::parse(R"({"type":"error","error":{
                              "type":"overloaded_error","message":"Overloaded"}})")}});
  EXPECT_THAT(error, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(DetailOf(error.status()).http_status, 502);

  auto truncated = Translate({{"message_start", Json::parse(R"({"type":"message_start",
                                  "message":{"id":"m","model":"x","usage":{}}})")}});
  EXPECT_THAT(truncated, StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace terse::providers
