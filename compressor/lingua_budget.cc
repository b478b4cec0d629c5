// The budget: the arithmetic of lingua_budget.h, apart from any model, and a Run's use of it
// (lingua_run.h): the targets of its unit groups, and the correction that lands the exact count.
#include "compressor/lingua_budget.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>
#include <unordered_map>

#include "compressor/lingua_run.h"

namespace terse::compressor::lingua {

std::vector<double> SpreadBudget(std::span<const double> costs, std::span<const double> weights,
                                 double budget) {
  const size_t n = costs.size();
  std::vector<double> out(n, 0.0);
  std::vector<bool> capped(n, false);
  budget = std::max(0.0, budget);
  // Water-filling: items whose share would exceed their size are capped at it and the rest is
  // spread again; at most n rounds.
  for (size_t round = 0; round <= n; ++round) {
    double free_budget = budget;
    double weight_sum = 0;
    for (size_t i = 0; i < n; ++i) {
      if (capped[i]) {
        free_budget -= costs[i];
      } else {
        weight_sum += std::max(0.0, weights[i]) * costs[i];
      }
    }
    const double lambda = weight_sum > 0 ? std::max(0.0, free_budget) / weight_sum : 0.0;
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      if (capped[i]) {
        out[i] = costs[i];
        continue;
      }
      out[i] = lambda * std::max(0.0, weights[i]) * costs[i];
      if (out[i] > costs[i]) {
        capped[i] = true;
        changed = true;
      }
    }
    if (!changed) break;
  }
  for (size_t i = 0; i < n; ++i) out[i] = std::min(out[i], costs[i]);
  return out;
}

std::vector<double> RankWeights(size_t n, double dynamic_ratio) {
  std::vector<double> w(n, 1.0);
  for (size_t r = 0; n > 1 && r < n; ++r) {
    const double spread = 1.0 - 2.0 * static_cast<double>(r) / static_cast<double>(n - 1);
    w[r] = std::max(0.0, 1.0 + dynamic_ratio * spread);
  }
  return w;
}

std::vector<size_t> ReorderItems(std::vector<size_t> ranked, Reorder reorder) {
  switch (reorder) {
    case Reorder::kOriginal:
      std::sort(ranked.begin(), ranked.end());
      return ranked;
    case Reorder::kRank:
      return ranked;
    case Reorder::kTwoStage: {
      std::vector<size_t> front, back;
      for (size_t r = 0; r < ranked.size(); ++r) (r % 2 == 0 ? front : back).push_back(ranked[r]);
      front.insert(front.end(), back.rbegin(), back.rend());
      return front;
    }
  }
  return ranked;
}

BudgetPlan PlanBudget(const BudgetInput& in) {
  const size_t n = in.item_tokens.size();
  BudgetPlan plan;
  plan.rank.assign(n, 0);
  plan.kept.assign(n, false);
  plan.item_target.assign(n, 0.0);

  const auto clamp01 = [](double r) { return std::clamp(r, 0.0, 1.0); };
  plan.instruction_target = clamp01(in.instruction_rate) * in.instruction_tokens;
  plan.question_target = clamp01(in.question_rate) * in.question_tokens;

  std::vector<size_t> by_score(n);
  std::iota(by_score.begin(), by_score.end(), 0);
  std::stable_sort(by_score.begin(), by_score.end(),
                   [&](size_t a, size_t b) { return in.item_scores[a] > in.item_scores[b]; });
  for (size_t r = 0; r < n; ++r) plan.rank[by_score[r]] = r;

  const int fixed_parts = (in.instruction_tokens > 0) + (in.question_tokens > 0);
  // Separators are charged for the parts that will be present: the fixed ones plus one per
  // kept item (estimated first with one item, refined below).
  const auto separators = [&](size_t items) {
    const double parts = fixed_parts + static_cast<double>(items);
    return parts > 1 ? (parts - 1) * in.separator_tokens : 0.0;
  };
  double budget =
      in.total_target - plan.instruction_target - plan.question_target - separators(n > 0 ? 1 : 0);

  // Coarse selection: forced items, then by rank while under k * budget.
  double used = 0;
  std::vector<size_t> selected;  // in rank order
  for (size_t i : by_score) {
    if (i < in.item_forced.size() && in.item_forced[i]) {
      plan.kept[i] = true;
      used += in.item_tokens[i];
    }
  }
  // What the kept items will need once the fine step has cut them by up to k: their fixed
  // tokens stay whole.
  const auto fixed = [&](size_t i) {
    return i < in.item_fixed_tokens.size() ? std::min(in.item_fixed_tokens[i], in.item_tokens[i])
                                           : 0.0;
  };
  double weighed = 0;
  double fixed_kept = 0;
  for (size_t i : by_score) {
    if (plan.kept[i]) {
      weighed += in.item_tokens[i] + (in.k - 1) * fixed(i);
      fixed_kept += fixed(i);
    }
  }
  // An item whose uncuttable tokens no longer fit the budget is passed over for smaller ones.
  for (size_t i : by_score) {
    if (plan.kept[i] || budget <= 0 || weighed >= in.k * budget) continue;
    if (fixed(i) > 0 && fixed_kept + fixed(i) > budget && weighed > 0) continue;
    plan.kept[i] = true;
    used += in.item_tokens[i];
    weighed += in.item_tokens[i] + (in.k - 1) * fixed(i);
    fixed_kept += fixed(i);
  }
  for (size_t i : by_score) {
    if (plan.kept[i]) selected.push_back(i);
  }
  if (selected.size() > 1) budget -= separators(selected.size()) - separators(1);
  budget = std::max(0.0, budget);

  // Surplus flows back to instruction and question, in proportion to what they gave up.
  if (used < budget) {
    double surplus = budget - used;
    budget = used;
    const double room_i = in.instruction_tokens - plan.instruction_target;
    const double room_q = in.question_tokens - plan.question_target;
    const double room = room_i + room_q;
    if (room > 0) {
      const double give = std::min(surplus, room);
      plan.instruction_target += give * room_i / room;
      plan.question_target += give * room_q / room;
    }
  }

  // Per-item targets, optionally spread over ranks.
  // Each item's fixed tokens are its floor; the rest of the budget is spread over what the
  // fine step can cut.
  std::vector<double> elastic_costs;
  double fixed_total = 0;
  const size_t m = selected.size();
  for (size_t r = 0; r < m; ++r) {
    fixed_total += fixed(selected[r]);
    elastic_costs.push_back(in.item_tokens[selected[r]] - fixed(selected[r]));
  }
  const std::vector<double> weights = RankWeights(m, in.dynamic_ratio);
  const std::vector<double> targets =
      SpreadBudget(elastic_costs, weights, std::max(0.0, budget - fixed_total));
  plan.item_budget = 0;
  for (size_t r = 0; r < m; ++r) {
    plan.item_target[selected[r]] = fixed(selected[r]) + targets[r];
    plan.item_budget += plan.item_target[selected[r]];
  }
  plan.order = ReorderItems(selected, in.reorder);
  return plan;
}

double KeepBest(std::span<const size_t> candidates, std::span<const double> scores,
                std::span<const double> costs, double share, std::vector<bool>* kept) {
  std::vector<size_t> order(candidates.begin(), candidates.end());
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (scores[a] != scores[b]) return scores[a] > scores[b];
    return a < b;
  });
  double acc = 0;
  for (size_t i : order) {
    if (acc + 0.5 * costs[i] <= share) {
      (*kept)[i] = true;
      acc += costs[i];
    }
  }
  return acc;
}

size_t CorrectToTarget(std::span<const Adjustable> units, std::span<const double> group_floor,
                       std::span<const double> group_kept_in, size_t target,
                       const std::function<size_t(const std::vector<bool>&)>& count,
                       std::vector<bool>* kept, int max_rounds) {
  std::vector<double> group_kept(group_kept_in.begin(), group_kept_in.end());
  std::vector<int> flips(units.size(), 0);
  size_t current = count(*kept);
  std::vector<bool> best = *kept;
  size_t best_count = current;
  const auto better = [&](size_t a, size_t b) {  // is count a closer to target than b?
    const auto da = std::llabs(static_cast<long long>(a) - static_cast<long long>(target));
    const auto db = std::llabs(static_cast<long long>(b) - static_cast<long long>(target));
    return da < db || (da == db && a <= target && b > target);
  };

  std::vector<size_t> order(units.size());
  for (int round = 0; round < max_rounds && current != target; ++round) {
    const bool drop = current > target;
    const double need =
        drop ? static_cast<double>(current - target) : static_cast<double>(target - current);
    // Early rounds may overshoot by half a unit; later ones must fit, so the loop settles.
    const double slack = round < 2 ? 0.5 : 0.0;
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const Adjustable& x = units[a];
      const Adjustable& y = units[b];
      if (x.tier != y.tier) return x.tier < y.tier;
      if (x.score != y.score) return drop ? x.score < y.score : x.score > y.score;
      return drop ? x.unit > y.unit : x.unit < y.unit;
    });
    double moved = 0;
    bool any = false;
    for (size_t a : order) {
      if (moved >= need) break;
      const Adjustable& u = units[a];
      if (flips[a] >= 2 || (*kept)[u.unit] != drop) continue;
      if (moved + u.cost > need + slack * u.cost) continue;
      if (drop && u.tier > 0 && u.group >= 0 &&
          group_kept[u.group] - u.cost < group_floor[u.group] - 1e-9) {
        continue;
      }
      (*kept)[u.unit] = !drop;
      ++flips[a];
      if (u.group >= 0) group_kept[u.group] += drop ? -u.cost : u.cost;
      moved += u.cost;
      any = true;
    }
    if (!any) break;
    current = count(*kept);
    if (better(current, best_count)) {
      best = *kept;
      best_count = current;
    }
  }
  *kept = std::move(best);
  return best_count;
}

// Targets of a part's groups, from the part's target in exact target tokens.
void Run::SetGroups(Part& p, double part_target) {
  const double scale = p.exact > 0 ? p.estimate / static_cast<double>(p.exact) : 1.0;
  const double target = part_target * scale;
  const size_t n = p.layout.units.size();
  // Group per rate span present, then the default group.
  std::unordered_map<int32_t, int> span_group;
  double forced = 0;
  for (size_t u = 0; u < n; ++u) {
    if (!p.active[u]) continue;
    const Unit& x = p.layout.units[u];
    if (p.Forced(u)) {
      forced += p.cost[u];
      continue;
    }
    if (x.span >= 0 && !span_group.count(x.span)) {
      span_group[x.span] = static_cast<int>(groups_.size());
      groups_.emplace_back();
    }
  }
  const int base = static_cast<int>(groups_.size());
  groups_.emplace_back();
  for (size_t u = 0; u < n; ++u) {
    if (!p.active[u] || p.Forced(u)) continue;
    const Unit& x = p.layout.units[u];
    p.group[u] = x.span >= 0 ? span_group[x.span] : base;
    groups_[p.group[u]].elastic += p.cost[u];
  }
  double spans_target = 0;
  for (const auto& [span, g] : span_group) {
    Group& grp = groups_[g];
    grp.target = std::min(grp.elastic, p.marked.spans[span].rate * grp.elastic);
    spans_target += grp.target;
  }
  Group& b = groups_[base];
  b.target = budgeted_ ? std::clamp(target - forced - spans_target, 0.0, b.elastic) : b.elastic;
  for (size_t g = base - span_group.size(); g <= static_cast<size_t>(base); ++g) {
    groups_[g].remaining_target = groups_[g].target;
    groups_[g].remaining_cost = groups_[g].elastic;
  }
}

// Target tokens of the output with `flat` (the units of the output parts, in order) as the kept
// set.
size_t Run::CountOutput(const std::vector<bool>& flat) {
  std::vector<std::string> texts;
  size_t offset = 0;
  for (size_t part : OutputParts()) {
    const Part& p = parts_[part];
    const size_t n = p.layout.units.size();
    std::vector<bool> kept(n);
    for (size_t u = 0; u < n; ++u) {
      kept[u] = p.active[u] && flat[offset + u];
    }
    offset += n;
    texts.push_back(Assemble(p.marked.text, p.layout.units, kept));
  }
  std::vector<std::string_view> views(texts.begin(), texts.end());
  return target_.Count(Join(views));
}

// Lands the exact count (CorrectToTarget) by flipping scored units of the output: the items' own
// units first, then those of the instruction, the question and rate spans, down to no less than
// their group's target.
void Run::Correct(size_t target) {
  std::vector<bool> flat;
  std::vector<Adjustable> adjustable;
  std::vector<double> floor(groups_.size()), group_kept(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    floor[g] = groups_[g].target;
    group_kept[g] = groups_[g].kept;
  }
  for (size_t part : OutputParts()) {
    const Part& p = parts_[part];
    for (size_t u = 0; u < p.layout.units.size(); ++u) {
      const bool kept = p.active[u] && p.kept[u];
      // Units of groups kept whole were never scored; they stay as they are.
      if (p.active[u] && !p.Forced(u) && p.group[u] >= 0 && p.scored[u]) {
        Adjustable a;
        a.unit = flat.size();
        a.score = p.score[u];
        a.cost = p.cost[u];
        const bool item_default = p.kind == PartKind::kItem && p.layout.units[u].span < 0;
        a.tier = item_default ? 0 : 1;
        a.group = item_default ? -1 : p.group[u];
        adjustable.push_back(a);
      }
      flat.push_back(kept);
    }
  }
  const auto count = [&](const std::vector<bool>& k) { return CountOutput(k); };
  CorrectToTarget(adjustable, floor, group_kept, target, count, &flat);
  size_t offset = 0;
  for (size_t part : OutputParts()) {
    Part& p = parts_[part];
    for (size_t u = 0; u < p.layout.units.size(); ++u) p.kept[u] = flat[offset + u];
    offset += p.layout.units.size();
  }
}

}  // namespace terse::compressor::lingua
