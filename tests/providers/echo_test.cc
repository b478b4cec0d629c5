// The local echo provider: answers with the prompt it got, streams it word by word with a real
// usage, honours stream_options and n, and can be cancelled mid-stream.
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "providers/provider_set.h"
#include "tests/providers/recorders.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;

std::unique_ptr<ProviderSet> EchoSet(uint32_t delay_ms = 0) {
  v1::Config config;
  v1::Provider* p = config.add_providers();
  p->set_name("echo");
  p->set_kind(v1::Provider::ECHO);
  p->set_echo_delay_ms(delay_ms);
  auto set = ProviderSet::Create(config);
  EXPECT_THAT(set, IsOk());
  return std::move(set).value();
}

Request Chat(bool stream) {
  Request request;
  request.stream = stream;
  request.body = json::WireJson(Json{
      {"model", "echo-1"},
      {"messages",
       Json::array({{{"role", "system"}, {"content", "Be brief."}},
                    {{"role", "user"},
                     {"content", Json::array({{{"type", "text"}, {"text", "Hello there"}}})}}})}});
  if (stream) request.body.SetMember("stream", true);
  return request;
}

std::shared_ptr<RecordingSink> SendAndWait(ProviderSet& set, Request request) {
  auto sink = std::make_shared<RecordingSink>();
  set.Send({set.Find("echo")}, std::move(request), sink);
  EXPECT_TRUE(sink->WaitDone());
  return sink;
}

TEST(EchoProviderTest, AnswersWithTheMessagesText) {
  auto set = EchoSet();
  auto sink = SendAndWait(*set, Chat(false));
  ASSERT_THAT(sink->status(), IsOk());
  Json r = sink->response();
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["model"], "echo-1");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "Be brief.\n\nHello there");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r["usage"], Json::parse(R"({"prompt_tokens":4,"completion_tokens":4,
                                        "total_tokens":8})"));
}

TEST(EchoProviderTest, StreamsWordByWordWithUsageWhenAsked) {
  auto set = EchoSet();
  Request request = Chat(true);
  request.body.SetMember("stream_options", {{"include_usage", true}});
  auto sink = SendAndWait(*set, request);
  ASSERT_THAT(sink->status(), IsOk());
  std::vector<Json> chunks = sink->chunks();
  // role, 4 words, finish, usage
  ASSERT_EQ(chunks.size(), 7u);
  EXPECT_EQ(chunks[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chunks[1]["choices"][0]["delta"]["content"], "Be ");
  EXPECT_EQ(chunks[2]["choices"][0]["delta"]["content"], "brief.\n\n");
  EXPECT_EQ(sink->StreamedText(), "Be brief.\n\nHello there");
  EXPECT_EQ(chunks[5]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(sink->StreamedUsage()["total_tokens"], 8);
  for (const Json& c : chunks) EXPECT_EQ(c["object"], "chat.completion.chunk");
}

TEST(EchoProviderTest, NoUsageChunkUnlessAskedAndNChoices) {
  auto set = EchoSet();
  Request request = Chat(true);
  request.body.SetMember("n", 2);
  auto sink = SendAndWait(*set, request);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_TRUE(sink->StreamedUsage().is_null());
  int index1 = 0;
  for (const Json& c : sink->chunks()) {
    if (c["choices"][0]["index"] == 1) ++index1;
  }
  EXPECT_EQ(index1, 6);  // role, 4 words, finish for the second choice

  request = Chat(false);
  request.body.SetMember("n", 3);
  sink = SendAndWait(*set, request);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->response()["choices"].size(), 3u);
  EXPECT_EQ(sink->response()["usage"]["completion_tokens"], 12);
}

TEST(EchoProviderTest, CancelStopsAStreamBetweenWords) {
  auto set = EchoSet(/*delay_ms=*/600000);
  auto sink = std::make_shared<RecordingSink>();
  auto call = set->Send({set->Find("echo")}, Chat(true), sink);
  ASSERT_TRUE(sink->WaitChunks(2));
  call->Cancel();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_THAT(sink->status(), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(sink->chunks().size(), 2u);
  EXPECT_EQ(sink->dones(), 1);
}

TEST(EchoProviderTest, CompletionsAndEmbeddings) {
  auto set = EchoSet();
  Request completion;
  completion.endpoint = Endpoint::kCompletions;
  completion.body = json::WireJson(Json{{"model", "echo-1"}, {"prompt", "complete me"}});
  auto sink = SendAndWait(*set, completion);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->response()["object"], "text_completion");
  EXPECT_EQ(sink->response()["choices"][0]["text"], "complete me");

  completion.stream = true;
  completion.body.SetMember("stream_options", {{"include_usage", true}});
  sink = SendAndWait(*set, completion);
  ASSERT_THAT(sink->status(), IsOk());
  EXPECT_EQ(sink->StreamedText(), "complete me");
  EXPECT_EQ(sink->StreamedUsage()["prompt_tokens"], 2);

  Request embeddings;
  embeddings.endpoint = Endpoint::kEmbeddings;
  embeddings.body =
      json::WireJson(Json{{"model", "echo-embed"}, {"input", Json::array({"a b c", "d"})}});
  sink = SendAndWait(*set, embeddings);
  ASSERT_THAT(sink->status(), IsOk());
  Json r = sink->response();
  ASSERT_EQ(r["data"].size(), 2u);
  EXPECT_EQ(r["data"][0]["embedding"].size(), 8u);
  EXPECT_EQ(r["usage"]["prompt_tokens"], 4);
  // Deterministic: the same input gives the same vector.
  auto again = SendAndWait(*set, embeddings);
  EXPECT_EQ(again->response()["data"], r["data"]);
}

}  // namespace
}  // namespace terse::providers
