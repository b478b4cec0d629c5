// ParseJson and DumpJson against nlohmann's parser and serializer: on every text and value here,
// including random ones, the two must give the same value and the same bytes.
#include "json/codec.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "json/bytes.h"
#include "json/scan.h"
#include "tests/json/random_edit.h"

namespace terse::json {
namespace {

std::string NlohmannDump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The same value with the same types all the way down (Json's == takes 1 and 1.0 as equal).
void ExpectSameValue(const Json& ours, const Json& theirs, const std::string& text) {
  ASSERT_EQ(ours.type(), theirs.type()) << "text: " << text;
  ASSERT_EQ(ours, theirs) << "text: " << text;
  ASSERT_EQ(NlohmannDump(ours), NlohmannDump(theirs)) << "text: " << text;
  if (ours.is_number_float()) {
    // -0.0 and 0.0 compare equal; their bits tell them apart.
    const double a = ours.get<double>(), b = theirs.get<double>();
    ASSERT_EQ(std::signbit(a), std::signbit(b)) << "text: " << text;
  }
  if (ours.is_structured()) {
    ASSERT_EQ(ours.size(), theirs.size()) << "text: " << text;
    auto a = ours.begin();
    auto b = theirs.begin();
    for (; a != ours.end(); ++a, ++b) {
      if (ours.is_object()) {
        ASSERT_EQ(a.key(), b.key()) << "text: " << text;
      }
      ExpectSameValue(*a, *b, text);
    }
  }
}

// ParseJson(text) against Json::parse(text), for texts within the depth limit.
void ExpectParsesAsNlohmann(const std::string& text) {
  std::optional<Json> ours = ParseJson(text);
  Json theirs = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  ASSERT_EQ(ours.has_value(), !theirs.is_discarded()) << "text: " << text;
  if (ours.has_value()) ExpectSameValue(*ours, theirs, text);
}

// Each width of the special-byte mask marks the same bytes as the byte-at-a-time one, for every
// kind of byte at every position of the 64 (the processor's widest is what the parser uses).
TEST(JsonBytesTest, EveryWidthOfTheSpecialByteMaskAgrees) {
  const std::string kinds = std::string("a~ \x7f\"\\\x01\x1f\x80\xbf\xc3\xff", 12);
  std::mt19937 rng(7);
  char text[64];
  for (int round = 0; round < 20000; ++round) {
    for (char& c : text) c = kinds[rng() % kinds.size()];
    if (round < 64 * static_cast<int>(kinds.size())) {  // first, each kind alone at each place
      std::memset(text, 'a', sizeof text);
      text[round % 64] = kinds[static_cast<size_t>(round / 64)];
    }
    const uint64_t want = bytes::SpecialBitsBytewise(text);
#ifdef __SSE2__
    ASSERT_EQ(bytes::SpecialBitsSse2(text), want) << round;
#endif
#ifdef TERSE_JSON_AVX2
    if (bytes::kCpuHasAvx2) {
      ASSERT_EQ(bytes::SpecialBitsAvx2(text), want) << round;
    }
#endif
    ASSERT_EQ(bytes::SpecialBits(text), want) << round;
  }
}

TEST(JsonTextTest, ParsesWhatTheParserParses) {
  const std::vector<std::string> texts = {
      "{}",
      "[]",
      " { } ",
      "\t[ ]\r\n",
      "0",
      "-0",
      "7",
      "-7",
      "1.5e3",
      "-1E-2",
      "1e+9",
      "1.0",
      "-0.0",
      "0.1",
      "1e308",
      "2.2250738585072014e-308",
      "4.9e-324",
      "1e-400",
      "-1e-400",
      "18446744073709551615",
      "18446744073709551616",
      "9223372036854775807",
      "-9223372036854775808",
      "-9223372036854775809",
      "123456789012345678901234567890",
      "true",
      "false",
      "null",
      "\"\"",
      "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
      "\"\\u00e9\\uD83D\\uDE00\\u0000\\u001f\\u007F\\uFFFF\\uabcd\"",
      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
      "\"a long string of more than sixteen bytes, \\\"escapes\\\" in the middle and at the "
      "end\\n\"",
      "{\"a\":[1,{\"b\":null}],\"c\":\"d\"}",
      "{\"a\":1,\"b\":2,\"a\":3}",
      "{\"k\":{\"x\":1},\"k\":[2]}",
      "{\"\":0,\"\\u0041\":1,\"A\":2}",
      "\xef\xbb\xbf{\"bom\":true}",
      "[1,-2.5e-3,true,false,null,\"x\",{\"a\":[{}]},[[[]]]]",
      " [ 1 , 2 ] ",
      "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
      "\"temperature\":0.7,\"max_tokens\":100,\"stream\":true}",
      // Refused by both.
      "",
      " ",
      "{",
      "[1,]",
      "{\"a\"}",
      "01",
      "1.",
      ".5",
      "+1",
      "tru",
      "NaN",
      "1e999",
      "\"\\x\"",
      "\"\\uD83D\"",
      "\"\xc3\"",
      "\"\xed\xa0\x80\"",
      "{} {}",
      "\"a\nb\"",
  };
  for (const std::string& text : texts) ExpectParsesAsNlohmann(text);
}

TEST(JsonTextTest, RefusesTextNestedDeeperThanTheLimit) {
  auto nested = [](size_t depth) {
    return std::string(depth, '[') + "1" + std::string(depth, ']');
  };
  ASSERT_TRUE(ParseJson(nested(kMaxJsonDepth)).has_value());
  EXPECT_EQ(ParseJson(nested(kMaxJsonDepth))->dump(), nested(kMaxJsonDepth));
  EXPECT_FALSE(ParseJson(nested(kMaxJsonDepth + 1)).has_value());
  EXPECT_FALSE(IsValidJson(nested(100000)));
  // Why it was refused, for the error message: the depth, not the syntax.
  EXPECT_TRUE(NestsTooDeep(nested(kMaxJsonDepth + 1)));
  EXPECT_TRUE(NestsTooDeep(nested(100000)));
  EXPECT_FALSE(NestsTooDeep(nested(kMaxJsonDepth)));
  EXPECT_FALSE(NestsTooDeep("[1,]"));
  std::string objects;
  for (size_t i = 0; i <= kMaxJsonDepth; ++i) objects += "{\"a\":";
  objects += "1" + std::string(kMaxJsonDepth + 1, '}');
  EXPECT_FALSE(ParseJson(objects).has_value());
}

// The parser checks a string in the same pass that copies it, in runs between the special bytes
// it finds 64 bytes at a time: an escape, a non-ASCII character, a control character or a bad
// byte is found and judged wherever it falls in a string, across those windows too, and so is a
// text cut off anywhere.
TEST(JsonTextTest, ChecksEveryByteOfAStringWhereverItFalls) {
  const std::vector<std::string> pieces = {
      "\\n", "\\\"", "\\u00e9", "\\uD83D\\uDE00", "\xc3\xa9", "\xf0\x9f\x98\x80",
      // Refused.
      "\x01", "\\x", "\\uD83D", "\\uDE00", "\\u12", "\xc3", "\xff", "\xed\xa0\x80", "\n"};
  for (size_t length : {0, 1, 15, 16, 17, 62, 63, 64, 65, 66, 127, 128, 129, 190}) {
    for (size_t at = 0; at <= length; ++at) {
      for (const std::string& piece : pieces) {
        std::string content(length, 'a');
        content.insert(at, piece);
        const std::string text = "{\"k\":\"" + content + "\",\"n\":[1]}";
        ExpectParsesAsNlohmann(text);
        if (HasFailure()) return;
        if (at % 16 == 0) {
          for (size_t cut = 0; cut < text.size(); cut += 7) {
            ExpectParsesAsNlohmann(text.substr(0, cut));
            if (HasFailure()) return;
          }
        }
      }
    }
  }
  // A byte order mark must be whole.
  ExpectParsesAsNlohmann("\xef\xbb\xbf[1]");
  EXPECT_FALSE(ParseJson("\xef\xbb[1]").has_value());
  EXPECT_FALSE(ParseJson("\xef").has_value());
}

// An object's members go in without a walk through those before them (past 16, an index of
// their keys finds a repeat), and a repeated key keeps Json::parse's rule: its first place, its
// last value, wherever the two fall.
TEST(JsonTextTest, ObjectsOfManyMembersParseAsTheParserDoes) {
  std::mt19937 rng(11);
  for (size_t members : {15, 16, 17, 40, 300, 2000}) {
    for (int round = 0; round < 4; ++round) {
      std::string text = "{";
      for (size_t i = 0; i < members; ++i) {
        // Every fifth key repeats an earlier one; some keys are spelled with an escape.
        const size_t name = i % 5 == 4 ? rng() % i : i;
        if (i > 0) text += ',';
        text += (name % 7 == 0 ? "\"\\u006b" : "\"k") + std::to_string(name) +
                "\":" + std::to_string(i);
      }
      text += "}";
      ExpectParsesAsNlohmann(text);
      if (HasFailure()) return;
    }
  }
  // Many distinct members, all kept in order.
  std::string text = "{";
  for (int i = 0; i < 100000; ++i) text += (i ? ",\"m" : "\"m") + std::to_string(i) + "\":0";
  text += "}";
  std::optional<Json> parsed = ParseJson(text);
  ASSERT_TRUE(parsed.has_value());
  ASSERT_EQ(parsed->size(), 100000u);
  EXPECT_EQ(parsed->begin().key(), "m0");
  EXPECT_EQ((--parsed->end()).key(), "m99999");
}

// A random value of every kind, with strings of random bytes (valid UTF-8 and not), control
// characters and numbers of every type.
class RandomValues {
 public:
  explicit RandomValues(uint32_t seed) : rng_(seed) {}

  Json Value(int depth = 0) {
    const uint32_t kind = rng_() % (depth > 4 ? 6 : 8);
    switch (kind) {
      case 0:
        return nullptr;
      case 1:
        return rng_() % 2 == 0;
      case 2:
        return String();
      case 3:
        return Integer();
      case 4:
        return Double();
      case 5:
        return static_cast<uint64_t>(rng_()) << 32 | rng_();
      case 6: {
        Json object = Json::object();
        const int n = static_cast<int>(rng_() % 5);
        for (int i = 0; i < n; ++i) object[String()] = Value(depth + 1);
        return object;
      }
      default: {
        Json array = Json::array();
        const int n = static_cast<int>(rng_() % 5);
        for (int i = 0; i < n; ++i) array.push_back(Value(depth + 1));
        return array;
      }
    }
  }

  std::string String() {
    static const std::vector<std::string> pieces = {
        "a", "Hello, world", " ", "\"", "\\", "/", "\b", "\f", "\n", "\r", "\t",
        std::string(1, '\0'), "\x01", "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
        "\xf0\x9f\x98\x80", "\xef\xbf\xbf",
        // Not UTF-8: nlohmann's replacement rules apply.
        "\xc3", "\xff", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xe2\x82",
        "a run of plain printable ASCII that is longer than sixteen bytes"};
    const int n = static_cast<int>(rng_() % 6);
    std::string s;
    for (int i = 0; i < n; ++i) s += pieces[rng_() % pieces.size()];
    return s;
  }

  Json Integer() {
    static const std::vector<int64_t> edges = {0, -1, 1, std::numeric_limits<int64_t>::min(),
                                               std::numeric_limits<int64_t>::max()};
    if (rng_() % 4 == 0) return edges[rng_() % edges.size()];
    return static_cast<int64_t>(static_cast<uint64_t>(rng_()) << 32 | rng_()) >> (rng_() % 63);
  }

  Json Double() {
    static const std::vector<double> edges = {0.0,
                                              -0.0,
                                              1.0,
                                              0.1,
                                              1e20,
                                              1e21,
                                              1e-7,
                                              123456.789,
                                              std::numeric_limits<double>::max(),
                                              std::numeric_limits<double>::min(),
                                              std::numeric_limits<double>::denorm_min(),
                                              std::numeric_limits<double>::infinity(),
                                              std::numeric_limits<double>::quiet_NaN()};
    if (rng_() % 3 == 0) return edges[rng_() % edges.size()];
    const uint64_t bits = static_cast<uint64_t>(rng_()) << 32 | rng_();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }

  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
};

TEST(JsonTextTest, DumpsWhatTheSerializerDumps) {
  RandomValues random(2024);
  for (int i = 0; i < 20000; ++i) {
    const Json value = random.Value();
    const std::string theirs = NlohmannDump(value);
    ASSERT_EQ(DumpJson(value), theirs);
    std::string appended = "prefix";
    AppendJson(value, appended);
    ASSERT_EQ(appended, "prefix" + theirs);
  }
  EXPECT_EQ(DumpJson(Json::binary({1, 2})), NlohmannDump(Json::binary({1, 2})));
}

// What the serializer writes parses back, by both parsers, to the same value; and random edits of
// it are refused or accepted by both alike.
TEST(JsonTextTest, ParsesRandomAndMutatedTextsAsTheParserDoes) {
  RandomValues random(7);
  const std::string alphabet = "{}[],:\"\\/ 0123456789-+.eEtrufalsn\x01\n\t\xc3\xa9\xff";
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text = NlohmannDump(random.Value());
    if (i % 2 == 1 && !text.empty()) RandomEdit(text, random.rng(), alphabet);
    ExpectParsesAsNlohmann(text);
    if (HasFailure()) return;
    accepted += ParseJson(text).has_value();
  }
  EXPECT_GT(accepted, 10000);
  EXPECT_LT(accepted, 20000);
}

}  // namespace
}  // namespace terse::json
