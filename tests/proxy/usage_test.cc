// UsageReader: the usage record of a call, read off its answer as received or as a value, the
// same either way.
#include "proxy/usage.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace terse::proxy {
namespace {

// The two forms a message reaches the reader in: the upstream's text (relayed unparsed) and a
// value terse built or parsed.
std::vector<json::WireJson> BothForms(const std::string& text) {
  std::vector<json::WireJson> forms;
  forms.push_back(json::WireJson::FromUncheckedText(text).value());
  forms.push_back(json::WireJson(Json::parse(text)));
  return forms;
}

TEST(UsageReaderTest, AWholeResponseGivesItsCounts) {
  for (const json::WireJson& response : BothForms(
           R"({"id": "c1", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2,)"
           R"( "total_tokens": 14}})")) {
    UsageReader reader;
    EXPECT_TRUE(reader.Read(response));
    ASSERT_TRUE(reader.record().has_value());
    EXPECT_EQ(reader.record()->prompt_tokens, 12u);
    EXPECT_EQ(reader.record()->completion_tokens, 2u);
  }
}

TEST(UsageReaderTest, NoUsageMemberIsNoRecord) {
  for (const json::WireJson& chunk :
       BothForms(R"({"id": "c1", "choices": [{"index": 0, "delta": {"content": "x"}}]})")) {
    UsageReader reader;
    EXPECT_FALSE(reader.Read(chunk));
    EXPECT_EQ(reader.record(), std::nullopt);
  }
}

// A stream: content chunks without usage, then the usage chunk; a later usage object replaces an
// earlier one, and a usage member that is no object is reported but changes nothing.
TEST(UsageReaderTest, AStreamsUsageChunkGivesTheRecord) {
  UsageReader reader;
  for (const char* text :
       {R"({"choices": [{"delta": {"content": "a"}}]})",
        R"({"choices": [{"delta": {"content": "b"}}], "usage": null})",
        R"({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})",
        R"({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 4}})",
        R"({"choices": [], "usage": "odd"})"}) {
    reader.Read(json::WireJson::FromUncheckedText(text).value());
  }
  ASSERT_TRUE(reader.record().has_value());
  EXPECT_EQ(reader.record()->prompt_tokens, 8u);
  EXPECT_EQ(reader.record()->completion_tokens, 4u);

  UsageReader not_an_object;
  EXPECT_TRUE(not_an_object.Read(json::WireJson::FromUncheckedText(R"({"usage": null})").value()));
  EXPECT_EQ(not_an_object.record(), std::nullopt);
}

// Counts that are not non-negative numbers read as 0; a whole number written with a fraction is
// that number. The same from the text and from the value.
TEST(UsageReaderTest, OddCountsReadAsZero) {
  struct Case {
    std::string count;
    uint64_t read;
  };
  for (const Case& c : std::vector<Case>{{"7", 7},
                                         {"9.0", 9},
                                         {"9.7", 9},
                                         {R"("11")", 0},
                                         {"-5", 0},
                                         {"-0.5", 0},
                                         {R"({"n": 3})", 0},
                                         {"[3]", 0},
                                         {"true", 0},
                                         {"null", 0},
                                         {"18446744073709551615", 18446744073709551615u}}) {
    for (const json::WireJson& response :
         BothForms(R"({"usage": {"completion_tokens": 1, "prompt_tokens": )" + c.count + "}}")) {
      UsageReader reader;
      EXPECT_TRUE(reader.Read(response)) << c.count;
      ASSERT_TRUE(reader.record().has_value()) << c.count;
      EXPECT_EQ(reader.record()->prompt_tokens, c.read) << c.count;
      EXPECT_EQ(reader.record()->completion_tokens, 1u) << c.count;
    }
  }
}

// A value built in C++ keeps its ints signed (the echo provider's usage): still counts.
TEST(UsageReaderTest, SignedIntegersInAValueCount) {
  UsageReader reader;
  EXPECT_TRUE(reader.Read(json::WireJson(
      Json{{"usage", {{"prompt_tokens", int{2}}, {"completion_tokens", int64_t{3}}}}})));
  ASSERT_TRUE(reader.record().has_value());
  EXPECT_EQ(reader.record()->prompt_tokens, 2u);
  EXPECT_EQ(reader.record()->completion_tokens, 3u);
}

TEST(UsageReaderTest, CachedPromptTokensAreRead) {
  for (const json::WireJson& response :
       BothForms(R"({"usage": {"prompt_tokens": 40, "completion_tokens": 2,)"
                 R"( "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 32}}})")) {
    UsageReader reader;
    EXPECT_TRUE(reader.Read(response));
    ASSERT_TRUE(reader.record().has_value());
    EXPECT_EQ(reader.record()->prompt_tokens, 40u);
    EXPECT_EQ(reader.record()->cached_tokens, 32u);
  }
}

}  // namespace
}  // namespace terse::proxy
