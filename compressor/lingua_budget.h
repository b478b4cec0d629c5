// The budget arithmetic of LLMLingua/LongLLMLingua, apart from any model: how many target tokens
// each part of a prompt may keep, which context items survive the coarse step and in what order,
// which units a segment keeps, and the final correction that lands the exact token count.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

namespace terse::compressor::lingua {

enum class Reorder { kOriginal, kRank, kTwoStage };

// All sizes are in target tokens.
struct BudgetInput {
  double total_target = 0;  // what the whole compressed prompt may hold
  double instruction_tokens = 0;
  double question_tokens = 0;
  double instruction_rate = 1.0;
  double question_rate = 1.0;
  double separator_tokens = 1;  // cost of one join between two parts
  std::vector<double> item_tokens;
  std::vector<double> item_fixed_tokens;  // of item_tokens, what the fine step cannot drop
  std::vector<double> item_scores;  // higher = kept first; ties go to the lower index
  std::vector<bool> item_forced;    // kept whatever the budget
  double k = 2;                     // keep items until k times the item budget is used
  double dynamic_ratio = 0;         // per-item rate spread over ranks, +-dynamic_ratio relative
  Reorder reorder = Reorder::kOriginal;
};

struct BudgetPlan {
  std::vector<size_t> order;        // kept items in output order
  std::vector<size_t> rank;         // per item: its place when sorted by score (0 best)
  std::vector<bool> kept;           // per item
  std::vector<double> item_target;  // per item; 0 for dropped items
  double instruction_target = 0;
  double question_target = 0;
  double item_budget = 0;  // sum of item_target
};

// Instruction and question get their own rates first; the rest (minus separators) is the item
// budget. Items are kept in rank order while less than k times the budget is used (forced items
// first), so the fine step always has at least the budget to choose from; an item's fixed tokens
// count k times, since the fine step cannot cut them, and an item whose fixed tokens would take
// the kept ones past the budget is passed over (all-JSON items fill the budget, not k times it). When the kept items
// hold less than the budget, the surplus flows back to instruction and question (up to whole).
// With dynamic_ratio d the rank-r item of n gets rate proportional to 1 + d(1 - 2r/(n-1)),
// normalised so the item targets add up to the budget (no item above its own size).
BudgetPlan PlanBudget(const BudgetInput& input);

// The dynamic-ratio weight of each of n ranks (best first): 1 + d(1 - 2r/(n-1)), never negative.
std::vector<double> RankWeights(size_t n, double dynamic_ratio);

// Places `ranked` (best first) for output: kOriginal sorts by index, kRank keeps rank order,
// kTwoStage puts the best at both ends (1st, 3rd, 5th... from the front; 2nd, 4th... from the
// back) against "lost in the middle".
std::vector<size_t> ReorderItems(std::vector<size_t> ranked, Reorder reorder);

// Targets proportional to weight * cost, capped at cost, adding up to min(budget, sum of costs).
std::vector<double> SpreadBudget(std::span<const double> costs, std::span<const double> weights,
                                 double budget);

// Keeps, among `candidates` (indices into scores/costs), the highest-scoring ones (ties: lower
// index) while the kept cost stays within `share` give or take half a unit, so rounding errors
// do not all fall one way. Sets (*kept)[i]; returns the cost kept.
double KeepBest(std::span<const size_t> candidates, std::span<const double> scores,
                std::span<const double> costs, double share, std::vector<bool>* kept);

// One unit the final correction may flip.
struct Adjustable {
  size_t unit = 0;   // index into the caller's kept vector
  double score = 0;  // higher = more worth keeping
  double cost = 1;   // estimated target tokens
  int tier = 0;      // lower tiers are adjusted first
  int group = -1;    // for tier > 0: the group whose floor limits drops
};

// Lands the exact count: measures count(*kept), then drops the lowest-scoring kept units (or
// adds the highest-scoring dropped ones) whose estimated costs make up the difference, measures
// again, up to `max_rounds` times; a unit flips at most twice (there and back). A tier > 0 unit is
// dropped only while its group's estimated kept cost stays at or above group_floor[group]. Leaves
// *kept at the best count seen (closest to target; under rather than over on a tie) and returns it.
size_t CorrectToTarget(std::span<const Adjustable> units, std::span<const double> group_floor,
                       std::span<const double> group_kept, size_t target,
                       const std::function<size_t(const std::vector<bool>&)>& count,
                       std::vector<bool>* kept, int max_rounds = 12);

}  // namespace terse::compressor::lingua
