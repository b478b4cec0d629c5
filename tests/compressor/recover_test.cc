#include <string>

#include "compressor/compressor.h"
#include "gtest/gtest.h"

namespace terse::compressor {
namespace {

TEST(RecoverAnswerTest, RestoresWordsCutFromAQuotedPhrase) {
  const std::string original =
      "The 2024 Summer Olympics were held in Paris, France, from 26 July to 11 August.";
  const std::string compressed = "2024 Olympics held Paris, France, 26 July 11 August.";
  EXPECT_EQ(RecoverAnswer(original, compressed, "They were the 2024 Olympics, in Paris."),
            "They were the 2024 Summer Olympics, in Paris.");
  EXPECT_EQ(RecoverAnswer(original, compressed, "From 26 July 11 August."),
            "From 26 July to 11 August.");
}

TEST(RecoverAnswerTest, LeavesUnrelatedOrAlreadyWholeTextAlone) {
  const std::string original = "alpha beta gamma delta";
  const std::string compressed = "alpha gamma delta";
  EXPECT_EQ(RecoverAnswer(original, compressed, "nothing in common here"),
            "nothing in common here");
  EXPECT_EQ(RecoverAnswer(original, compressed, "gamma delta!"), "gamma delta!");
  EXPECT_EQ(RecoverAnswer(original, compressed, ""), "");
  EXPECT_EQ(RecoverAnswer(original, compressed, "x alpha gamma y"), "x alpha beta gamma y");
}

TEST(RecoverAnswerTest, RefusesImplausiblyLongSpans) {
  std::string original = "start";
  for (int i = 0; i < 40; ++i) original += " filler";
  original += " end";
  EXPECT_EQ(RecoverAnswer(original, "start end", "start end"), "start end");
}

}  // namespace
}  // namespace terse::compressor
