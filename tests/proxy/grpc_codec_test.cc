// The gRPC codec: proto <-> OpenAI JSON, extra fields carried both ways, wrong shapes refused.
#include "proxy/grpc_codec.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "tests/support/status_matchers.h"

namespace terse::proxy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;

// Compares JSON ignoring key order (Structs do not keep it).
nlohmann::json Unordered(const Json& j) { return nlohmann::json::parse(j.dump()); }

template <typename T>
T ParseProto(const std::string& text) {
  T out;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &out)) << text;
  return out;
}

MATCHER_P(EqualsProto, expected, "") {
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  bool same = d.Compare(expected, arg);
  *result_listener << diff;
  return same;
}

TEST(GrpcCodecTest, StructRoundTripKeepsTypesAndIntegers) {
  Json j = Json::parse(R"({
    "seed": 42, "top_p": 0.5, "neg": -7, "flag": true, "none": null, "name": "x",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "nested": {"list": [1, "two", [3.25], {}], "empty": []}
  })");
  auto s = JsonToStruct(j, "extra");
  ASSERT_THAT(s, IsOk());
  Json back = StructToJson(*s);
  EXPECT_EQ(Unordered(back), Unordered(j));
  EXPECT_TRUE(back["seed"].is_number_integer());
  EXPECT_TRUE(back["top_p"].is_number_float());
}

// A Struct's fields become members without a walk through those before them: 100,000 of them,
// in key order, after the modeled fields and before `stream`, with their values.
TEST(GrpcCodecTest, ManyExtraFieldsBecomeMembersInKeyOrder) {
  v1::ChatRequest request;
  request.set_model("m");
  v1::Message* message = request.add_messages();
  message->set_role("user");
  message->set_content("a");
  auto& fields = *request.mutable_extra()->mutable_fields();
  for (int i = 0; i < 100000; ++i) fields[absl::StrCat("x", 100000 + i)].set_number_value(i);
  absl::StatusOr<Json> body = ChatRequestToJson(request, false);
  ASSERT_THAT(body, IsOk());
  ASSERT_EQ(body->size(), 2u + 100000u + 1u);
  auto it = body->begin();
  EXPECT_EQ(it.key(), "model");
  EXPECT_EQ((++it).key(), "messages");
  for (int i = 0; i < 100000; ++i) {
    ++it;
    ASSERT_EQ(it.key(), absl::StrCat("x", 100000 + i));
    ASSERT_EQ(it.value(), static_cast<double>(i));
  }
  EXPECT_EQ((++it).key(), "stream");
}

TEST(GrpcCodecTest, StructRefusesNonObject) {
  EXPECT_THAT(JsonToStruct(Json::array(), "extra"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("extra")));
}

TEST(GrpcCodecTest, ChatRequestBecomesOpenAiBody) {
  auto request = ParseProto<v1::ChatRequest>(R"pb(
    model: "gpt-4o-mini"
    messages { role: "system" content: "Be brief." }
    messages {
      role: "user"
      name: "ann"
      parts { type: "text" text: "What is this?" }
      parts {
        type: "image_url"
        extra {
          fields {
            key: "image_url"
            value {
              struct_value {
                fields {
                  key: "url"
                  value { string_value: "http://x/y.png" }
                }
              }
            }
          }
        }
      }
    }
    messages { role: "tool" content: "42" tool_call_id: "call_1" }
    temperature: 0.25
    max_tokens: 64
    extra {
      fields {
        key: "seed"
        value { number_value: 7 }
      }
      fields {
        key: "user"
        value { string_value: "u1" }
      }
    }
  )pb");
  auto body = ChatRequestToJson(request, /*stream=*/false);
  ASSERT_THAT(body, IsOk());
  Json expected = Json::parse(R"({
    "model": "gpt-4o-mini",
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [
         {"type": "text", "text": "What is this?"},
         {"type": "image_url", "image_url": {"url": "http://x/y.png"}}], "name": "ann"},
      {"role": "tool", "content": "42", "tool_call_id": "call_1"}
    ],
    "temperature": 0.25, "max_tokens": 64, "seed": 7, "user": "u1", "stream": false
  })");
  EXPECT_EQ(*body, expected) << body->dump(2);  // ordered: modeled fields first, then extra
}

TEST(GrpcCodecTest, StreamAsksForUsageAndKeepsClientStreamOptions) {
  auto request = ParseProto<v1::ChatRequest>(R"pb(
    model: "m"
    messages { role: "user" content: "hi" }
    extra {
      fields {
        key: "stream_options"
        value {
          struct_value {
            fields {
              key: "future_option"
              value { bool_value: true }
            }
          }
        }
      }
      fields {
        key: "stream"
        value { bool_value: false }
      }
    }
  )pb");
  auto body = ChatRequestToJson(request, /*stream=*/true);
  ASSERT_THAT(body, IsOk());
  EXPECT_EQ((*body)["stream"], true);
  EXPECT_EQ((*body)["stream_options"],
            Json::parse(R"({"future_option": true, "include_usage": true})"));

  auto unary = ChatRequestToJson(request, /*stream=*/false);
  ASSERT_THAT(unary, IsOk());
  EXPECT_EQ((*unary)["stream"], false);
  EXPECT_FALSE(unary->contains("stream_options"));
}

TEST(GrpcCodecTest, CompressionOverrideBecomesTerseObject) {
  auto request = ParseProto<v1::ChatRequest>(R"pb(
    model: "m"
    messages { role: "user" content: "hi" }
    compression { rate: 0.4 }
  )pb");
  auto body = ChatRequestToJson(request, false);
  ASSERT_THAT(body, IsOk());
  EXPECT_EQ((*body)["terse"], Json::parse(R"({"rate": 0.4})"));

  request.mutable_compression()->set_enabled(false);
  request.mutable_compression()->set_target_tokens(100);
  body = ChatRequestToJson(request, false);
  ASSERT_THAT(body, IsOk());
  EXPECT_EQ((*body)["terse"], Json::parse(R"({"compress": false, "rate": 0.4,
                                               "target_tokens": 100})"));

  request.clear_compression();
  body = ChatRequestToJson(request, false);
  ASSERT_THAT(body, IsOk());
  EXPECT_FALSE(body->contains("terse"));
}

TEST(GrpcCodecTest, AssistantToolCallHasNullContent) {
  auto message = ParseProto<v1::Message>(R"pb(
    role: "assistant"
    extra {
      fields {
        key: "tool_calls"
        value {
          list_value {
            values {
              struct_value {
                fields {
                  key: "id"
                  value { string_value: "c1" }
                }
              }
            }
          }
        }
      }
    }
  )pb");
  auto j = MessageToJson(message, "messages[0]");
  ASSERT_THAT(j, IsOk());
  EXPECT_EQ(*j, Json::parse(R"({"role": "assistant", "content": null,
                                 "tool_calls": [{"id": "c1"}]})"));
}

TEST(GrpcCodecTest, UnsetRequiredFieldsAreLeftForThePipeline) {
  // The pipeline validates every face's body the same way; the codec only leaves the gaps open.
  auto request = ParseProto<v1::ChatRequest>(R"pb(
    messages { content: "hi" }
    messages {
      role: "user"
      parts { text: "x" }
    })pb");
  auto body = ChatRequestToJson(request, false);
  ASSERT_THAT(body, IsOk());
  EXPECT_EQ(*body, Json::parse(R"({"messages": [{"content": "hi"},
                                                {"role": "user", "content": [{"text": "x"}]}],
                                   "stream": false})"));
}

TEST(GrpcCodecTest, ContradictionsAreInvalidRequests) {
  auto both = ParseProto<v1::ChatRequest>(R"pb(
    model: "m"
    messages {
      role: "user"
      content: "a"
      parts { type: "text" text: "b" }
    })pb");
  EXPECT_THAT(ChatRequestToJson(both, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("messages[0]")));

  auto repeated = ParseProto<v1::ChatRequest>(R"pb(
    model: "m"
    messages { role: "user" content: "a" }
    extra {
      fields {
        key: "model"
        value { string_value: "other" }
      }
    })pb");
  EXPECT_THAT(ChatRequestToJson(repeated, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("request.extra.model")));

  auto repeated_in_message = ParseProto<v1::ChatRequest>(R"pb(
    model: "m"
    messages {
      role: "user"
      content: "a"
      extra {
        fields {
          key: "role"
          value { string_value: "system" }
        }
      }
    })pb");
  EXPECT_THAT(ChatRequestToJson(repeated_in_message, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("messages[0].extra.role")));

  auto two_overrides = ParseProto<v1::ChatRequest>(R"pb(
    model: "m"
    messages { role: "user" content: "a" }
    compression { rate: 0.5 }
    extra {
      fields {
        key: "terse"
        value { struct_value {} }
      }
    })pb");
  EXPECT_THAT(ChatRequestToJson(two_overrides, false),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("terse")));
}

TEST(GrpcCodecTest, MessageRoundTripsThroughJson) {
  auto message = ParseProto<v1::Message>(R"pb(
    role: "user"
    name: "bob"
    parts { type: "text" text: "look" }
    parts {
      type: "input_audio"
      extra {
        fields {
          key: "input_audio"
          value {
            struct_value {
              fields {
                key: "data"
                value { string_value: "AAAA" }
              }
              fields {
                key: "format"
                value { string_value: "wav" }
              }
            }
          }
        }
      }
    }
    extra {
      fields {
        key: "refusal"
        value { null_value: NULL_VALUE }
      }
    }
  )pb");
  auto j = MessageToJson(message, "m");
  ASSERT_THAT(j, IsOk());
  auto back = MessageFromJson(*j, "m");
  ASSERT_THAT(back, IsOk());
  EXPECT_THAT(*back, EqualsProto(message));
}

TEST(GrpcCodecTest, ChatResponseKeepsUnmodeledFieldsInExtra) {
  Json body = Json::parse(R"({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null,
                 "message": {"role": "assistant", "content": null, "refusal": null,
                             "tool_calls": [{"id": "c1", "type": "function",
                                             "function": {"name": "f", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
              "prompt_tokens_details": {"cached_tokens": 0}},
    "system_fingerprint": "fp_1", "service_tier": "default"
  })");
  auto response = ChatResponseFromJson(body);
  ASSERT_THAT(response, IsOk());
  EXPECT_THAT(*response, EqualsProto(ParseProto<v1::ChatResponse>(R"pb(
    id: "chatcmpl-1"
    model: "gpt-4o"
    created: 1700000000
    choices {
      index: 0
      finish_reason: "tool_calls"
      message {
        role: "assistant"
        extra {
          fields {
            key: "refusal"
            value { null_value: NULL_VALUE }
          }
          fields {
            key: "tool_calls"
            value {
              list_value {
                values {
                  struct_value {
                    fields {
                      key: "id"
                      value { string_value: "c1" }
                    }
                    fields {
                      key: "type"
                      value { string_value: "function" }
                    }
                    fields {
                      key: "function"
                      value {
                        struct_value {
                          fields {
                            key: "name"
                            value { string_value: "f" }
                          }
                          fields {
                            key: "arguments"
                            value { string_value: "{}" }
                          }
                        }
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
      extra {
        fields {
          key: "logprobs"
          value { null_value: NULL_VALUE }
        }
      }
    }
    usage {
      prompt_tokens: 10
      completion_tokens: 3
      total_tokens: 13
      extra {
        fields {
          key: "prompt_tokens_details"
          value {
            struct_value {
              fields {
                key: "cached_tokens"
                value { number_value: 0 }
              }
            }
          }
        }
      }
    }
    extra {
      fields {
        key: "system_fingerprint"
        value { string_value: "fp_1" }
      }
      fields {
        key: "service_tier"
        value { string_value: "default" }
      }
    }
  )pb")));
}

TEST(GrpcCodecTest, ChunksCarryDeltasAndUsage) {
  auto first = ChatChunkFromJson(Json::parse(R"({
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "usage": null,
    "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                 "finish_reason": null}]})"));
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->choices_size(), 1);
  EXPECT_EQ(first->choices(0).delta().role(), "assistant");
  EXPECT_EQ(first->choices(0).delta().content(), "Hel");
  EXPECT_EQ(first->choices(0).finish_reason(), "");
  EXPECT_FALSE(first->has_usage());
  EXPECT_FALSE(first->has_extra());

  auto last = ChatChunkFromJson(Json::parse(R"({
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})"));
  ASSERT_THAT(last, IsOk());
  EXPECT_EQ(last->choices_size(), 0);
  EXPECT_EQ(last->usage().total_tokens(), 7u);
}

// What a client asking for logprobs gets back: the upstream's values, integers still integers.
TEST(GrpcCodecTest, ChoiceLogprobsAndUsageDetailsReachTheirExtra) {
  Json logprobs = Json::parse(R"({"content": [
    {"token": "Hi", "logprob": -0.25, "bytes": [72, 105],
     "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]},
                      {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]}]}],
    "refusal": null})");
  Json details = Json::parse(R"({"cached_tokens": 1024, "audio_tokens": 0})");
  Json completion_details = Json::parse(R"({"reasoning_tokens": 7})");
  Json body = {{"id", "chatcmpl-2"},
               {"object", "chat.completion"},
               {"created", 1},
               {"model", "gpt-4o"},
               {"choices",
                {{{"index", 0},
                  {"message", {{"role", "assistant"}, {"content", "Hi"}}},
                  {"logprobs", logprobs},
                  {"finish_reason", "stop"}}}},
               {"usage",
                {{"prompt_tokens", 1500},
                 {"completion_tokens", 1},
                 {"total_tokens", 1501},
                 {"prompt_tokens_details", details},
                 {"completion_tokens_details", completion_details}}}};
  auto response = ChatResponseFromJson(body);
  ASSERT_THAT(response, IsOk());
  ASSERT_EQ(response->choices_size(), 1);
  const v1::Choice& choice = response->choices(0);
  EXPECT_EQ(choice.message().content(), "Hi");
  EXPECT_EQ(choice.finish_reason(), "stop");
  EXPECT_EQ(Unordered(StructToJson(choice.extra())), Unordered(Json{{"logprobs", logprobs}}));
  EXPECT_EQ(response->usage().prompt_tokens(), 1500u);
  Json usage_extra = StructToJson(response->usage().extra());
  EXPECT_EQ(Unordered(usage_extra),
            Unordered(Json{{"prompt_tokens_details", details},
                           {"completion_tokens_details", completion_details}}));
  ASSERT_TRUE(usage_extra["prompt_tokens_details"]["cached_tokens"].is_number_integer());
  EXPECT_EQ(usage_extra["prompt_tokens_details"]["cached_tokens"].get<int64_t>(), 1024);
  EXPECT_FALSE(response->has_extra());
}

TEST(GrpcCodecTest, ChunkChoiceLogprobsAndUsageDetailsReachTheirExtra) {
  Json logprobs = Json::parse(R"({"content": [
    {"token": "Hel", "logprob": -0.0625, "bytes": [72, 101, 108], "top_logprobs": []}]})");
  Json chunk = {{"id", "c"},
                {"object", "chat.completion.chunk"},
                {"created", 1},
                {"model", "m"},
                {"choices",
                 {{{"index", 0},
                   {"delta", {{"content", "Hel"}}},
                   {"logprobs", logprobs},
                   {"finish_reason", nullptr}}}}};
  auto first = ChatChunkFromJson(chunk);
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->choices_size(), 1);
  EXPECT_EQ(first->choices(0).delta().content(), "Hel");
  EXPECT_EQ(Unordered(StructToJson(first->choices(0).extra())),
            Unordered(Json{{"logprobs", logprobs}}));
  EXPECT_FALSE(first->has_extra());

  auto last = ChatChunkFromJson(Json::parse(R"({
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
              "prompt_tokens_details": {"cached_tokens": 3}}})"));
  ASSERT_THAT(last, IsOk());
  EXPECT_EQ(last->usage().total_tokens(), 7u);
  EXPECT_EQ(Unordered(StructToJson(last->usage().extra())),
            Unordered(Json::parse(R"({"prompt_tokens_details": {"cached_tokens": 3}})")));
}

TEST(GrpcCodecTest, ChoiceWithoutUnmodeledFieldsHasNoExtra) {
  auto response = ChatResponseFromJson(Json::parse(R"({
    "id": "r", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})"));
  ASSERT_THAT(response, IsOk());
  ASSERT_EQ(response->choices_size(), 1);
  EXPECT_FALSE(response->choices(0).has_extra());
  EXPECT_FALSE(response->usage().has_extra());

  auto chunk = ChatChunkFromJson(Json::parse(R"({
    "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
    "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": null}]})"));
  ASSERT_THAT(chunk, IsOk());
  ASSERT_EQ(chunk->choices_size(), 1);
  EXPECT_FALSE(chunk->choices(0).has_extra());
}

TEST(GrpcCodecTest, MalformedAnswersAreUpstreamFailures) {
  EXPECT_THAT(ChatResponseFromJson(Json::parse(R"({"choices": {}})")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("choices")));
  EXPECT_THAT(ChatChunkFromJson(Json::parse(R"({"choices": [{"delta": {"content": 3}}]})")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("choices[0].delta.content")));
  EXPECT_THAT(ChatChunkFromJson(Json::parse(R"([1])")), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(GrpcCodecTest, ModelsAndCompressResults) {
  auto models = ListModelsFromJson(Json::parse(R"({"object": "list", "data": [
    {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "openai"},
    {"id": "echo-1", "object": "model"}]})"));
  ASSERT_THAT(models, IsOk());
  EXPECT_THAT(*models, EqualsProto(ParseProto<v1::ListModelsResponse>(R"pb(
    models { id: "gpt-4o" owned_by: "openai" }
    models { id: "echo-1" })pb")));
  EXPECT_THAT(ListModelsFromJson(Json::object()), StatusIs(absl::StatusCode::kInternal));

  auto compressed = CompressResponseFromJson(Json::parse(R"({"messages": [
    {"role": "user", "content": "short"}]})"));
  ASSERT_THAT(compressed, IsOk());
  EXPECT_THAT(*compressed, EqualsProto(ParseProto<v1::CompressResponse>(R"pb(
    messages { role: "user" content: "short" })pb")));

  auto request = ParseProto<v1::CompressRequest>(R"pb(
    model: "m"
    messages { role: "user" content: "long" }
    compression { rate: 0.5 })pb");
  auto body = CompressRequestToJson(request);
  ASSERT_THAT(body, IsOk());
  EXPECT_EQ(*body, Json::parse(R"({"model": "m", "messages": [{"role": "user", "content": "long"}],
                                    "terse": {"rate": 0.5}})"));
}

TEST(GrpcCodecTest, StatusesKeepCodeAndMessage) {
  grpc::Status ok = ToGrpcStatus(absl::OkStatus());
  EXPECT_TRUE(ok.ok());
  grpc::Status nf = ToGrpcStatus(absl::NotFoundError("no route for `x`"));
  EXPECT_EQ(nf.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(nf.error_message(), "no route for `x`");
  EXPECT_EQ(ToGrpcStatus(absl::DeadlineExceededError("late")).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("quota")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

}  // namespace
}  // namespace terse::proxy
