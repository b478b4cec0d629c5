#include "compressor/chat_compression.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

#include "compressor_testing.h"
#include "tests/support/status_matchers.h"

namespace terse::compressor {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::HasSubstr;
using testing::Cl100k;
using testing::Prose;
using testing::TinyCompressor;

ChatPolicy Policy(double rate) {
  ChatPolicy policy;
  policy.options.rate = rate;
  return policy;
}

std::string Text(const Json& message) {
  const Json& c = message["content"];
  if (c.is_string()) return c.get<std::string>();
  std::string out;
  for (const Json& part : c) {
    if (part.value("type", "") == "text") out += part["text"].get<std::string>();
  }
  return out;
}

size_t Tokens(const Json& messages) {
  size_t n = 0;
  for (const Json& m : messages) {
    if (m.contains("content") && !m["content"].is_null()) n += Cl100k().Count(Text(m));
  }
  return n;
}

TEST(SplitDocumentsTest, BlankLineBlocksAllButTheLastAreDocuments) {
  auto split = SplitDocuments("first doc\nline two\n\nsecond doc\n\n\nWhat is it?", "");
  ASSERT_THAT(split, IsOk());
  EXPECT_THAT(split->documents, ::testing::ElementsAre("first doc\nline two", "second doc"));
  EXPECT_THAT(split->separators, ::testing::ElementsAre("\n\n", "\n\n\n"));
  EXPECT_EQ(split->question, "What is it?");
}

TEST(SplitDocumentsTest, OneBlockIsAllQuestion) {
  auto split = SplitDocuments("Just a question?\n\n", "");
  ASSERT_THAT(split, IsOk());
  EXPECT_TRUE(split->documents.empty());
  EXPECT_EQ(split->question, "Just a question?\n\n");
}

TEST(SplitDocumentsTest, TaggedDocuments) {
  auto split = SplitDocuments("<terse:doc>alpha</terse:doc>\n<terse:doc>beta</terse:doc>\nWhy?", "");
  ASSERT_THAT(split, IsOk());
  EXPECT_THAT(split->documents, ::testing::ElementsAre("alpha", "beta"));
  EXPECT_EQ(split->question, "\nWhy?");
  EXPECT_THAT(SplitDocuments("<terse:doc>open", ""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SplitDocumentsTest, DelimiterRegexStartsDocuments) {
  auto split = SplitDocuments(
      "Document [1] Paris is in France.\nDocument [2] Rome is in Italy.\n\nWhere is Rome?",
      R"(Document \[\d+\])");
  ASSERT_THAT(split, IsOk());
  ASSERT_EQ(split->documents.size(), 2u);
  EXPECT_EQ(split->documents[0], "Document [1] Paris is in France.\n");
  EXPECT_EQ(split->documents[1], "Document [2] Rome is in Italy.");
  EXPECT_EQ(split->question, "Where is Rome?");
  EXPECT_THAT(SplitDocuments("x", "(unclosed"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("document_delimiter")));
}

// A chat with a long system prompt, a long earlier turn, short turns, a tool result, and a last
// user message of two documents, the question and an image.
Json Chat(const std::string& question, uint32_t seed = 1) {
  Json chat = Json::parse(R"([
    {"role": "system", "content": ""},
    {"role": "user", "content": "", "name": "alice"},
    {"role": "assistant", "content": "Noted."},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"},
    {"role": "user", "content": [
      {"type": "text", "text": ""},
      {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
  ])");
  chat[0]["content"] = Prose(300, seed);
  chat[1]["content"] = Prose(400, seed + 1);
  chat[4]["content"][0]["text"] =
      Prose(300, seed + 2) + "\n\n" + Prose(300, seed + 3) + "\n\n" + question;
  return chat;
}

TEST(CompressChatTest, SameMessagesShorterTextOnTarget) {
  auto compressor = TinyCompressor(/*cache_entries=*/64);
  ASSERT_NE(compressor, nullptr);
  const std::string question = "Which town rebuilt the bridge after the storm?";
  Json original = Chat(question);
  Json messages = original;
  auto report = CompressChat(*compressor, messages, Policy(0.5));
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(report->applied) << report->reason;

  ASSERT_EQ(messages.size(), original.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_EQ(messages[i]["role"], original[i]["role"]) << i;
  }
  EXPECT_EQ(messages[1]["name"], "alice");
  EXPECT_EQ(messages[2], original[2]) << "short messages stay whole";
  EXPECT_EQ(messages[3], original[3]) << "tool messages are kept by default";
  EXPECT_EQ(messages[4]["content"][1], original[4]["content"][1]) << "non-text parts untouched";
  EXPECT_THAT(Text(messages[4]), ::testing::EndsWith("\n\n" + question)) << "question verbatim";

  EXPECT_EQ(report->original_tokens, Tokens(original));
  EXPECT_EQ(report->compressed_tokens, Tokens(messages));
  EXPECT_NEAR(report->rate, 0.5, 0.5 * 0.05) << report->compressed_tokens << " of "
                                              << report->original_tokens;
}

TEST(CompressChatTest, StablePrefixIsByteIdenticalAcrossQuestions) {
  auto compressor = TinyCompressor(/*cache_entries=*/64);
  ASSERT_NE(compressor, nullptr);
  ChatPolicy policy = Policy(0.4);
  policy.question_aware = true;
  Json first = Chat("Who paid the workers?");
  Json second = Chat("What did the merchants sell to sailors in spring, and why were prices high?");
  auto a = CompressChat(*compressor, first, policy);
  auto b = CompressChat(*compressor, second, policy);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(first[i].dump(), second[i].dump()) << i;
  EXPECT_NE(Text(first[0]), Text(Chat("x")[0])) << "the system prompt was compressed";
  EXPECT_TRUE(b->cache_hit) << "the second request's stable parts come from the cache";
}

TEST(CompressChatTest, ShortTurnsAndAVerbatimQuestionStillLandOnTheRate) {
  // Turns too short to compress alone, one long turn, and a last message that is all question:
  // the history absorbs what the question and short turns cannot give, newest turns first.
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json messages = Json::array();
  messages.push_back({{"role", "system"}, {"content", Prose(60, 40)}});
  for (int i = 0; i < 10; ++i) {
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", Prose(12, 41 + i)}});
  }
  messages.push_back({{"role", "user"}, {"content", "Which harbour did the third ship reach?"}});
  const Json original = messages;
  for (double rate : {0.5, 0.33}) {
    messages = original;
    auto report = CompressChat(*compressor, messages, Policy(rate));
    ASSERT_THAT(report, IsOk());
    EXPECT_NEAR(report->rate, rate, rate * 0.05) << report->compressed_tokens << " of "
                                                 << report->original_tokens;
    EXPECT_EQ(report->compressed_tokens, Tokens(messages));
    EXPECT_EQ(messages.back(), original.back()) << "the question stays verbatim";
    EXPECT_EQ(messages[1], original[1]) << "the oldest short turn is the cached prefix";
  }
}

TEST(CompressChatTest, UnderMinPromptTokensUnchanged) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json original = Chat("Why?");
  Json messages = original;
  ChatPolicy policy = Policy(0.5);
  policy.min_prompt_tokens = 100000;
  auto report = CompressChat(*compressor, messages, policy);
  ASSERT_THAT(report, IsOk());
  EXPECT_FALSE(report->applied);
  EXPECT_THAT(report->reason, HasSubstr("min_prompt_tokens"));
  EXPECT_EQ(messages, original);
}

TEST(CompressChatTest, KeepLastTurnsAndRolesAreRespected) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json original = Chat("Why?");
  Json messages = original;
  ChatPolicy policy = Policy(0.5);
  policy.keep_last_turns = 3;      // the alice turn, the assistant turn and the tool turn
  policy.roles = {"user"};         // system text is not compressible on this route
  auto report = CompressChat(*compressor, messages, policy);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(messages[0], original[0]);
  EXPECT_EQ(messages[1], original[1]);
  EXPECT_LT(Text(messages[4]).size(), Text(original[4]).size());
}

TEST(CompressChatTest, EveryTextPartOfTheLastUserMessageCountsInTheBudget) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json original = Chat("What did the council decide?");
  // text, image, text: the first part is compressed alone, the last holds documents + question.
  Json& parts = original[4]["content"];
  parts = Json::array({Json{{"type", "text"}, {"text", Prose(250, 21)}}, parts[1], parts[0]});
  Json messages = original;
  auto report = CompressChat(*compressor, messages, Policy(0.5));
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(messages[4]["content"][1], original[4]["content"][1]) << "the image is untouched";
  EXPECT_LT(messages[4]["content"][0]["text"].get<std::string>().size(),
            original[4]["content"][0]["text"].get<std::string>().size());
  EXPECT_THAT(messages[4]["content"][2]["text"].get<std::string>(),
              ::testing::EndsWith("\n\nWhat did the council decide?"));
  EXPECT_EQ(report->compressed_tokens, Tokens(messages));
  EXPECT_NEAR(report->rate, 0.5, 0.5 * 0.05)
      << report->compressed_tokens << " of " << report->original_tokens;
}

TEST(CompressChatTest, MarkupNeverReachesTheUpstream) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json original = Chat("Is <terse:keep>entry 4411</terse:keep> right?");
  original[2]["content"] = "<terse:keep>Noted, ID 42.</terse:keep>";  // short: kept whole
  original[3]["content"] = R"({"note": "<terse:keep>data</terse:keep>"})";  // tool data
  Json messages = original;
  ASSERT_THAT(CompressChat(*compressor, messages, Policy(0.5)), IsOk());
  EXPECT_EQ(messages[2]["content"], "Noted, ID 42.");
  EXPECT_THAT(Text(messages[4]), ::testing::EndsWith("\n\nIs entry 4411 right?"));
  EXPECT_EQ(messages[3], original[3]) << "a tool result is data, not markup";

  // Forwarded unchanged (under min_prompt_tokens), but still without terse's tags.
  Json small = Json::array(
      {{{"role", "user"}, {"content", "<terse:doc>a</terse:doc> <terse rate=0.3>b</terse>?"}}});
  ChatPolicy policy = Policy(0.5);
  policy.min_prompt_tokens = 1000;
  auto report = CompressChat(*compressor, small, policy);
  ASSERT_THAT(report, IsOk());
  EXPECT_FALSE(report->applied);
  EXPECT_EQ(small[0]["content"], "a b?");
}

TEST(CompressChatTest, CompletionPromptsStringAndArray) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json prompt = Prose(400, 9);
  auto report = CompressCompletionPrompt(*compressor, prompt, Policy(0.5));
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(prompt.is_string());
  EXPECT_NEAR(report->rate, 0.5, 0.025);
  Json prompts = Json::array({Prose(300, 3), Prose(300, 4)});
  ASSERT_THAT(CompressCompletionPrompt(*compressor, prompts, Policy(0.5)), IsOk());
  EXPECT_EQ(prompts.size(), 2u);
  Json bad = 42;
  EXPECT_THAT(CompressCompletionPrompt(*compressor, bad, Policy(0.5)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Nothing thrown leaves CompressChat: a role that is not a string is a request error, a content
// part whose type is not a string is not text (and stays as it is), and a model that throws is an
// internal error.
TEST(CompressChatTest, MalformedMessagesAndModelFailuresAreStatuses) {
  auto compressor = TinyCompressor();
  ASSERT_NE(compressor, nullptr);
  Json messages = Chat("Who rebuilt the bridge?");
  messages[2]["role"] = 7;
  EXPECT_THAT(CompressChat(*compressor, messages, Policy(0.5)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("messages[2].role")));

  messages = Chat("Who rebuilt the bridge?");
  messages[4]["content"][1]["type"] = Json::array();
  const Json odd_part = messages[4]["content"][1];
  ASSERT_THAT(CompressChat(*compressor, messages, Policy(0.5)), IsOk());
  EXPECT_EQ(messages[4]["content"][1], odd_part);

  auto throwing = Compressor::Create(std::make_shared<testing::ThrowingLanguageModel>(
                                         [] { throw std::runtime_error("the model broke"); }),
                                     testing::TinyTokenizer(), 0);
  ASSERT_THAT(throwing, IsOk());
  messages = Chat("Who rebuilt the bridge?");
  EXPECT_THAT(CompressChat(**throwing, messages, Policy(0.5)),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("the model broke")));
  Json prompt = Prose(400, 9);
  EXPECT_THAT(CompressCompletionPrompt(**throwing, prompt, Policy(0.5)),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("the model broke")));
}

}  // namespace
}  // namespace terse::compressor
