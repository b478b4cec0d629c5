// WireJson's two forms: the text as received and the parsed value, and edits spliced into the
// text that agree with the same edits of the value.
#include "json/wire_json.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "json/codec.h"

namespace terse::json {
namespace {

// The text as received, which the tests know to be valid.
WireJson Received(const std::string& text) { return WireJson::FromUncheckedText(text).value(); }

TEST(WireJsonTest, TextStaysAsReceivedUntilTheValueChanges) {
  const std::string text = R"({"b": 1,  "a": "\u00e9", "usage": {"prompt_tokens": 3}})";
  WireJson wire = Received(text);
  EXPECT_TRUE(wire.has_text());
  EXPECT_EQ(wire.json()["a"], "\xc3\xa9");
  EXPECT_EQ(wire.text(), text);  // reading the value keeps the text
  wire.mutable_json().erase("usage");
  EXPECT_FALSE(wire.has_text());
  EXPECT_EQ(wire.text(), R"({"b":1,"a":"é"})");
}

TEST(WireJsonTest, MemberParsesOnlyWhatItIsAskedFor) {
  WireJson wire = Received(R"({"choices":[],"usage":{"prompt_tokens":3},"usage":{"x":1}})");
  ASSERT_TRUE(wire.Member("usage").has_value());
  EXPECT_EQ(*wire.Member("usage"), Json({{"x", 1}}));  // the last duplicate, as the parser does
  EXPECT_EQ(*wire.Member("choices"), Json::array());
  EXPECT_FALSE(wire.Member("error").has_value());
  EXPECT_TRUE(wire.has_text());
  // A key written with escapes is still found.
  EXPECT_EQ(*Received(R"({"us\u0061ge":{"a":1}})").Member("usage"), Json({{"a", 1}}));
  EXPECT_FALSE(Received("[1]").Member("usage").has_value());
  EXPECT_EQ(*WireJson(Json{{"usage", 2}}).Member("usage"), 2);
}

// Checked once, its members noted on the way: look-ups agree with the parser, including short
// texts (kept inline by std::string), escaped keys, and after the value changed.
TEST(WireJsonTest, UncheckedTextIsCheckedAndItsMembersNoted) {
  EXPECT_FALSE(WireJson::FromUncheckedText(R"({"a":1,})").has_value());
  EXPECT_FALSE(WireJson::FromUncheckedText("").has_value());
  for (const std::string& text :
       {std::string(R"({"a":1})"),
        std::string(R"({"choices":[],"usage":{"prompt_tokens":3},"usage":{"x":1}})"),
        std::string(R"({"usage":{"a":1},"b":[1,2]})"), std::string("[1]"),
        std::string(R"( { "usage" : null } )"), std::string(R"({"us\u0061ge":{"a":1}})")}) {
    std::optional<WireJson> checked = WireJson::FromUncheckedText(text);
    ASSERT_TRUE(checked.has_value()) << text;
    WireJson moved = *std::move(checked);  // the noted places survive a move
    const WireJson parsed(Json::parse(text));
    EXPECT_EQ(moved.text(), text);
    const bool escaped = text.find('\\') != std::string::npos;
    for (std::string_view key : {"a", "b", "usage", "choices", "missing"}) {
      std::optional<std::string_view> noted;
      ASSERT_EQ(moved.FindMemberText(key, &noted), !escaped) << text;
      if (!escaped) {
        EXPECT_EQ(noted.has_value(), parsed.Member(key).has_value()) << text << " " << key;
        if (noted.has_value()) {
          EXPECT_EQ(Json::parse(*noted), *parsed.Member(key)) << text;
        }
      }
      EXPECT_EQ(moved.Member(key), parsed.Member(key)) << text << " " << key;
    }
  }
  WireJson changed = Received(R"({"usage":{"x":1},"id":"c"})");
  changed.mutable_json()["usage"] = 5;
  std::optional<std::string_view> usage;
  EXPECT_FALSE(changed.FindMemberText("usage", &usage));  // not the text received any more
  EXPECT_EQ(*changed.Member("usage"), 5);
  changed.text();
  EXPECT_FALSE(changed.FindMemberText("usage", &usage));  // a serialization: the value decides
  EXPECT_EQ(*changed.Member("usage"), 5);
}

// A request body as the client wrote it: spacing, number spellings and escapes are not what the
// serializer would write, so any re-serialization shows.
constexpr std::string_view kClientText =
    R"({ "model" : "fi\u0078ed",  "temperature": 0.50, "messages": [{"role": "user", "content": "hi"}] ,"n":1 })";

TEST(WireJsonTest, EditedMembersAreSplicedIntoTheTextAndTheRestKeptByteForByte) {
  WireJson wire = WireJson::FromParsedText(std::string(kClientText), Json::parse(kClientText));
  wire.SetMember("model", "fixed");  // the same value, spelled otherwise: nothing to do
  EXPECT_EQ(wire.text(), kClientText);
  wire.SetMember("model", "gpt-4o");
  wire.SetMember("stream_options", Json{{"include_usage", true}});
  wire.EraseMember("terse");  // none: nothing to do
  wire.EraseMember("n");
  EXPECT_EQ(
      wire.text(),
      R"({ "model" : "gpt-4o",  "temperature": 0.50, "messages": [{"role": "user", "content": "hi"}] ,"stream_options":{"include_usage":true}})");
  EXPECT_EQ(wire.json(), Json::parse(wire.text()));
  std::optional<std::string_view> member;
  ASSERT_TRUE(wire.FindMemberText("stream_options", &member));  // the noted places moved along
  EXPECT_EQ(member, R"({"include_usage":true})");
  ASSERT_TRUE(wire.FindMemberText("temperature", &member));
  EXPECT_EQ(member, "0.50");

  // The first member, the only one, an empty object.
  WireJson first = WireJson::FromParsedText(R"({"a":1, "b":2})", Json::parse(R"({"a":1,"b":2})"));
  first.EraseMember("a");
  EXPECT_EQ(first.text(), R"({"b":2})");
  first.EraseMember("b");
  EXPECT_EQ(first.text(), "{}");
  first.SetMember("c", Json::array({1}));
  EXPECT_EQ(first.text(), R"({"c":[1]})");
  EXPECT_EQ(first.json(), Json({{"c", Json::array({1})}}));
}

// An attempt's body: the text the call keeps, handed out without a copy; an edit after that
// changes the WireJson's own copy, never the bytes an attempt may still be sending.
TEST(WireJsonTest, SharedTextIsTheTextItselfAndEditsLeaveItAlone) {
  WireJson wire = WireJson::FromParsedText(std::string(kClientText), Json::parse(kClientText));
  std::shared_ptr<const std::string> shared = wire.SharedText();
  EXPECT_EQ(*shared, kClientText);
  EXPECT_EQ(wire.SharedText(), shared);  // once handed out, the same bytes
  EXPECT_EQ(&wire.text(), shared.get());
  const WireJson copy = wire;
  EXPECT_EQ(copy.SharedText(), shared);

  wire.SetMember("n", 2);
  EXPECT_EQ(*shared, kClientText);
  EXPECT_NE(wire.text(), kClientText);
  EXPECT_EQ(wire.json()["n"], 2);
  EXPECT_EQ(wire.json(), Json::parse(wire.text()));
  EXPECT_EQ(copy.text(), kClientText);
  ASSERT_NE(wire.SharedText(), shared);
  EXPECT_EQ(*wire.SharedText(), wire.text());

  // A value without text is serialized for it.
  const WireJson built(Json{{"a", 1}});
  EXPECT_EQ(*built.SharedText(), R"({"a":1})");
  EXPECT_EQ(built.text(), R"({"a":1})");
  // And a checked text with noted members, as an upstream's answer, keeps them noted.
  std::optional<WireJson> answer = WireJson::FromUncheckedText(R"({"id":"x","usage":{"n":1}})");
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(*answer->SharedText(), R"({"id":"x","usage":{"n":1}})");
  std::optional<std::string_view> member;
  ASSERT_TRUE(answer->FindMemberText("usage", &member));
  EXPECT_EQ(member, R"({"n":1})");
}

// A compressed request: only the members the new value changes are rewritten.
TEST(WireJsonTest, SetMembersRewritesOnlyTheMembersThatChange) {
  const std::string text =
      R"({"terse": {"rate": 0.5}, "model": "m", "top_p": 1.0, "messages": [{"role": "user", "content": "long long"}]})";
  WireJson wire = WireJson::FromParsedText(text, Json::parse(text));
  Json compressed = Json::parse(text);
  compressed.erase("terse");
  compressed["messages"][0]["content"] = "long";
  wire.SetMembers(compressed);
  EXPECT_EQ(wire.text(),
            R"({"model": "m", "top_p": 1.0, "messages": [{"role":"user","content":"long"}]})");
  EXPECT_EQ(wire.json(), compressed);
  // Anything else than an object is taken whole.
  wire.SetMembers(Json::array({1}));
  EXPECT_EQ(wire.text(), "[1]");
}

// A request of many members, say 100,000 of a client's own, compressed: its members are matched
// by key without a walk through all of them for each, and only the one that changed is rewritten.
TEST(WireJsonTest, SetMembersOnAnObjectOfManyMembersRewritesTheOneThatChanged) {
  std::string text = R"({"messages": "long")";
  for (int i = 0; i < 100000; ++i) absl::StrAppend(&text, ", \"x", i, "\": ", i);
  text += "}";
  // ParseJson, not Json::parse, which takes n^2 comparisons for such an object too.
  WireJson wire = WireJson::FromParsedText(text, *ParseJson(text));
  Json compressed = *ParseJson(text);
  compressed["messages"] = "short";
  compressed.erase("x7");
  wire.SetMembers(compressed);
  std::string expected = R"({"messages": "short")";
  for (int i = 0; i < 100000; ++i) {
    if (i != 7) absl::StrAppend(&expected, ", \"x", i, "\": ", i);
  }
  expected += "}";
  EXPECT_EQ(wire.text(), expected);
  EXPECT_EQ(wire.json(), compressed);
}

TEST(WireJsonTest, TextThatCannotBeEditedInPlaceIsSerializedAfterAnEdit) {
  // A parser keeps one of two duplicates, and which one is its choice: the value decides.
  const std::string duplicates = R"({"model":"a", "model":"b"})";
  WireJson twice = WireJson::FromParsedText(duplicates, Json::parse(duplicates));
  twice.SetMember("model", "c");
  EXPECT_EQ(twice.text(), R"({"model":"c"})");
  // A key spelled with escapes.
  const std::string escaped = R"({"mod\u0065l":"a", "n": 1})";
  WireJson spelled = WireJson::FromParsedText(escaped, Json::parse(escaped));
  spelled.EraseMember("n");
  EXPECT_EQ(spelled.text(), R"({"model":"a"})");
  // A key that needs escapes.
  const std::string plain = R"({"n": 1})";
  WireJson quoted = WireJson::FromParsedText(plain, Json::parse(plain));
  quoted.SetMember("say \"hi\"", 2);
  EXPECT_EQ(quoted.text(), R"({"n":1,"say \"hi\"":2})");
  // A value terse built is serialized, edited or not.
  WireJson built(Json{{"model", "a"}});
  built.SetMember("stream", true);
  EXPECT_EQ(built.text(), R"({"model":"a","stream":true})");
}

// Random edits of texts received (unparsed), parsed, and built, against the same edits of a Json.
TEST(WireJsonTest, EditsAgreeWithTheSameEditsOfTheValue) {
  const std::vector<std::string> texts = {"{}", " { } ", R"({"a":1})",
                                          R"( {"a" : [1, {"b":2}] , "c":"x\"y" , "d":null } )",
                                          R"({"model":"m","messages":[],"stream":true})"};
  const std::vector<std::string> keys = {"a", "c", "d", "model", "stream", "new"};
  const std::vector<Json> values = {1, "s", Json::object(), Json::array({1, 2}), nullptr, true};
  std::mt19937 rng(7);
  for (int round = 0; round < 400; ++round) {
    const std::string& text = texts[rng() % texts.size()];
    Json expected = Json::parse(text);
    WireJson received = Received(text);
    WireJson parsed = WireJson::FromParsedText(text, expected);
    WireJson built(expected);
    std::string done;
    for (int step = 0; step < 4; ++step) {
      const std::string& key = keys[rng() % keys.size()];
      if (rng() % 5 == 0) {
        // The value as a whole: one member changed or added, another removed.
        Json next = expected;
        next[key] = values[rng() % values.size()];
        next.erase(keys[rng() % keys.size()]);
        expected = next;
        for (WireJson* wire : {&received, &parsed, &built}) wire->SetMembers(next);
        absl::StrAppend(&done, " set members ", next.dump());
      } else if (rng() % 3 == 0) {
        expected.erase(key);
        for (WireJson* wire : {&received, &parsed, &built}) wire->EraseMember(key);
        absl::StrAppend(&done, " erase ", key);
      } else {
        const Json& value = values[rng() % values.size()];
        expected[key] = value;
        for (WireJson* wire : {&received, &parsed, &built}) wire->SetMember(key, value);
        absl::StrAppend(&done, " set ", key, "=", value.dump());
      }
      for (WireJson* wire : {&received, &parsed, &built}) {
        ASSERT_EQ(Json::parse(wire->text()), expected) << text << done;
        ASSERT_EQ(wire->json(), expected) << text << done;
        std::optional<std::string_view> member;
        if (wire->FindMemberText(key, &member)) {
          ASSERT_EQ(member.has_value(), expected.contains(key)) << text << done;
          if (member.has_value()) {
            ASSERT_EQ(Json::parse(*member), expected[key]) << text << done;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace terse::json
