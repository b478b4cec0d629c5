// LmTokenizer against the Python SentencePiece reference: fixtures written by
// tools/make_tokenizer_fixture.py hold texts and the ids Python gave for them.
#include "compressor/lm_tokenizer.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "base/json.h"
#include "compressor/language_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace terse::compressor {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kTinyModel[] = "tests/fixtures/tiny-lm";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::unique_ptr<LmTokenizer> LoadOrDie(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<LmTokenizer>> tok = LmTokenizer::Load(dir);
  EXPECT_THAT(tok.status(), IsOk());
  return tok.ok() ? std::move(*tok) : nullptr;
}

// `s` with every U+2581 written as a space.
std::string SpacesFor2581(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, 3) == "\xE2\x96\x81") {
      out += ' ';
      i += 3;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// Whether `piece` spells `input`: U+2581 in a piece stands for a space (and, as in
// SentencePiece, also for a literal U+2581 of the input); "<0xXX>" is one byte.
bool PieceSpells(std::string_view piece, std::string_view input) {
  if (piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece.back() == '>') {
    return input.size() == 1 && static_cast<unsigned char>(input[0]) ==
                                    std::stoi(std::string(piece.substr(3, 2)), nullptr, 16);
  }
  return SpacesFor2581(piece) == SpacesFor2581(input);
}

class LmTokenizerFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LmTokenizerFixtureTest, MatchesSentencePieceIdsAndCoversInput) {
  const std::string path = "tests/fixtures/tokenizer/" + GetParam();
  const Json fixture = Json::parse(ReadFile(path), nullptr, false);
  ASSERT_FALSE(fixture.is_discarded()) << path;
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(fixture.at("model_dir").get<std::string>());
  ASSERT_NE(tok, nullptr);
  int checked = 0;
  for (const Json& c : fixture.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    absl::StatusOr<std::vector<LmToken>> got = tok->Encode(text);
    ASSERT_THAT(got.status(), IsOk()) << text;
    std::vector<int32_t> ids;
    uint32_t next = 0;
    for (const LmToken& t : *got) {
      ids.push_back(t.id);
      // Tokens tile the input in order, and each one's bytes are what its piece spells.
      EXPECT_EQ(t.begin, next) << text;
      EXPECT_LT(t.begin, t.end) << text;
      EXPECT_TRUE(
          PieceSpells(tok->piece(t.id), std::string_view(text).substr(t.begin, t.end - t.begin)))
          << "piece " << tok->piece(t.id) << " in: " << text;
      next = t.end;
    }
    EXPECT_EQ(next, text.size()) << text;
    EXPECT_THAT(ids, ElementsAreArray(want)) << "text: " << text;
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

INSTANTIATE_TEST_SUITE_P(Models, LmTokenizerFixtureTest,
                         ::testing::Values("tiny-lm.json", "terse-small-en.json"),
                         [](const auto& info) {
                           std::string name = info.param.substr(0, info.param.find('.'));
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(LmTokenizerTest, ExposesSpecialIds) {
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(kTinyModel);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 3);
  EXPECT_EQ(tok->piece(1), "<s>");
  EXPECT_EQ(tok->piece(-1), "");
  EXPECT_EQ(tok->piece(512), "");
}

TEST(LmTokenizerTest, EmptyTextHasNoTokens) {
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(kTinyModel);
  ASSERT_NE(tok, nullptr);
  absl::StatusOr<std::vector<LmToken>> got = tok->Encode("");
  ASSERT_THAT(got.status(), IsOk());
  EXPECT_THAT(*got, IsEmpty());
}

TEST(LmTokenizerTest, UnknownCharacterFallsBackToOneTokenPerByte) {
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(kTinyModel);
  ASSERT_NE(tok, nullptr);
  // U+10348 (4 bytes) is not in the tiny vocabulary.
  absl::StatusOr<std::vector<LmToken>> got = tok->Encode("\xF0\x90\x8D\x88");
  ASSERT_THAT(got.status(), IsOk());
  ASSERT_EQ(got->size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*got)[i].begin, i);
    EXPECT_EQ((*got)[i].end, i + 1);
  }
  EXPECT_EQ(tok->piece((*got)[0].id), "<0xF0>");
  EXPECT_EQ(tok->piece((*got)[3].id), "<0x88>");
}

TEST(LmTokenizerTest, SpaceOffsetsPointAtTheInputSpace) {
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(kTinyModel);
  ASSERT_NE(tok, nullptr);
  absl::StatusOr<std::vector<LmToken>> got = tok->Encode("a b");
  ASSERT_THAT(got.status(), IsOk());
  ASSERT_FALSE(got->empty());
  EXPECT_EQ(got->back().end, 3u);
}

TEST(LmTokenizerTest, RejectsInvalidUtf8WithItsOffset) {
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(kTinyModel);
  ASSERT_NE(tok, nullptr);
  EXPECT_THAT(tok->Encode("ab\xFF").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8 at byte 2")));
  EXPECT_THAT(tok->Encode("truncated \xC3").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  EXPECT_THAT(tok->Encode("overlong \xC0\xAF").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tok->Encode("surrogate \xED\xA0\x80").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tok->Encode("too big \xF4\x90\x80\x80").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(tok->Encode("lone continuation \x80").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(LmTokenizerTest, LoadErrors) {
  EXPECT_THAT(LmTokenizer::Load("tests/fixtures/no-such-model").status(),
              StatusIs(absl::StatusCode::kNotFound));
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / "lm_tokenizer_bad_json";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "{not json";
  EXPECT_THAT(LmTokenizer::Load(dir.string()).status(), StatusIs(absl::StatusCode::kDataLoss));
  std::ofstream(dir / "tokenizer.json", std::ios::trunc)
      << R"({"format": "terse-unigram-v1", "normalization": "nmt_nfkc"})";
  EXPECT_THAT(LmTokenizer::Load(dir.string()).status(), StatusIs(absl::StatusCode::kUnimplemented));
}

// The whole scoring path against Python: LmTokenizer gives the ids Python gave, and the C++
// LanguageModel's self-information matches Python's log-probabilities (fixtures written by
// tools/make_logprob_fixture.py).
class LmLogprobFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LmLogprobFixtureTest, TokenizerAndModelAgreeWithPython) {
  const std::string path = "tests/fixtures/logprobs/" + GetParam();
  const Json fixture = Json::parse(ReadFile(path), nullptr, false);
  ASSERT_FALSE(fixture.is_discarded()) << path;
  const std::string model_dir = fixture.at("model_dir").get<std::string>();
  std::unique_ptr<LmTokenizer> tok = LoadOrDie(model_dir);
  ASSERT_NE(tok, nullptr);
  absl::StatusOr<std::vector<LmToken>> tokens = tok->Encode(fixture.at("text").get<std::string>());
  ASSERT_THAT(tokens.status(), IsOk());
  std::vector<int32_t> ids;
  for (const LmToken& t : *tokens) ids.push_back(t.id);
  const std::vector<int32_t> want = fixture.at("ids").get<std::vector<int32_t>>();
  ASSERT_EQ(want.front(), tok->bos_id());
  ASSERT_THAT(ids, ElementsAreArray(want.begin() + 1, want.end()));

  LanguageModelOptions options;
  options.model_dir = model_dir;
  options.threads = 1;
  absl::StatusOr<std::unique_ptr<LanguageModel>> lm = LanguageModel::Load(options);
  ASSERT_THAT(lm.status(), IsOk());
  absl::StatusOr<std::vector<std::vector<float>>> scores = (*lm)->ScoreSequences({ids});
  ASSERT_THAT(scores.status(), IsOk());
  const std::vector<double> logprobs = fixture.at("logprobs").get<std::vector<double>>();
  ASSERT_EQ(scores->size(), 1u);
  ASSERT_EQ((*scores)[0].size(), logprobs.size());
  for (size_t i = 0; i < logprobs.size(); ++i) {
    EXPECT_NEAR((*scores)[0][i], -logprobs[i], 1e-3) << "token " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, LmLogprobFixtureTest,
                         ::testing::Values("tiny-lm.json", "terse-small-en.json"),
                         [](const auto& info) {
                           std::string name = info.param.substr(0, info.param.find('.'));
                           for (char& ch : name) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace terse::compressor
