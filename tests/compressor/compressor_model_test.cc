// The method with the shipped model (models/terse-small-en): rate accuracy over lengths and
// rates, structure, question-aware ranking on templated multi-document prompts, determinism and
// concurrency. Skipped when the model is not there.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "compressor/compressor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/compressor/compressor_testing.h"
#include "tests/support/status_matchers.h"

namespace terse::compressor {
namespace {

using ::terse::compressor::testing::Cl100k;
using ::terse::compressor::testing::Prose;
using ::terse::compressor::testing::Tolerance;
using ::terse::testing::IsOk;
using ::testing::HasSubstr;

std::string ModelDir() {
  const char* env = std::getenv("TERSE_SHIPPED_MODEL");  // to try another model directory
  return env != nullptr ? env : testing::ShippedModelDir();
}

class ShippedModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(ModelDir() + "/model.pt")) return;
    LanguageModelOptions o;
    o.model_dir = ModelDir();
    o.device = "cpu";
    o.threads = 2;
    auto c = Compressor::Load(o, 0);
    ASSERT_THAT(c, IsOk());
    compressor_ = c->release();
  }
  static void TearDownTestSuite() {
    delete compressor_;
    compressor_ = nullptr;
  }
  void SetUp() override {
    if (compressor_ == nullptr) GTEST_SKIP() << "no shipped model at " << ModelDir();
  }
  static Compressor* compressor_;
};
Compressor* ShippedModelTest::compressor_ = nullptr;

TEST_F(ShippedModelTest, RateAccuracyOverLengthsAndRates) {
  for (size_t tokens : {50, 500, 5000, 20000}) {
    const std::string text = Prose(tokens, static_cast<uint32_t>(tokens) + 1);
    for (double rate : {0.5, 0.33, 0.2, 0.1}) {
      if (tokens == 20000 && (rate == 0.33 || rate == 0.2)) continue;  // the slowest cases
      SCOPED_TRACE(::testing::Message() << tokens << " tokens at rate " << rate);
      CompressOptions o;
      o.rate = rate;
      auto r = compressor_->CompressText(text, o);
      ASSERT_THAT(r, IsOk());
      EXPECT_NEAR(r->rate, rate, Tolerance(rate))
          << r->compressed_tokens << " of " << r->origin_tokens;
    }
  }
}

TEST_F(ShippedModelTest, KeepSpansInstructionAndQuestionSurvive) {
  Prompt p;
  p.instruction = "You are a helpful assistant. Use only the documents.";
  const std::string kept = "Invoice 7731-B is due on 2025-03-14 (EUR 1,250.00).";
  p.context = {Prose(400, 5), Prose(300, 6) + " <terse:keep>" + kept + "</terse:keep>",
               Prose(400, 7)};
  p.question = "When is invoice 7731-B due?";
  CompressOptions o;
  o.rate = 0.15;
  o.instruction_rate = 1.0;
  o.question_rate = 1.0;
  o.forced_items = {1};
  auto r = compressor_->Compress(p, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->instruction, p.instruction);
  EXPECT_EQ(r->question, p.question);
  EXPECT_THAT(r->prompt, HasSubstr(kept));
  EXPECT_NEAR(r->rate, 0.15, 0.03);
}

// Templated documents about different towns; the question asks about one of them. Ranking by
// how well each document predicts the question must keep the one that answers it.
TEST_F(ShippedModelTest, QuestionAwareRankingKeepsTheAnswerDocument) {
  const std::vector<std::string> towns = {"Arlen",     "Brisport", "Calder",    "Dunmore",
                                          "Elsworth",  "Farrow",   "Glenhaven", "Holloway",
                                          "Ivybridge", "Kestrel"};
  const std::vector<std::string> mayors = {
      "Margaret Olsen", "Thomas Reed", "Ana Kowalski", "Peter Lang",  "Ruth Adeyemi",
      "Carlos Mendes",  "Helen Park",  "Samuel Byrne", "Ingrid Dahl", "Victor Moreau"};
  const std::vector<std::string> goods = {"wool",   "copper", "cider", "glass", "timber",
                                          "cheese", "salt",   "rope",  "paper", "honey"};
  int kept_first = 0;
  for (size_t target = 0; target < towns.size(); target += 3) {
    Prompt p;
    p.instruction = "Answer the question from the documents.";
    for (size_t i = 0; i < towns.size(); ++i) {
      p.context.push_back("Document " + std::to_string(i + 1) + ". " + towns[i] +
                          " is a small town by the river. It is known for its " + goods[i] +
                          ", which traders carry to the coast every spring. The mayor of " +
                          towns[i] + " is " + mayors[i] + ", who was elected in " +
                          std::to_string(1990 + i) + ". " + Prose(120, 40 + i));
    }
    p.question = "Who is the mayor of " + towns[target] + "?";
    CompressOptions o;
    o.rate = 0.2;
    o.rank = RankMethod::kQuestion;
    o.reorder = Reorder::kRank;
    auto r = compressor_->Compress(p, o);
    ASSERT_THAT(r, IsOk());
    bool kept = false;
    for (const auto& item : r->context) kept = kept || (item.kept && item.original_index == target);
    EXPECT_TRUE(kept) << "document " << target << " about " << towns[target] << " was dropped";
    kept_first += r->context[0].kept && r->context[0].original_index == target;
  }
  EXPECT_GE(kept_first, 3) << "the answer document should usually rank first";
}

TEST_F(ShippedModelTest, DeterministicUnderConcurrency) {
  std::vector<std::string> texts;
  for (int i = 0; i < 4; ++i) texts.push_back(Prose(800 + 300 * i, 60 + i));
  CompressOptions o;
  o.rate = 0.3;
  std::vector<std::string> expected;
  for (const auto& t : texts) {
    auto r = compressor_->CompressText(t, o);
    ASSERT_THAT(r, IsOk());
    expected.push_back(r->prompt);
  }
  testing::ExpectSameFromManyThreads(*compressor_, texts, o, expected, 8);
}

}  // namespace
}  // namespace terse::compressor
