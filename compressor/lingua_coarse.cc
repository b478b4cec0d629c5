// The coarse step: context items (documents, demonstrations, older turns) ranked by the small LM,
// by perplexity (LLMLingua) or by how well they predict the question (LongLLMLingua); which of
// them survive, in which order and with what target; and, when asked, whole sentences of the
// survivors dropped by rank.
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "compressor/lingua_run.h"

namespace terse::compressor::lingua {
namespace {

// LongLLMLingua's question suffix for question-conditioned ranking.
constexpr std::string_view kRestrict =
    " We can get the answer to this question in the given documents.";
// Question-conditioned ranks add this many nats times the IDF-weighted share of the question's
// words an item contains: a small LM that copies poorly still finds the document that names
// what the question asks about, and a good one still decides between documents that do.
constexpr double kOverlapWeight = 1.0;

std::vector<int32_t> IdsOf(const Part& p) {
  std::vector<int32_t> ids;
  ids.reserve(p.tokens.size());
  for (const LmToken& t : p.tokens) ids.push_back(t.id);
  return ids;
}

double Mean(const std::vector<float>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
}

// A sentence of a kept item, as a range of its units.
struct Sentence {
  size_t part;
  size_t begin, end;  // units
  double cost = 0;
  bool forced = false;
};

}  // namespace

absl::StatusOr<std::vector<double>> Run::SelectItems(size_t target) {
  std::vector<size_t> items;  // part indices of non-blank items
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    if (!parts_[1 + i].blank) items.push_back(1 + i);
  }
  std::vector<bool> forced_item(prompt_.context.size(), false);
  for (size_t i : o_.forced_items) forced_item[i] = true;
  BudgetInput in = CoarseBudgetInput(items, target, forced_item);
  in.item_scores.assign(items.size(), 0.0);
  if (NeedsRanking(items, in)) {
    ASSIGN_OR_RETURN(std::vector<double> scores, RankItems(items));
    for (size_t k = 0; k < items.size(); ++k) in.item_scores[k] = scores[items[k]];
  }

  std::vector<double> part_target(parts_.size(), 0.0);
  if (!budgeted_) {
    // Only rate spans apply: every item stays, placed as asked.
    std::vector<size_t> ranked;
    for (size_t k = 0; k < items.size(); ++k) ranked.push_back(k);
    std::stable_sort(ranked.begin(), ranked.end(),
                     [&](size_t a, size_t b) { return in.item_scores[a] > in.item_scores[b]; });
    for (size_t k : ReorderItems(ranked, o_.reorder)) item_order_.push_back(parts_[items[k]].item);
    return part_target;
  }
  const BudgetPlan plan = PlanBudget(in);
  for (size_t k = 0; k < items.size(); ++k) {
    parts_[items[k]].present = plan.kept[k];
    part_target[items[k]] = plan.item_target[k];
  }
  for (size_t k : plan.order) item_order_.push_back(parts_[items[k]].item);
  part_target[0] = plan.instruction_target;
  part_target.back() = plan.question_target;
  if (o_.sentence_filter && plan.item_budget > 0) {
    std::vector<size_t> kept_parts;
    for (size_t k : plan.order) {
      if (!forced_item[parts_[items[k]].item]) kept_parts.push_back(items[k]);
    }
    RETURN_IF_ERROR(FilterSentences(kept_parts, plan.item_budget));
    SpreadOverFilteredItems(items, plan, part_target);
  }
  return part_target;
}

BudgetInput Run::CoarseBudgetInput(const std::vector<size_t>& items, size_t target,
                                   const std::vector<bool>& forced_item) const {
  const Part& instruction = parts_[0];
  const Part& question = parts_.back();
  BudgetInput in;
  in.total_target = static_cast<double>(target);
  in.instruction_tokens = instruction.blank ? 0 : static_cast<double>(instruction.exact);
  in.question_tokens = question.blank ? 0 : static_cast<double>(question.exact);
  in.instruction_rate = o_.instruction_rate;
  in.question_rate = o_.question_rate;
  in.separator_tokens = static_cast<double>(target_.Count(kJoin));
  in.k = o_.context_budget_k;
  in.dynamic_ratio = o_.dynamic_ratio;
  in.reorder = o_.reorder;
  for (size_t part : items) {
    const Part& p = parts_[part];
    in.item_tokens.push_back(static_cast<double>(p.exact));
    double fixed = 0;
    for (size_t u = 0; u < p.layout.units.size(); ++u) {
      if (p.Forced(u)) fixed += p.cost[u];
    }
    in.item_fixed_tokens.push_back(fixed);
    in.item_forced.push_back(forced_item[parts_[part].item]);
  }
  return in;
}

// Ranks cost forward passes: they are needed when the order or the rates depend on them, or when
// the items hold more than the coarse step keeps.
bool Run::NeedsRanking(const std::vector<size_t>& items, const BudgetInput& in) const {
  if (items.size() <= 1) return false;
  if (o_.reorder != Reorder::kOriginal || o_.dynamic_ratio > 0) return true;
  double item_total = 0;
  for (double tokens : in.item_tokens) item_total += tokens;
  const double rough_budget = in.total_target - o_.instruction_rate * in.instruction_tokens -
                              o_.question_rate * in.question_tokens;
  return budgeted_ && item_total >= o_.context_budget_k * rough_budget;
}

// Rank scores of context items (higher = better), indexed by part.
absl::StatusOr<std::vector<double>> Run::RankItems(const std::vector<size_t>& items) {
  if (o_.rank == RankMethod::kQuestion && !question_ids_.empty()) {
    return RankItemsByQuestion(items);
  }
  return RankItemsByPerplexity(items);
}

// Mean self-information of question + restrict after each window of the item; the best window
// speaks for the item (a long document is as good as its most relevant part).
absl::StatusOr<std::vector<double>> Run::RankItemsByQuestion(const std::vector<size_t>& items) {
  const int context = lm_.max_context();
  ASSIGN_OR_RETURN(std::vector<int32_t> restrict_ids, Encode(kRestrict));
  std::vector<int32_t> target = question_ids_;
  if (static_cast<int>(target.size()) > context / 2) {
    target.erase(target.begin(), target.end() - context / 2);
  }
  target.insert(target.end(), restrict_ids.begin(), restrict_ids.end());
  if (static_cast<int>(target.size()) > context - 16) target.resize(context - 16);
  const size_t window = std::max<size_t>(16, context - target.size() - 1);
  std::vector<std::vector<int32_t>> prefixes, targets;
  std::vector<size_t> owner;
  for (size_t part : items) {
    const std::vector<int32_t> ids = IdsOf(parts_[part]);
    for (size_t w = 0; w < std::max<size_t>(1, ids.size()); w += window) {
      const size_t e = std::min(ids.size(), w + window);
      prefixes.emplace_back(ids.begin() + std::min(w, ids.size()), ids.begin() + e);
      targets.push_back(target);
      owner.push_back(part);
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<float>> si, lm_.ScoreContinuations(prefixes, targets));
  std::vector<double> best(parts_.size(), 1e30);
  for (size_t k = 0; k < si.size(); ++k) best[owner[k]] = std::min(best[owner[k]], Mean(si[k]));
  std::vector<std::string_view> texts;
  for (size_t part : items) texts.push_back(parts_[part].marked.text);
  const std::vector<double> overlap = QuestionOverlap(parts_.back().marked.text, texts);
  std::vector<double> scores(parts_.size(), 0.0);
  for (size_t k = 0; k < items.size(); ++k) {
    scores[items[k]] = Quantize(-best[items[k]] + kOverlapWeight * overlap[k]);
  }
  return scores;
}

// The mean self-information over the item's first context of tokens.
absl::StatusOr<std::vector<double>> Run::RankItemsByPerplexity(const std::vector<size_t>& items) {
  const int context = lm_.max_context();
  std::vector<std::vector<int32_t>> seqs;
  for (size_t part : items) {
    std::vector<int32_t> ids = IdsOf(parts_[part]);
    if (static_cast<int>(ids.size()) > context) ids.resize(context);
    seqs.push_back(std::move(ids));
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<float>> si, lm_.ScoreSequences(seqs));
  std::vector<double> scores(parts_.size(), 0.0);
  for (size_t k = 0; k < items.size(); ++k) scores[items[k]] = Quantize(Mean(si[k]));
  return scores;
}

// Drops whole sentences of kept items, by rank, until sentence_budget_k x the item budget is
// what remains. Sentences holding forced units stay.
absl::Status Run::FilterSentences(const std::vector<size_t>& items, double item_budget) {
  std::vector<Sentence> sentences;
  double total = 0;
  for (size_t part : items) {
    Part& p = parts_[part];
    const std::vector<size_t> starts = SentenceStarts(p.marked.text, p.layout.units);
    for (size_t s = 0; s < starts.size(); ++s) {
      Sentence x{part, starts[s], s + 1 < starts.size() ? starts[s + 1] : p.layout.units.size()};
      for (size_t u = x.begin; u < x.end; ++u) {
        x.cost += p.cost[u];
        x.forced = x.forced || p.Forced(u);
      }
      total += x.cost;
      sentences.push_back(x);
    }
  }
  const double keep_until = o_.sentence_budget_k * item_budget;
  if (sentences.size() < 2 || total <= keep_until) return absl::OkStatus();

  std::vector<std::vector<int32_t>> seqs;
  for (const Sentence& s : sentences) {
    const Part& p = parts_[s.part];
    std::vector<int32_t> ids;
    for (size_t t = 0; t < p.tokens.size(); ++t) {
      const int32_t u = p.token_unit[t];
      if (u >= static_cast<int32_t>(s.begin) && u < static_cast<int32_t>(s.end)) {
        ids.push_back(p.tokens[t].id);
      }
    }
    seqs.push_back(std::move(ids));
  }
  std::vector<double> score(sentences.size(), 0.0);
  if (o_.rank == RankMethod::kQuestion && !question_ids_.empty()) {
    std::vector<std::vector<int32_t>> targets(seqs.size(), question_ids_);
    ASSIGN_OR_RETURN(auto si, lm_.ScoreContinuations(seqs, targets));
    std::vector<std::string_view> texts;
    for (const Sentence& s : sentences) {
      const Part& p = parts_[s.part];
      const size_t b = p.layout.units[s.begin].begin;
      texts.push_back(std::string_view(p.marked.text).substr(b, p.layout.units[s.end - 1].end - b));
    }
    const std::vector<double> overlap = QuestionOverlap(parts_.back().marked.text, texts);
    for (size_t k = 0; k < si.size(); ++k) {
      score[k] = Quantize(-Mean(si[k]) + kOverlapWeight * overlap[k]);
    }
  } else {
    ASSIGN_OR_RETURN(auto si, lm_.ScoreSequences(seqs));
    for (size_t k = 0; k < si.size(); ++k) score[k] = Quantize(Mean(si[k]));
  }
  std::vector<size_t> order(sentences.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (sentences[a].forced != sentences[b].forced) return sentences[a].forced;
    return score[a] > score[b];
  });
  double used = 0;
  for (size_t k : order) {
    const Sentence& s = sentences[k];
    if (s.forced || used < keep_until) {
      used += s.cost;
      continue;
    }
    Part& p = parts_[s.part];
    for (size_t u = s.begin; u < s.end; ++u) p.active[u] = false;
  }
  return absl::OkStatus();
}

// Item targets again, over what the sentence filter left of each kept item.
void Run::SpreadOverFilteredItems(const std::vector<size_t>& items, const BudgetPlan& plan,
                                  std::vector<double>& part_target) const {
  std::vector<size_t> ranked(plan.order.begin(), plan.order.end());
  std::stable_sort(ranked.begin(), ranked.end(),
                   [&](size_t a, size_t b) { return plan.rank[a] < plan.rank[b]; });
  std::vector<double> costs;
  for (size_t k : ranked) {
    const Part& p = parts_[items[k]];
    double active_estimate = 0;
    for (size_t u = 0; u < p.layout.units.size(); ++u) {
      if (p.active[u]) active_estimate += p.cost[u];
    }
    costs.push_back(p.estimate > 0 ? active_estimate * p.exact / p.estimate : 0.0);
  }
  const std::vector<double> t =
      SpreadBudget(costs, RankWeights(ranked.size(), o_.dynamic_ratio), plan.item_budget);
  for (size_t r = 0; r < ranked.size(); ++r) part_target[items[ranked[r]]] = t[r];
}

}  // namespace terse::compressor::lingua
