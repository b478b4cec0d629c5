#include "compressor/lingua_budget.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "compressor/lingua_run.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace terse::compressor::lingua {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;

TEST(SpreadBudgetTest, ProportionalCappedAndExact) {
  const std::vector<double> costs = {100, 100, 10};
  EXPECT_THAT(SpreadBudget(costs, std::vector<double>{1, 1, 1}, 105),
              ElementsAre(DoubleNear(50, 1e-9), DoubleNear(50, 1e-9), DoubleNear(5, 1e-9)));
  // A heavy weight on the small item caps it at its size; the rest is shared by the others.
  const auto t = SpreadBudget(costs, std::vector<double>{1, 1, 100}, 60);
  EXPECT_THAT(t, ElementsAre(DoubleNear(25, 1e-9), DoubleNear(25, 1e-9), DoubleNear(10, 1e-9)));
  // More budget than material: everything whole.
  EXPECT_THAT(SpreadBudget(costs, std::vector<double>{1, 1, 1}, 500), ElementsAre(100, 100, 10));
}

TEST(ReorderItemsTest, Modes) {
  const std::vector<size_t> ranked = {3, 0, 4, 1, 2};
  EXPECT_THAT(ReorderItems(ranked, Reorder::kOriginal), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_THAT(ReorderItems(ranked, Reorder::kRank), ElementsAre(3, 0, 4, 1, 2));
  // Best at the front, second best at the back, and so on inwards.
  EXPECT_THAT(ReorderItems(ranked, Reorder::kTwoStage), ElementsAre(3, 4, 2, 1, 0));
}

BudgetInput TenItems() {
  BudgetInput in;
  in.instruction_tokens = 100;
  in.question_tokens = 20;
  in.instruction_rate = 0.85;
  in.question_rate = 0.9;
  in.separator_tokens = 0;
  for (int i = 0; i < 10; ++i) {
    in.item_tokens.push_back(100);
    in.item_scores.push_back(i);  // item 9 is the best
  }
  in.item_forced.assign(10, false);
  return in;
}

TEST(PlanBudgetTest, KeepsItemsInRankOrderUntilKTimesTheBudget) {
  BudgetInput in = TenItems();
  in.total_target = 85 + 18 + 150;  // item budget 150: keep 300 with k = 2
  const BudgetPlan plan = PlanBudget(in);
  EXPECT_DOUBLE_EQ(plan.instruction_target, 85);
  EXPECT_DOUBLE_EQ(plan.question_target, 18);
  EXPECT_THAT(plan.order, ElementsAre(7, 8, 9));
  EXPECT_NEAR(plan.item_budget, 150, 1e-9);
  EXPECT_NEAR(plan.item_target[9], 50, 1e-9);
  EXPECT_EQ(plan.rank[9], 0u);
  EXPECT_EQ(plan.rank[0], 9u);
}

TEST(PlanBudgetTest, ForcedItemsAreKeptFirst) {
  BudgetInput in = TenItems();
  in.item_forced[0] = true;
  in.total_target = 85 + 18 + 100;  // 2 x 100: room for the forced one and the best one
  const BudgetPlan plan = PlanBudget(in);
  EXPECT_THAT(plan.order, ElementsAre(0, 9));
}

TEST(PlanBudgetTest, SurplusFlowsBackToInstructionAndQuestion) {
  BudgetInput in = TenItems();
  in.item_tokens.assign(1, 50);
  in.item_scores.assign(1, 0);
  in.item_forced.assign(1, false);
  in.total_target = 85 + 18 + 50 + 10;  // 10 more than the one item needs
  const BudgetPlan plan = PlanBudget(in);
  EXPECT_NEAR(plan.item_budget, 50, 1e-9);
  // 10 tokens shared by what instruction (15) and question (2) gave up.
  EXPECT_NEAR(plan.instruction_target, 85 + 10 * 15.0 / 17.0, 1e-9);
  EXPECT_NEAR(plan.question_target, 18 + 10 * 2.0 / 17.0, 1e-9);
}

TEST(PlanBudgetTest, TinyBudgetDropsItemsButInstructionAndQuestionKeepTheirRates) {
  BudgetInput in = TenItems();
  in.total_target = 20;
  const BudgetPlan plan = PlanBudget(in);
  EXPECT_TRUE(plan.order.empty());
  EXPECT_DOUBLE_EQ(plan.instruction_target, 85);
  EXPECT_DOUBLE_EQ(plan.question_target, 18);
}

TEST(PlanBudgetTest, DynamicRatioFavoursHigherRanks) {
  BudgetInput in = TenItems();
  in.total_target = 85 + 18 + 150;
  in.dynamic_ratio = 0.3;
  const BudgetPlan plan = PlanBudget(in);
  EXPECT_NEAR(plan.item_budget, 150, 1e-9);
  EXPECT_GT(plan.item_target[9], plan.item_target[8]);
  EXPECT_GT(plan.item_target[8], plan.item_target[7]);
  EXPECT_NEAR(plan.item_target[9] / plan.item_target[7], 1.3 / 0.7, 1e-9);
}

TEST(PlanBudgetTest, SeparatorsAreCharged) {
  BudgetInput in = TenItems();
  in.separator_tokens = 1;
  in.total_target = 85 + 18 + 150;
  const BudgetPlan plan = PlanBudget(in);
  // Five parts (instruction, three items, question): four joins.
  EXPECT_NEAR(plan.item_budget, 146, 1e-9);
}

TEST(PlanBudgetTest, FixedTokensCountKTimesAndFloorTheirItemsTarget) {
  BudgetInput in = TenItems();
  in.item_fixed_tokens.assign(10, 100);  // every item all JSON: the fine step cannot cut it
  in.item_tokens[7] = in.item_fixed_tokens[7] = 40;
  in.total_target = 85 + 18 + 150;
  // k = 2 would keep 300 tokens of cuttable text; of uncuttable, what fits the budget's 150:
  // the best item, then not the second (200 > 150), but the smaller third.
  EXPECT_THAT(PlanBudget(in).order, ElementsAre(7, 9));
  in.item_tokens[7] = 100;
  // Half fixed: an item weighs 150 and its target never falls below its fixed 50.
  in.item_fixed_tokens.assign(10, 50);
  in.dynamic_ratio = 0.3;
  const BudgetPlan plan = PlanBudget(in);
  EXPECT_THAT(plan.order, ElementsAre(8, 9));
  EXPECT_NEAR(plan.item_budget, 150, 1e-9);
  EXPECT_GE(plan.item_target[8], 50);
  EXPECT_NEAR(plan.item_target[9] - 50, 1.3 / 0.7 * (plan.item_target[8] - 50), 1e-9);
}

TEST(DigitScaleTest, ADigitPieceWeighsAsMuchAsAWordPieceOfTheSameRelativeSurprise) {
  // Guessing blindly among 8000 pieces costs ln 8000 nats; among ten digits, ln 10.
  EXPECT_NEAR(DigitScale(8000) * std::log(10.0), std::log(8000.0), 1e-9);
  EXPECT_NEAR(DigitScale(8000), 3.903, 1e-3);
  EXPECT_EQ(DigitScale(4), 1.0);  // vocabularies too small to hold the digits: no scaling
}

TEST(KeepBestTest, HighestScoresWithinTheShare) {
  const std::vector<double> scores = {5, 1, 4, 3, 2};
  const std::vector<double> costs = {1, 1, 2, 1, 1};
  std::vector<bool> kept(5, false);
  const std::vector<size_t> all = {0, 1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(KeepBest(all, scores, costs, 4, &kept), 4);
  EXPECT_THAT(kept, ElementsAre(true, false, true, true, false));
}

TEST(KeepBestTest, SkipsWhatDoesNotFitAndTakesSmallerOnes) {
  const std::vector<double> scores = {5, 4, 3};
  const std::vector<double> costs = {1, 3, 1};
  std::vector<bool> kept(3, false);
  const std::vector<size_t> all = {0, 1, 2};
  EXPECT_DOUBLE_EQ(KeepBest(all, scores, costs, 2, &kept), 2);
  EXPECT_THAT(kept, ElementsAre(true, false, true));
}

TEST(KeepBestTest, TiesGoToTheEarlierUnit) {
  const std::vector<double> scores = {1, 1, 1};
  const std::vector<double> costs = {1, 1, 1};
  std::vector<bool> kept(3, false);
  const std::vector<size_t> all = {0, 1, 2};
  KeepBest(all, scores, costs, 2, &kept);
  EXPECT_THAT(kept, ElementsAre(true, true, false));
}

// A count that is additive except for a fixed overhead, like joined text.
size_t CountKept(const std::vector<bool>& kept, const std::vector<double>& costs, size_t extra) {
  double c = extra;
  for (size_t i = 0; i < kept.size(); ++i) c += kept[i] ? costs[i] : 0;
  return static_cast<size_t>(c);
}

TEST(CorrectToTargetTest, DropsLowestScoresToLandExactly) {
  std::vector<double> costs;
  std::vector<Adjustable> units;
  for (size_t i = 0; i < 20; ++i) {
    costs.push_back(1 + i % 3);
    units.push_back({i, static_cast<double>(i), costs.back(), 0, -1});
  }
  std::vector<bool> kept(20, true);
  const auto count = [&](const std::vector<bool>& k) { return CountKept(k, costs, 3); };
  const size_t got = CorrectToTarget(units, {}, {}, 25, count, &kept);
  EXPECT_EQ(got, 25u);
  EXPECT_EQ(count(kept), 25u);
  EXPECT_TRUE(kept[19]);  // the best survives
}

TEST(CorrectToTargetTest, AddsHighestScoresWhenShort) {
  std::vector<double> costs(10, 2);
  costs[3] = 1;
  std::vector<Adjustable> units;
  for (size_t i = 0; i < 10; ++i) units.push_back({i, static_cast<double>(i), costs[i], 0, -1});
  std::vector<bool> kept(10, false);
  const auto count = [&](const std::vector<bool>& k) { return CountKept(k, costs, 0); };
  EXPECT_EQ(CorrectToTarget(units, {}, {}, 7, count, &kept), 7u);
  EXPECT_TRUE(kept[9]);
  EXPECT_TRUE(kept[3]);  // the only odd-sized unit makes 7 reachable
}

TEST(CorrectToTargetTest, HigherTiersAreNotDroppedBelowTheirFloor) {
  std::vector<double> costs(6, 1);
  std::vector<Adjustable> units = {
      {0, 0, 1, 0, -1}, {1, 1, 1, 0, -1},                                    // item units
      {2, 0, 1, 1, 0},  {3, 0, 1, 1, 0},  {4, 0, 1, 1, 0}, {5, 0, 1, 1, 0},  // question, floor 3
  };
  std::vector<bool> kept(6, true);
  const std::vector<double> floor = {3};
  const std::vector<double> group_kept = {4};
  const auto count = [&](const std::vector<bool>& k) { return CountKept(k, costs, 0); };
  // Target 1 is out of reach: both item units go, then one question unit, no more.
  EXPECT_EQ(CorrectToTarget(units, floor, group_kept, 1, count, &kept), 3u);
  EXPECT_THAT(kept, ElementsAre(false, false, true, true, true, false));
}

TEST(CorrectToTargetTest, NonAdditiveCountsConverge) {
  // Every third kept unit is "free" (merges with its neighbour), so estimates overshoot.
  std::vector<Adjustable> units;
  for (size_t i = 0; i < 30; ++i) units.push_back({i, static_cast<double>(i % 7), 1, 0, -1});
  std::vector<bool> kept(30, true);
  const auto count = [](const std::vector<bool>& k) {
    size_t n = 0, run = 0;
    for (bool b : k) {
      if (!b) continue;
      ++run;
      if (run % 3 != 0) ++n;
    }
    return n;
  };
  EXPECT_EQ(CorrectToTarget(units, {}, {}, 9, count, &kept), 9u);
}

}  // namespace
}  // namespace terse::compressor::lingua
