// The JSON scanner against nlohmann's parser: the two must accept exactly the same texts.
#include "json/scan.h"

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "json/codec.h"
#include "tests/json/random_edit.h"

namespace terse::json {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

bool ParserAccepts(const std::string& text) { return Json::accept(text); }

TEST(JsonScanTest, AcceptsWhatTheParserAccepts) {
  const std::vector<std::string> texts = {
      "{}",
      "[]",
      " {} ",
      "\t[ ]\r\n",
      "0",
      "-0",
      "1.5e3",
      "-1E-2",
      "1e+9",
      "true",
      "false",
      "null",
      "\"\"",
      "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
      "\"\\u00e9\\uD83D\\uDE00\"",
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
      "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
      "[[[[[[]]]]]]",
      "\xef\xbb\xbf{}",
      "12345678901234567890123",
      "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}",
      // Rejected ones.
      "",
      " ",
      "{",
      "}",
      "[",
      "[1,]",
      "{\"a\":1,}",
      "{,}",
      "{\"a\"}",
      "{\"a\" 1}",
      "{a:1}",
      "01",
      "-",
      "1.",
      ".5",
      "1e",
      "1e+",
      "+1",
      "tru",
      "nul",
      "True",
      "NaN",
      "Infinity",
      "1e999",
      "-1e400",
      "[1e308]",
      "\"\\x\"",
      "\"\\u12\"",
      "\"\\uD83D\"",
      "\"\\uDE00\"",
      "\"\\uD83D\\u0041\"",
      "\"a\nb\"",
      "\"\x01\"",
      "\"\xc3\"",
      "\"\xc0\xaf\"",
      "\"\xed\xa0\x80\"",
      "\"\xf4\x90\x80\x80\"",
      "\"\xff\"",
      "\xef\xbb{}",
      "{} {}",
      "[] x",
      "\"abc",
      "{\"a\":1}}",
      "[1]]",
      "{\"a\":[}",
      "/* c */ {}",
      "\x7f",
      "\"\x7f\"",
      "[1 2]",
      "{\"a\":1 \"b\":2}",
  };
  for (const std::string& text : texts) {
    EXPECT_EQ(IsValidJson(text), ParserAccepts(text)) << "text: " << text;
  }
}

// Random edits of real chunks: every verdict must match the parser's.
TEST(JsonScanTest, AgreesWithTheParserOnMutatedTexts) {
  const std::vector<std::string> seeds = {
      R"({"id":"c1","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"content":"Hi \"you\" \u00e9"},"logprobs":null,"finish_reason":null}]})",
      R"({"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":4,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":0}}})",
      R"([1,-2.5e-3,true,false,null,"x",{"a":[{}]}])",
  };
  const std::string alphabet =
      "{}[],:\"\\/ 0123456789-+.eEtrufalsn\x01\n\t\xc3\xa9\xe2\x82\xac\xff";
  std::mt19937 rng(12345);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text = seeds[i % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) RandomEdit(text, rng, alphabet);
    const bool ours = IsValidJson(text);
    ASSERT_EQ(ours, ParserAccepts(text)) << "text: " << text;
    accepted += ours;
    // The one-pass form gives the same verdict, and the same members as walking them afterwards.
    std::vector<std::pair<std::string_view, std::string_view>> seen, walked;
    ASSERT_EQ(
        IsValidJson(text, [&](std::string_view k, std::string_view v) { seen.emplace_back(k, v); }),
        ours);
    if (ours) {
      ForEachMember(text,
                    [&](std::string_view k, std::string_view v) { walked.emplace_back(k, v); });
      ASSERT_EQ(seen, walked) << "text: " << text;
    }
  }
  // Both verdicts were exercised.
  EXPECT_GT(accepted, 100);
  EXPECT_LT(accepted, 19900);
}

// Strings are checked eight plain bytes at a time: a byte that needs a look of its own must be
// seen at every position of a word, and near the end of the text.
TEST(JsonScanTest, FindsEveryKindOfByteAtEveryPositionOfALongString) {
  const std::vector<std::string> inserts = {
      "\"",    // ends the string early: what follows is not JSON
      "\\n",   // an escape
      "\\q",   // a bad escape
      "\x01",  // a raw control character
      "\x1f",
      "\x7f",      // DEL is allowed
      "\xc3\xa9",  // UTF-8
      "\xff",      // not UTF-8
      "\xe2\x82",  // cut UTF-8
      " ",
  };
  int accepted = 0;
  for (const std::string& insert : inserts) {
    for (size_t prefix = 0; prefix < 20; ++prefix) {
      for (size_t suffix : {0, 1, 7, 8, 9, 17}) {
        const std::string text =
            "\"" + std::string(prefix, 'a') + insert + std::string(suffix, 'b') + "\"";
        ASSERT_EQ(IsValidJson(text), ParserAccepts(text))
            << "insert " << ::testing::PrintToString(insert) << " after " << prefix;
        accepted += ParserAccepts(text);
      }
    }
  }
  EXPECT_GT(accepted, 100);
  EXPECT_LT(accepted, 1000);
}

TEST(JsonScanTest, WalksMembersAndElementsAsWritten) {
  std::vector<std::pair<std::string, std::string>> members;
  EXPECT_TRUE(ForEachMember(R"( {"a" : [1, {"x":"}"}] , "b\"c":"v,]", "d":-1.5e2,"e":{}} )",
                            [&](std::string_view k, std::string_view v) {
                              members.emplace_back(std::string(k), std::string(v));
                            }));
  EXPECT_THAT(members, ElementsAre(Pair("a", R"([1, {"x":"}"}])"), Pair("b\\\"c", R"("v,]")"),
                                   Pair("d", "-1.5e2"), Pair("e", "{}")));
  std::vector<std::string> elements;
  EXPECT_TRUE(ForEachElement(R"([ {"i":0} , "s" ,null,[[]] ])",
                             [&](std::string_view v) { elements.emplace_back(v); }));
  EXPECT_THAT(elements, ElementsAre(R"({"i":0})", R"("s")", "null", "[[]]"));
  EXPECT_FALSE(ForEachMember("[1]", [](std::string_view, std::string_view) {}));
  EXPECT_FALSE(ForEachElement("{}", [](std::string_view) {}));
}

}  // namespace
}  // namespace terse::json
