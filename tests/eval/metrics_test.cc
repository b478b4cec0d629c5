#include "eval/metrics.h"

#include "compressor/target_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace terse::eval {
namespace {

TEST(MetricsTest, CountWholeMatchesOnlyWholeNumbersAndNames) {
  EXPECT_EQ(CountWhole("paid 36 dollars, not 360 or 1.36 or 36.5", "36"), 1u);
  EXPECT_EQ(CountWhole("36, then 36.", "36"), 2u);
  EXPECT_EQ(CountWhole("2,000 and 12,000 and 2,0001", "2,000"), 1u);
  EXPECT_EQ(CountWhole("Idris Bramwell and Idris Bramwells", "Idris Bramwell"), 1u);
  EXPECT_EQ(CountWhole("cost $2.4 million.", "$2.4 million"), 1u);
  EXPECT_EQ(CountWhole("anything", ""), 0u);
}

TEST(MetricsTest, FoldSpaceFoldsRunsAndTrims) {
  EXPECT_EQ(FoldSpace("  a \n\n b\tc  "), "a b c");
  EXPECT_EQ(FoldSpace(""), "");
}

class MetricsScoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = compressor::GetTargetTokenizer("cl100k_base");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    tokenizer_ = *loaded;
  }
  std::shared_ptr<const compressor::TargetTokenizer> tokenizer_;
};

TEST_F(MetricsScoreTest, ScoresWhatSurvived) {
  Item item;
  item.family = Family::kFewShotMath;
  item.instruction = "Solve it.";
  item.context = {"Question: Ann has 3 bags of 12 apples.\nSo 3 * 12 = 36.\nThe answer is 36",
                  "Question: Bo walks 5 km a day for 7 days.\nSo 5 * 7 = 35.\nThe answer is 35"};
  item.question = "Cy has 4 boxes of 6 pens. How many pens?";
  item.answer = "";
  item.demo_answers = {"36", "35"};
  item.numbers = {"3", "12", "36", "5 km", "7", "5", "35"};
  item.entities = {};

  CompressedPrompt all{OriginalPrompt(item), {item.context[0], item.context[1]}};
  ItemScore s = ScoreItem(item, all, *tokenizer_);
  EXPECT_EQ(s.original_tokens, s.compressed_tokens);
  EXPECT_TRUE(s.question_intact);
  EXPECT_FALSE(s.has_answer);
  EXPECT_EQ(s.demo_answers_kept, 2u);
  EXPECT_EQ(s.numbers_kept, s.numbers);

  // The second demonstration lost its answer; 36 still stands in the first.
  CompressedPrompt cut{
      "Solve it.\n\nAnn 3 bags 12 apples 36 answer 36\n\nBo walks 5 km\n\n" + item.question,
      {"Ann 3 bags 12 apples 36 answer 36", "Bo walks 5 km"}};
  s = ScoreItem(item, cut, *tokenizer_);
  EXPECT_EQ(s.demo_answers, 2u);
  EXPECT_EQ(s.demo_answers_kept, 1u);
  EXPECT_TRUE(s.question_intact);
  EXPECT_LT(s.compressed_tokens, s.original_tokens);
  EXPECT_LT(s.numbers_kept, s.numbers);

  CompressedPrompt lost_question{"Solve it. Cy has boxes of 6 pens. How many pens?", {}};
  EXPECT_FALSE(ScoreItem(item, lost_question, *tokenizer_).question_intact);
}

TEST_F(MetricsScoreTest, AnAnswerCutInHalfIsNotKept) {
  Item item;
  item.family = Family::kMultiDocQa;
  item.context = {"Document [1] The survey was led by Idris Bramwell in 1987.",
                  "Document [2] Other things."};
  item.question = "Who led the survey?";
  item.answer = "Idris Bramwell";
  item.answer_kind = AnswerKind::kPerson;
  item.entities = {"Idris Bramwell"};
  EXPECT_FALSE(ScoreItem(item, {"survey led Bramwell 1987 Who led the survey?", {}}, *tokenizer_)
                   .answer_kept);
  ItemScore s =
      ScoreItem(item, {"survey led by Idris\nBramwell 1987 Who led the survey?", {}}, *tokenizer_);
  EXPECT_TRUE(s.answer_kept);
  EXPECT_EQ(s.entities_kept, 1u);
}

}  // namespace
}  // namespace terse::eval
