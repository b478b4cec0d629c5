// TargetTokenizer and BpeRanks: known ids, round trips, invalid UTF-8, errors, and the comparison
// with the npm tiktoken package on the corpus of tests/e2e/tiktoken_compare.mjs.
#include "compressor/target_tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/json.h"
#include "compressor/bpe_ranks.h"
#include "compressor/target_tokenizer_text.h"
#include "tests/support/status_matchers.h"

namespace terse::compressor {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Ids = std::vector<uint32_t>;

std::string SourceDir() {
  const char* dir = std::getenv("TERSE_SOURCE_DIR");
  return dir != nullptr && *dir ? dir : ".";
}

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary) << contents;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class TargetTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto cl = GetTargetTokenizer("cl100k_base");
    auto o = GetTargetTokenizer("o200k_base");
    ASSERT_THAT(cl, IsOk());
    ASSERT_THAT(o, IsOk());
    cl100k_ = *cl;
    o200k_ = *o;
  }
  static void TearDownTestSuite() {
    cl100k_.reset();
    o200k_.reset();
  }

  static std::shared_ptr<const TargetTokenizer> cl100k_;
  static std::shared_ptr<const TargetTokenizer> o200k_;
};
std::shared_ptr<const TargetTokenizer> TargetTokenizerTest::cl100k_;
std::shared_ptr<const TargetTokenizer> TargetTokenizerTest::o200k_;

// Expected ids below come from the npm tiktoken package (encode_ordinary).
TEST_F(TargetTokenizerTest, KnownIds) {
  EXPECT_THAT(cl100k_->Encode("hello world"), ElementsAre(15339, 1917));
  EXPECT_THAT(o200k_->Encode("hello world"), ElementsAre(24912, 2375));
  EXPECT_THAT(cl100k_->Encode("12345678901234567890"),
              ElementsAre(4513, 10961, 16474, 11531, 12901, 17458, 1954));
  EXPECT_THAT(o200k_->Encode("12345678901234567890"),
              ElementsAre(7633, 19354, 29338, 19267, 22901, 30833, 2744));
  EXPECT_THAT(cl100k_->Encode("I'm DON'T they'RE"),
              ElementsAre(40, 2846, 45373, 17773, 814, 95253));
  EXPECT_THAT(o200k_->Encode("I'm DON'T they'RE"), ElementsAre(15390, 153384, 1023, 6, 1099));
  EXPECT_THAT(cl100k_->Encode("😀👍🏽"),
              ElementsAre(76460, 222, 9468, 239, 235, 9468, 237, 121));
  EXPECT_THAT(o200k_->Encode("😀👍🏽"), ElementsAre(84083, 82514, 52622, 121));
  EXPECT_THAT(cl100k_->Encode("你好世界"), ElementsAre(57668, 53901, 3574, 244, 98220));
  EXPECT_THAT(o200k_->Encode("你好世界"), ElementsAre(177519, 28428));
  EXPECT_THAT(cl100k_->Encode("          x"), ElementsAre(692, 865));
  EXPECT_THAT(o200k_->Encode("          x"), ElementsAre(983, 1215));
  EXPECT_THAT(cl100k_->Encode("\n\n\n  foo"), ElementsAre(1432, 220, 15586));
  EXPECT_THAT(o200k_->Encode("\n\n\n  foo"), ElementsAre(2499, 220, 30551));
}

TEST_F(TargetTokenizerTest, EmptyText) {
  EXPECT_THAT(cl100k_->Encode(""), IsEmpty());
  EXPECT_EQ(o200k_->Count(""), 0u);
  EXPECT_EQ(cl100k_->Decode({}), "");
}

TEST_F(TargetTokenizerTest, SpecialTokensAreOrdinaryText) {
  EXPECT_THAT(cl100k_->Encode("<|endoftext|>"), ElementsAre(27, 91, 8862, 728, 428, 91, 29));
  EXPECT_THAT(o200k_->Encode("<|endoftext|>"), ElementsAre(27, 91, 419, 1440, 919, 91, 29));
  // Their ids still decode to their text.
  const Ids special = {100257};
  EXPECT_EQ(cl100k_->Decode(special), "<|endoftext|>");
}

TEST_F(TargetTokenizerTest, WhiteSpaceIsUnicodeWhiteSpaceNotPcreSpace) {
  // U+0085 is White_Space, so it splits "a" from "b"; U+180E is not (PCRE2's \s says it is).
  EXPECT_THAT(cl100k_->Encode("a\u0085b"), ElementsAre(64, 126, 227, 65));
  EXPECT_THAT(o200k_->Encode("a\u0085b"), ElementsAre(64, 126, 227, 65));
  EXPECT_THAT(cl100k_->Encode(" \u180e x"), ElementsAre(87189, 254, 236, 865));
  EXPECT_THAT(o200k_->Encode(" \u180e x"), ElementsAre(220, 157, 254, 236, 1215));
}

TEST_F(TargetTokenizerTest, LettersAndDigitsOfUnicode16) {
  // Kawi U+11F04 (Unicode 15) and Garay U+10D50 (16) are letters, so "'s" is a contraction after
  // them; Garay digit U+10D40 groups with the digits after it. Ids from npm tiktoken.
  EXPECT_THAT(o200k_->Encode("x\U00011F04's"), ElementsAre(87, 172, 239, 120, 226, 885));
  EXPECT_THAT(cl100k_->Encode("x\U00011F04's"), ElementsAre(87, 172, 239, 120, 226, 596));
  EXPECT_THAT(o200k_->Encode("x\U00010D50's"), ElementsAre(87, 172, 238, 113, 238, 885));
  const Ids digits = cl100k_->Encode(" \U00010D40123");
  EXPECT_EQ(cl100k_->Decode(std::span(digits).last(1)), "3");
}

TEST_F(TargetTokenizerTest, LongWhitespaceRuns) {
  for (size_t n : {1u, 2u, 17u, 1000u, 100000u}) {
    for (const auto& tokenizer : {cl100k_, o200k_}) {
      const std::string spaces(n, ' ');
      const Ids ids = tokenizer->Encode(spaces + "end");
      EXPECT_EQ(tokenizer->Decode(ids), spaces + "end");
      EXPECT_EQ(tokenizer->Count(spaces + "end"), ids.size());
      // The last space goes with the word, the rest stay whitespace tokens.
      EXPECT_EQ(tokenizer->Decode(std::span(ids).last(1)), " end") << n;
    }
  }
}

TEST_F(TargetTokenizerTest, HugePiecesRoundTrip) {
  // Single pre-tokens of hundreds of kilobytes: the heap merge and the regex must both cope.
  for (const std::string& text : {std::string(1 << 18, 'a'), std::string(1 << 18, ' ') + "x",
                                  std::string(1 << 18, '-'), std::string(1 << 18, '\n')}) {
    for (const auto& tokenizer : {cl100k_, o200k_}) {
      const Ids ids = tokenizer->Encode(text);
      EXPECT_EQ(tokenizer->Count(text), ids.size());
      EXPECT_EQ(tokenizer->Decode(ids), text);
    }
  }
}

TEST_F(TargetTokenizerTest, DigitsGroupInThrees) {
  const Ids ids = cl100k_->Encode("1234567");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(cl100k_->Decode(std::span(ids).first(1)), "123");
  EXPECT_EQ(cl100k_->Decode(std::span(ids).subspan(1, 1)), "456");
  EXPECT_EQ(cl100k_->Decode(std::span(ids).last(1)), "7");
}

TEST_F(TargetTokenizerTest, ContractionsSplitOffCaseInsensitively) {
  // cl100k_base: a token boundary falls right before the apostrophe, whatever the case.
  for (std::string_view text : {"don't", "DON'T", "we'VE", "they'Re", "I'LL"}) {
    const Ids ids = cl100k_->Encode(text);
    std::string prefix;
    bool split = false;
    for (uint32_t id : ids) {
      prefix += cl100k_->Decode(std::span(&id, 1));
      split |= prefix == text.substr(0, text.find('\''));
    }
    EXPECT_TRUE(split) << text;
  }
  // o200k_base keeps the contraction with its word.
  EXPECT_EQ(o200k_->Count("don't"), 1u);
}

TEST_F(TargetTokenizerTest, RoundTrip) {
  const std::vector<std::string> texts = {
      "Hello, world! How's it going?\n\n",
      "def f(x):\n    return x * 2  # double\n",
      "{\"a\": [1, 2.5, null], \"b\": \"\\u00e9\"}",
      "Ünïcödé ßtraße 東京 서울 القاهرة 🇯🇵👨‍👩‍👧",
      "\t\r\n \u00a0\u3000\u2028 mixed   whitespace \n\n\n",
      std::string(5000, 'a'),
      "e\u0301\u0301\u0301 combining",
  };
  for (const auto& tokenizer : {cl100k_, o200k_}) {
    for (const std::string& text : texts) {
      const Ids ids = tokenizer->Encode(text);
      EXPECT_EQ(tokenizer->Decode(ids), text);
      EXPECT_EQ(tokenizer->Count(text), ids.size());
    }
  }
}

TEST_F(TargetTokenizerTest, InvalidUtf8IsRepairedNotFatal) {
  // Each maximal ill-formed subsequence becomes one U+FFFD, as when Node decodes the bytes.
  EXPECT_EQ(cl100k_->Encode("\xff"), cl100k_->Encode("\uFFFD"));
  EXPECT_THAT(cl100k_->Encode("\xff"), ElementsAre(5809));
  EXPECT_THAT(o200k_->Encode("\xff"
                             "a\xe4\xbd"),
              ElementsAre(109908, 3251));
  EXPECT_EQ(ReplaceInvalidUtf8("\xe4\xbd"), "\uFFFD");                            // truncated
  EXPECT_EQ(ReplaceInvalidUtf8("\xe0\x80\x80"), "\uFFFD\uFFFD\uFFFD");            // overlong
  EXPECT_EQ(ReplaceInvalidUtf8("\xed\xa0\x80"), "\uFFFD\uFFFD\uFFFD");            // surrogate
  EXPECT_EQ(ReplaceInvalidUtf8("\xf4\x90\x80\x80"), "\uFFFD\uFFFD\uFFFD\uFFFD");  // > U+10FFFF
  EXPECT_EQ(ReplaceInvalidUtf8("a\xf0\x9f\x98"
                               "b"),
            "a\uFFFD"
            "b");
  EXPECT_EQ(ReplaceInvalidUtf8("ok \xc3\xa9"), "ok \xc3\xa9");
  EXPECT_TRUE(IsValidUtf8("plain ascii text, long enough for the word loop"));
  EXPECT_FALSE(IsValidUtf8("plain ascii text, long enough\x80 for the word loop"));

  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(1 + rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    for (const auto& tokenizer : {cl100k_, o200k_}) {
      const Ids ids = tokenizer->Encode(bytes);
      EXPECT_EQ(tokenizer->Count(bytes), ids.size());
      EXPECT_EQ(tokenizer->Decode(ids), ReplaceInvalidUtf8(bytes));
    }
  }
}

TEST_F(TargetTokenizerTest, ConcurrentEncodingGivesTheSameIds) {
  std::string text;
  for (int i = 0; i < 200; ++i) text += "Sentence number " + std::to_string(i) + " says café 😀.\n";
  const Ids expected = o200k_->Encode(text);
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) mismatches[t] += o200k_->Encode(text) != expected;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

TEST_F(TargetTokenizerTest, NameAndVocabulary) {
  EXPECT_EQ(cl100k_->name(), "cl100k_base");
  EXPECT_EQ(o200k_->name(), "o200k_base");
  EXPECT_EQ(cl100k_->vocab_size(), 100256u);
  EXPECT_EQ(o200k_->vocab_size(), 199998u);
  auto again = GetTargetTokenizer("cl100k_base");
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->get(), cl100k_.get());
}

TEST(EncodingForModelTest, PicksO200kForNewModels) {
  for (const char* model : {"gpt-4o", "gpt-4o-mini", "gpt-4.1-nano", "o1", "o1-mini", "o3-mini",
                            "o4-mini", "gpt-5", "chatgpt-4o-latest", "openai/gpt-4o"}) {
    EXPECT_EQ(TargetTokenizer::EncodingForModel(model), "o200k_base") << model;
  }
  for (const char* model : {"gpt-4", "gpt-4-turbo", "gpt-3.5-turbo", "text-embedding-3-small",
                            "claude-3-5-sonnet", "llama3", ""}) {
    EXPECT_EQ(TargetTokenizer::EncodingForModel(model), "cl100k_base") << model;
  }
}

TEST(TargetTokenizerLoadTest, Errors) {
  EXPECT_THAT(TargetTokenizer::Load("../etc/passwd"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TargetTokenizer::Load(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(TargetTokenizer::Load("cl100k_base", TempPath("no-such-dir")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("bootstrap")));

  WriteFile(TempPath("notjson.json"), "{ not json");
  EXPECT_THAT(TargetTokenizer::Load("notjson", ::testing::TempDir()),
              StatusIs(absl::StatusCode::kDataLoss));
  WriteFile(TempPath("nopat.json"), R"({"bpe_ranks": "! 0 YQ=="})");
  EXPECT_THAT(TargetTokenizer::Load("nopat", ::testing::TempDir()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("pat_str")));

  // A complete but tiny encoding: every byte, plus "ab" and "abc"; a pattern that does not compile.
  std::string ranks = "! 0";
  for (int b = 0; b < 256; ++b) {
    static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    ranks += std::string(" ") + kB64[b >> 2] + kB64[(b & 3) << 4] + "==";
  }
  ranks += "\n! 256 YWI= YWJj";
  WriteFile(TempPath("badpat.json"),
            Json{{"pat_str", "(unclosed"}, {"special_tokens", Json::object()}, {"bpe_ranks", ranks}}
                .dump());
  EXPECT_THAT(TargetTokenizer::Load("badpat", ::testing::TempDir()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not compile")));

  WriteFile(
      TempPath("tiny.json"),
      Json{{"pat_str", R"(\S+|\s+)"}, {"special_tokens", {{"<|end|>", 300}}}, {"bpe_ranks", ranks}}
          .dump());
  auto tiny = TargetTokenizer::Load("tiny", ::testing::TempDir());
  ASSERT_THAT(tiny, IsOk());
  EXPECT_THAT((*tiny)->Encode("abcab abx"), ElementsAre(257, 256, 32, 256, 'x'));
  const Ids with_special = {257, 300, 999};
  EXPECT_EQ((*tiny)->Decode(with_special), "abc<|end|>");
}

TEST(TargetTokenizerLoadTest, ExplicitDirectoryAndEnvironment) {
  const std::string npm_dir = SourceDir() + "/tests/e2e/node_modules/tiktoken/encoders";
  auto loaded = TargetTokenizer::Load("cl100k_base", npm_dir);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_THAT((*loaded)->Encode("hello world"), ElementsAre(15339, 1917));

  setenv("TERSE_TIKTOKEN_DIR", TempPath("nowhere").c_str(), 1);
  EXPECT_THAT(TargetTokenizer::Load("cl100k_base"), StatusIs(absl::StatusCode::kNotFound));
  setenv("TERSE_TIKTOKEN_DIR", npm_dir.c_str(), 1);
  EXPECT_THAT(TargetTokenizer::Load("cl100k_base"), IsOk());
  unsetenv("TERSE_TIKTOKEN_DIR");
}

TEST(RewriteTiktokenPatternTest, SpellsOutWhiteSpaceAndAddsUnicode16Categories) {
  auto rewritten = RewriteTiktokenPattern(R"(\s+(?!\S)|[^\s\p{L}]+|[]\s])", true);
  ASSERT_THAT(rewritten, IsOk());
  EXPECT_THAT(*rewritten, ::testing::Not(HasSubstr("\\s")));
  EXPECT_THAT(*rewritten, ::testing::StartsWith("[\\x{9}-\\x{D}\\x{20}\\x{85}"));
  EXPECT_THAT(*rewritten, HasSubstr("+(?![^\\x{9}-\\x{D}"));
  EXPECT_THAT(*rewritten, HasSubstr("\\x{3000}\\p{L}\\x{1C89}"));
  EXPECT_THAT(*rewritten, HasSubstr("|[]\\x{9}"));  // a leading ']' is a literal
  // Categories gain what Unicode 15 and 16 added (Debian's PCRE2 knows Unicode 14).
  auto categories = RewriteTiktokenPattern(R"(\p{L}+|[^\p{N}\p{Lt}]|\pM|\P{Lo})", true);
  ASSERT_THAT(categories, IsOk());
  EXPECT_THAT(*categories, ::testing::StartsWith("[\\p{L}\\x{1C89}-\\x{1C8A}"));
  EXPECT_THAT(*categories, HasSubstr("\\x{31350}-\\x{323AF}]+|[^\\p{N}\\x{10D40}-"));
  EXPECT_THAT(*categories, HasSubstr("\\x{1E5F1}-\\x{1E5FA}\\p{Lt}]|[\\pM\\x{897}"));
  EXPECT_THAT(*categories, HasSubstr("|[^\\p{Lo}\\x{105C0}-"));
  EXPECT_THAT(RewriteTiktokenPattern(R"(\p{L)", true),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RewriteTiktokenPattern(R"(a\p)", true), StatusIs(absl::StatusCode::kInvalidArgument));

  // Without the flag, categories stay as they are.
  auto plain = RewriteTiktokenPattern(R"(\p{L}+|[^\p{N}])", false);
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(*plain, R"(\p{L}+|[^\p{N}])");
  // Only text with such code points needs the longer pattern.
  EXPECT_FALSE(HasCodePointsNewerThanPcre2("plain ASCII, café, 中文, 😀, \u0896"));
  EXPECT_TRUE(HasCodePointsNewerThanPcre2("a \u0897"));
  EXPECT_TRUE(HasCodePointsNewerThanPcre2("\U00011F04"));
  EXPECT_TRUE(HasCodePointsNewerThanPcre2("x\U000323AF"));
  EXPECT_FALSE(HasCodePointsNewerThanPcre2("x\U000323B0"));

  // An escaped backslash followed by 's' is no \s.
  auto escaped = RewriteTiktokenPattern(R"(a\\s)", true);
  ASSERT_THAT(escaped, IsOk());
  EXPECT_EQ(*escaped, R"(a\\s)");
  EXPECT_THAT(RewriteTiktokenPattern(R"([\S])", true),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// BpeRanks on its own: parsing errors and the agreement of the two merge loops.
std::string TinyRanks(const std::string& extra) {
  static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string ranks = "! 0";
  for (int b = 0; b < 256; ++b)
    ranks += std::string(" ") + kB64[b >> 2] + kB64[(b & 3) << 4] + "==";
  return ranks + extra;
}

TEST(BpeRanksTest, ParseErrors) {
  EXPECT_THAT(BpeRanks::Parse(""), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(BpeRanks::Parse("? 0 YQ=="), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(BpeRanks::Parse("! x YQ=="), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(BpeRanks::Parse(TinyRanks(" Y$==")), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(BpeRanks::Parse(TinyRanks("\n! 256 YWI= YWI=")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("twice")));
  EXPECT_THAT(BpeRanks::Parse(TinyRanks("\n! 255 YWI=")),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("twice")));
  EXPECT_THAT(BpeRanks::Parse("! 0 YQ== Yg=="),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("no rank")));
  // Gaps between lines are allowed (p50k_base has one).
  auto gappy = BpeRanks::Parse(TinyRanks("\n! 300 YWI="));
  ASSERT_THAT(gappy, IsOk());
  EXPECT_EQ(gappy->size(), 301u);
  EXPECT_EQ(gappy->Find("ab"), 300u);
  EXPECT_EQ(gappy->Bytes(280), "");
  EXPECT_EQ(gappy->Find("abc"), BpeRanks::kNone);
}

TEST(BpeRanksTest, MergeTakesTheLowestRankLeftmostFirst) {
  // "aa" ranks below "ab": "aab" is "aa" + "b"; in "aaaa" the leftmost "aa" merges first, and
  // then "aa" (256) beats "aaa" (258).
  auto ranks = BpeRanks::Parse(TinyRanks("\n! 256 YWE= YWI= YWFh"));  // aa, ab, aaa
  ASSERT_THAT(ranks, IsOk());
  for (bool heap : {false, true}) {
    Ids aab, aaaa, abab;
    auto merge = [&](std::string_view piece, Ids& ids) {
      heap ? ranks->AppendMergedHeap(piece, ids) : ranks->AppendMergedQuadratic(piece, ids);
    };
    merge("aab", aab);
    merge("aaaa", aaaa);
    merge("abab", abab);
    EXPECT_THAT(aab, ElementsAre(256, 'b')) << heap;
    EXPECT_THAT(aaaa, ElementsAre(256, 256)) << heap;
    EXPECT_THAT(abab, ElementsAre(257, 257)) << heap;
  }
}

TEST(BpeRanksTest, HeapAndQuadraticMergesAgree) {
  const std::string path =
      SourceDir() + "/tests/e2e/node_modules/tiktoken/encoders/o200k_base.json";
  const Json json = Json::parse(ReadFile(path), nullptr, false);
  ASSERT_TRUE(json.is_object()) << path;
  auto ranks = BpeRanks::Parse(json["bpe_ranks"].get<std::string>());
  ASSERT_THAT(ranks, IsOk());
  std::mt19937 rng(11);
  const std::vector<std::string> alphabets = {"ab", "abcdefghijklmnopqrstuvwxyz", " \n\t",
                                              "0123456789", "\xe4\xb8\xad\xf0\x9f\x98\x80"};
  for (int i = 0; i < 400; ++i) {
    const std::string& alphabet = alphabets[i % alphabets.size()];
    std::string piece(1 + rng() % 300, ' ');
    for (char& c : piece) c = alphabet[rng() % alphabet.size()];
    Ids quadratic, heap;
    ranks->AppendMergedQuadratic(piece, quadratic);
    ranks->AppendMergedHeap(piece, heap);
    EXPECT_EQ(quadratic, heap) << piece;
    Ids appended;
    ranks->AppendPiece(piece, appended);
    EXPECT_EQ(ranks->CountPiece(piece), appended.size());
  }
}

// The end-to-end comparison: tests/e2e/tiktoken_compare.mjs encodes its corpus with npm tiktoken
// (or $TERSE_TIKTOKEN_EXPECTATIONS names a file it wrote before); every id must match.
std::string DescribeMismatch(const std::string& text, const Ids& want, const Ids& got) {
  size_t at = 0;
  while (at < want.size() && at < got.size() && want[at] == got[at]) ++at;
  auto window = [&](const Ids& ids) {
    std::string s;
    for (size_t i = at >= 3 ? at - 3 : 0; i < ids.size() && i < at + 4; ++i) {
      s += std::to_string(ids[i]) + " ";
    }
    return s;
  };
  std::string excerpt = Json(ReplaceInvalidUtf8(text.substr(0, 120))).dump();
  return "text " + excerpt + " (" + std::to_string(text.size()) +
         " bytes): first difference at id " + std::to_string(at) + " of " +
         std::to_string(want.size()) + "; npm: " + window(want) + "| terse: " + window(got);
}

std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

TEST_F(TargetTokenizerTest, IdenticalToNpmTiktokenOnCorpus) {
  std::string path;
  bool generated = false;
  if (const char* env = std::getenv("TERSE_TIKTOKEN_EXPECTATIONS"); env != nullptr && *env) {
    path = env;
  } else {
    ASSERT_EQ(std::system("command -v node >/dev/null 2>&1"), 0)
        << "node is not installed: run tools/bootstrap.sh (the comparison needs node and the npm "
           "tiktoken package in tests/e2e/node_modules)";
    path = TempPath("tiktoken_expectations_" + std::to_string(getpid()) + ".jsonl");
    const std::string command =
        "cd '" + SourceDir() + "' && node tests/e2e/tiktoken_compare.mjs --out '" + path + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << "failed: " << command;
    generated = true;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot read " << path;
  size_t cases = 0, mismatches = 0, bytes = 0;
  std::string line;
  while (std::getline(in, line)) {
    const Json record = Json::parse(line, nullptr, false);
    ASSERT_TRUE(record.is_object()) << "bad line " << cases + 1 << " in " << path;
    const std::string text = record.contains("hex") ? FromHex(record["hex"].get<std::string>())
                                                    : record["text"].get<std::string>();
    ++cases;
    bytes += text.size();
    for (const auto& tokenizer : {cl100k_, o200k_}) {
      const Ids want = record[tokenizer->name()].get<Ids>();
      const Ids got = tokenizer->Encode(text);
      const size_t count = tokenizer->Count(text);
      if (got != want || count != want.size()) {
        if (++mismatches <= 10) {
          ADD_FAILURE() << tokenizer->name() << " case " << cases << ": "
                        << DescribeMismatch(text, want, got) << " count " << count;
        }
      }
    }
  }
  if (generated) std::remove(path.c_str());
  EXPECT_EQ(mismatches, 0u) << "of " << cases << " cases";
  EXPECT_GT(cases, 5000u);
  std::printf("[          ] compared %zu texts (%zu bytes) with npm tiktoken in 2 encodings\n",
              cases, bytes);
}

TEST(Utf8Test, AcceptsValidRejectsMalformed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("ab\xE4\xB8"));        // truncated
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
}

}  // namespace
}  // namespace terse::compressor
