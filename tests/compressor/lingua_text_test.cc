#include "compressor/lingua_text.h"

#include <string>
#include <vector>

#include "base/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace terse::compressor::lingua {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

MarkedText Plain(std::string text) { return MarkedText{std::move(text), {}}; }

std::vector<std::string> UnitTexts(const MarkedText& m, const Layout& layout) {
  std::vector<std::string> out;
  for (const Unit& u : layout.units) out.push_back(m.text.substr(u.begin, u.end - u.begin));
  return out;
}

std::vector<std::string> UnitsOf(const std::string& text, StructureOptions options = {}) {
  const MarkedText m = Plain(text);
  return UnitTexts(m, SplitUnits(m, options));
}

// Keeps every unit except those whose text is in `drop`.
std::string DropWords(const std::string& text, const std::vector<std::string>& drop,
                      StructureOptions options = {}) {
  const MarkedText m = Plain(text);
  const Layout layout = SplitUnits(m, options);
  std::vector<bool> kept;
  for (const Unit& u : layout.units) {
    const std::string w = text.substr(u.begin, u.end - u.begin);
    kept.push_back((u.flags & kUnitForced) || std::find(drop.begin(), drop.end(), w) == drop.end());
  }
  return Assemble(m.text, layout.units, kept);
}

TEST(MarkupTest, RemovesTagsAndRecordsSpans) {
  auto m = ParseMarkup("a <terse:keep>b c</terse:keep> d <terse rate=0.4>e f</terse> g");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "a b c d e f g");
  ASSERT_EQ(m->spans.size(), 2u);
  EXPECT_TRUE(m->spans[0].keep);
  EXPECT_EQ(m->text.substr(m->spans[0].begin, m->spans[0].end - m->spans[0].begin), "b c");
  EXPECT_FALSE(m->spans[1].keep);
  EXPECT_DOUBLE_EQ(m->spans[1].rate, 0.4);
  EXPECT_EQ(m->text.substr(m->spans[1].begin, m->spans[1].end - m->spans[1].begin), "e f");
}

TEST(MarkupTest, QuotedRatesNestingAndUnclosedTags) {
  auto m =
      ParseMarkup("<terse rate=\"0.5\">x <terse rate='0.2'>y</terse> <terse:keep>z</terse:keep>");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "x y z");
  ASSERT_EQ(m->spans.size(), 4u);
  EXPECT_DOUBLE_EQ(m->spans[0].rate, 0.5);  // "x "
  EXPECT_DOUBLE_EQ(m->spans[1].rate, 0.2);  // "y"
  EXPECT_DOUBLE_EQ(m->spans[2].rate, 0.5);  // " "
  EXPECT_TRUE(m->spans[3].keep);            // "z", inside the unclosed rate tag
  EXPECT_EQ(m->spans[3].end, m->text.size());
}

TEST(MarkupTest, StrayClosingTagsAreDroppedAndOtherTagsAreText) {
  auto m = ParseMarkup("a</terse> b</terse:keep> <b>bold</b> <terse foo=1>");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "a b <b>bold</b> <terse foo=1>");
  EXPECT_TRUE(m->spans.empty());
}

TEST(MarkupTest, BadRateIsInvalidArgument) {
  EXPECT_THAT(ParseMarkup("<terse rate=1.5>x</terse>"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rate")));
  EXPECT_THAT(ParseMarkup("<terse rate=abc>x</terse>"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseMarkup("<terse rate>x</terse>"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MarkupTest, LlmlinguaTagsAreAliases) {
  auto m = ParseMarkup(
      "<llmlingua, compress=False>Keep: 42 apples.</llmlingua> mid "
      "<llmlingua, rate=0.4>squeeze this</llmlingua> <llmlingua>global</llmlingua> end");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "Keep: 42 apples. mid squeeze this global end");
  ASSERT_EQ(m->spans.size(), 2u);
  EXPECT_TRUE(m->spans[0].keep);
  EXPECT_EQ(m->text.substr(m->spans[0].begin, m->spans[0].end - m->spans[0].begin),
            "Keep: 42 apples.");
  EXPECT_FALSE(m->spans[1].keep);
  EXPECT_DOUBLE_EQ(m->spans[1].rate, 0.4);
  EXPECT_EQ(m->text.substr(m->spans[1].begin, m->spans[1].end - m->spans[1].begin), "squeeze this");
}

TEST(MarkupTest, LlmlinguaTagsNestWithTerseTagsAndTakeBothAttributes) {
  auto m = ParseMarkup(
      "<llmlingua, rate=0.5, compress=True>a <terse:keep>b</terse:keep> c</llmlingua>"
      "<llmlingua,compress=false>d</llmlingua></llmlingua>");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "a b cd");
  ASSERT_EQ(m->spans.size(), 4u);
  EXPECT_DOUBLE_EQ(m->spans[0].rate, 0.5);
  EXPECT_TRUE(m->spans[1].keep);
  EXPECT_DOUBLE_EQ(m->spans[2].rate, 0.5);
  EXPECT_TRUE(m->spans[3].keep);
}

TEST(MarkupTest, EachClosingTagClosesItsOwnKind) {
  // </terse> does not end an llmlingua span, nor </llmlingua> a terse one.
  auto m = ParseMarkup(
      "<llmlingua, compress=False>a <terse rate=0.5>b</llmlingua> c</terse> d</terse> e</llmlingua>"
      " f");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "a b c d e f");
  ASSERT_EQ(m->spans.size(), 2u);
  EXPECT_TRUE(m->spans[0].keep);
  EXPECT_EQ(m->text.substr(m->spans[0].begin, m->spans[0].end - m->spans[0].begin), "a b");
  EXPECT_FALSE(m->spans[1].keep);  // the terse rate span outlives the llmlingua one
  EXPECT_DOUBLE_EQ(m->spans[1].rate, 0.5);
  EXPECT_EQ(m->text.substr(m->spans[1].begin, m->spans[1].end - m->spans[1].begin), " c");
}

TEST(MarkupTest, BadLlmlinguaTagsAreInvalidArgumentAndLookalikesAreText) {
  EXPECT_THAT(ParseMarkup("<llmlingua, rate=2>x</llmlingua>"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rate")));
  EXPECT_THAT(ParseMarkup("<llmlingua, color=red>x</llmlingua>"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("llmlingua")));
  auto m = ParseMarkup("<llmlinguas> stays");
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->text, "<llmlinguas> stays");
}

TEST(SplitUnitsTest, WordsPunctuationNumbersContractions) {
  EXPECT_THAT(
      UnitsOf("Don't pay $3.50, or 1,000 yen... ok?!"),
      ElementsAre("Don't", "pay", "$3.50", ",", "or", "1,000", "yen", "...", "ok", "?", "!"));
}

TEST(SplitUnitsTest, NumbersWithSignsCurrenciesAndUnitsStayWhole) {
  EXPECT_THAT(UnitsOf("It fell -4 degrees; sales rose 15% to \xE2\x82\xAC"
                      "2.4 million over 3.5 km."),
              ElementsAre("It", "fell", "-4", "degrees", ";", "sales", "rose", "15%", "to",
                          "\xE2\x82\xAC"
                          "2.4 million",
                          "over", "3.5 km", "."));
  // A hyphen between words is no sign; a number's count of things is no unit.
  EXPECT_THAT(UnitsOf("well-known 12 apples"), ElementsAre("well", "-", "known", "12", "apples"));
}

TEST(SplitUnitsTest, DatesTimesAndIdentifiersStayWhole) {
  EXPECT_THAT(UnitsOf("On 14 March 2003, March 14, 2003 and March 2003 at 00:12:31 ref KX-4821 "
                      "due 2024-05-17."),
              ElementsAre("On", "14 March 2003", ",", "March 14, 2003", "and", "March 2003", "at",
                          "00:12:31", "ref", "KX-4821", "due", "2024-05-17", "."));
}

TEST(SplitUnitsTest, MultiWordNamesStayWhole) {
  EXPECT_THAT(UnitsOf("The survey by Idris Bramwell of the Bank of England reached Port Elsinore."),
              ElementsAre("The", "survey", "by", "Idris Bramwell", "of", "the", "Bank of England",
                          "reached", "Port Elsinore", "."));
  // Not across a line break or two spaces, not a function word, and a lone capital stays alone.
  EXPECT_THAT(UnitsOf("Idris\nBramwell  Smith In Paris"),
              ElementsAre("Idris", "Bramwell", "Smith", "In", "Paris"));
}

TEST(SplitUnitsTest, WholeUnitsNeverCrossMarkup) {
  auto m = ParseMarkup("Idris <terse:keep>Bramwell</terse:keep> paid $<terse rate=0.5>3</terse>");
  ASSERT_THAT(m, IsOk());
  EXPECT_THAT(UnitTexts(*m, SplitUnits(*m, {})),
              ElementsAre("Idris", "Bramwell", "paid", "$", "3"));
}

TEST(SplitUnitsTest, UrlsEmailsAndInlineCodeAreAtomic) {
  EXPECT_THAT(UnitsOf("See https://example.com/a?b=1. Mail bob.smith@example.org or `x = f(y)`."),
              ElementsAre("See", "https://example.com/a?b=1", ".", "Mail", "bob.smith@example.org",
                          "or", "`x = f(y)`", "."));
}

TEST(SplitUnitsTest, CjkPerCharacterAndEmojiSequencesWhole) {
  // 中文 (two ideographs), a family emoji joined with ZWJ, a thumbs-up with a skin tone, a flag.
  const std::string family =
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7";
  const std::string thumbs = "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD";
  const std::string flag = "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7";
  EXPECT_THAT(UnitsOf("\xE4\xB8\xAD\xE6\x96\x87 " + family + thumbs + " " + flag + " caf\xC3\xA9"),
              ElementsAre("\xE4\xB8\xAD", "\xE6\x96\x87", family, thumbs, flag, "caf\xC3\xA9"));
}

TEST(SplitUnitsTest, CodeFencesAreOneForcedVerbatimUnit) {
  const std::string text = "Look:\n```python\ndef f(x):\n    return x  *  2\n```\nDone.";
  const MarkedText m = Plain(text);
  const Layout layout = SplitUnits(m, {});
  const auto units = UnitTexts(m, layout);
  ASSERT_THAT(units, ElementsAre("Look", ":", "```python\ndef f(x):\n    return x  *  2\n```",
                                 "Done", "."));
  EXPECT_TRUE(layout.units[2].flags & kUnitForced);
  EXPECT_TRUE(layout.units[2].flags & kUnitVerbatim);
}

TEST(SplitUnitsTest, UnclosedFenceRunsToTheEnd) {
  EXPECT_THAT(UnitsOf("a\n```\ncode  here\n\n"), ElementsAre("a", "```\ncode  here"));
}

TEST(SplitUnitsTest, JsonIsKeptWholeUnlessStringsMayShrink) {
  const std::string json = R"({"name": "a long description here", "n": [1, 2]})";
  const std::string text = "Tool said:\n" + json + "\nthanks";
  EXPECT_THAT(UnitsOf(text), ElementsAre("Tool", "said", ":", json, "thanks"));

  StructureOptions elastic;
  elastic.compress_json_strings = true;
  EXPECT_THAT(UnitsOf(text, elastic),
              ElementsAre("Tool", "said", ":", "{\"name\": \"", "a", "long", "description", "here",
                          "\", \"n\": [1, 2]}", "thanks"));
}

TEST(SplitUnitsTest, ProseInBracketsIsNotJson) {
  EXPECT_THAT(UnitsOf("[see the notes]"), ElementsAre("[", "see", "the", "notes", "]"));
}

TEST(SplitUnitsTest, MarkersLabelsForceTokensAndDigitsAreForced) {
  StructureOptions options;
  options.force_tokens = {"Q:", "?", "cat"};
  options.keep_digits = true;
  const std::string text = "# Title\n- item one\nSpeaker 2: hello there\nQ: why a cat? concat 42";
  const MarkedText m = Plain(text);
  const Layout layout = SplitUnits(m, options);
  std::vector<std::string> forced;
  for (const Unit& u : layout.units) {
    if (u.flags & kUnitForced) forced.push_back(text.substr(u.begin, u.end - u.begin));
  }
  EXPECT_THAT(forced, ElementsAre("#", "-", "Speaker", "2", ":", "Q", ":", "cat", "?", "42"));
}

TEST(SplitUnitsTest, UnitsNeverStraddleMarkupSpans) {
  auto m = ParseMarkup("foo<terse rate=0.5>bar baz</terse>qux");
  ASSERT_THAT(m, IsOk());
  const Layout layout = SplitUnits(*m, {});
  EXPECT_THAT(UnitTexts(*m, layout), ElementsAre("foo", "bar", "baz", "qux"));
  EXPECT_EQ(layout.units[0].span, -1);
  EXPECT_EQ(layout.units[1].span, 0);
  EXPECT_EQ(layout.units[2].span, 0);
  EXPECT_EQ(layout.units[3].span, -1);
}

TEST(SplitUnitsTest, KeepSpansAreVerbatimUnits) {
  auto m = ParseMarkup("drop <terse:keep>keep  this\nexactly</terse:keep> drop");
  ASSERT_THAT(m, IsOk());
  const Layout layout = SplitUnits(*m, {});
  EXPECT_THAT(UnitTexts(*m, layout), ElementsAre("drop", "keep  this\nexactly", "drop"));
  EXPECT_TRUE(layout.units[1].flags & kUnitVerbatim);
}

TEST(AssembleTest, KeepsEverythingByteForByte) {
  const std::string text = "  Hello,   world!\n\n\tIndented (yes).  \n";
  EXPECT_EQ(DropWords(text, {}), text);
}

TEST(AssembleTest, NoDoubledSpacesWhereWordsWereDropped) {
  EXPECT_EQ(DropWords("the cat sat on the mat", {"the", "on"}), "cat sat mat");
  EXPECT_EQ(DropWords("Hello, world. Next", {",", "."}), "Hello world Next");
}

TEST(AssembleTest, BracketsAndClosingPunctuationHugTheirWords) {
  EXPECT_EQ(DropWords("results (see section 4) here.", {"see", "4"}), "results (section) here.");
  EXPECT_EQ(DropWords("a \"quoted phrase\" b", {"quoted"}), "a \"phrase\" b");
}

TEST(AssembleTest, NewlinesSurviveAndDroppedLinesCollapse) {
  EXPECT_EQ(DropWords("one two\nthree\nfour five", {"three"}), "one two\nfour five");
  EXPECT_EQ(DropWords("para one\n\nmiddle line\n\npara two", {"middle", "line"}),
            "para one\n\npara two");
  EXPECT_EQ(DropWords("list:\n    deep item x\n    next", {"x", "deep"}),
            "list:\n    item\n    next");
}

TEST(AssembleTest, WordsDoNotFuseAcrossDroppedPunctuation) {
  EXPECT_EQ(DropWords("state-of-the-art", {"-"}), "state of the art");
}

TEST(AssembleTest, CjkGetsNoSpaces) {
  // 我们 今天 (no spaces in the original): drop 们.
  EXPECT_EQ(DropWords("\xE6\x88\x91\xE4\xBB\xAC\xE4\xBB\x8A\xE5\xA4\xA9", {"\xE4\xBB\xAC"}),
            "\xE6\x88\x91\xE4\xBB\x8A\xE5\xA4\xA9");
}

TEST(AssembleTest, JsonStaysValidWhenStringsShrink) {
  StructureOptions elastic;
  elastic.compress_json_strings = true;
  const std::string text =
      R"({"note": "first \"quoted\" words and more\nlines", "list": ["alpha beta", "x"], "k": 1})";
  const MarkedText m = Plain(text);
  const Layout layout = SplitUnits(m, elastic);
  ASSERT_EQ(layout.json.size(), 1u);
  // Drop every other elastic unit.
  std::vector<bool> kept;
  int toggle = 0;
  for (const Unit& u : layout.units) kept.push_back((u.flags & kUnitForced) || (toggle++ % 2));
  const std::string out = Assemble(m.text, layout.units, kept);
  EXPECT_TRUE(Json::accept(out)) << out;
  EXPECT_LT(out.size(), text.size());
  // Drop all of them.
  for (size_t i = 0; i < kept.size(); ++i) kept[i] = layout.units[i].flags & kUnitForced;
  const std::string empty_strings = Assemble(m.text, layout.units, kept);
  EXPECT_EQ(empty_strings, R"({"note": "", "list": ["", ""], "k": 1})");
}

TEST(AssembleTest, NothingKeptIsEmpty) {
  const std::string text = "a b c";
  const MarkedText m = Plain(text);
  const Layout layout = SplitUnits(m, {});
  EXPECT_EQ(Assemble(m.text, layout.units, std::vector<bool>(layout.units.size(), false)), "");
}

TEST(SentenceStartsTest, SplitsAtFinalPunctuationAndLineBreaks) {
  const std::string text = "One two. Three? Four\nfive 3.5 six";
  const MarkedText m = Plain(text);
  const Layout layout = SplitUnits(m, {});
  // Units: One two . Three ? Four five 3.5 six
  EXPECT_THAT(SentenceStarts(m.text, layout.units), ElementsAre(0, 3, 5, 6));
}

TEST(QuestionOverlapTest, RareSharedWordsCountMost) {
  const std::vector<std::string_view> docs = {
      "The mayor of Arlen is Margaret Olsen.", "The mayor of Brisport is Thomas Reed.",
      "Calder sells cider; its mayor is Ana.", "Nothing relevant here at all."};
  const std::vector<double> o = QuestionOverlap("Who is the MAYOR of Brisport?", docs);
  ASSERT_EQ(o.size(), 4u);
  EXPECT_GT(o[1], o[0]);
  EXPECT_GT(o[1], o[2]);
  EXPECT_GT(o[0], o[3]);
  EXPECT_DOUBLE_EQ(o[3], 0.0);
  EXPECT_LE(o[1], 1.0);
  EXPECT_THAT(QuestionOverlap("???", docs), ElementsAre(0, 0, 0, 0));
}

}  // namespace
}  // namespace terse::compressor::lingua
