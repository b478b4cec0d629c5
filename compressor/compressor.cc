// The LLMLingua pipeline over one prompt: parse each part into units, rank and select context
// items (coarse), compress segment by segment against the compressed past (fine), then correct
// the kept set until the assembled prompt has exactly the target count of target tokens.
#include "compressor/compressor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <numeric>
#include <string>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "compressor/compression_cache.h"
#include "compressor/lingua_budget.h"
#include "compressor/lingua_text.h"
#include "compressor/lm_tokenizer.h"
#include "compressor/target_tokenizer.h"

namespace terse::compressor {
namespace {

using lingua::kUnitForced;
using lingua::kUnitVerbatim;
using lingua::Unit;

constexpr std::string_view kJoin = "\n\n";
// LongLLMLingua's question suffix for question-conditioned ranking.
constexpr std::string_view kRestrict =
    " We can get the answer to this question in the given documents.";
// Verbatim units up to this many LM tokens are scored inside their segment (they condition the
// scores of their neighbours); longer ones (code, JSON) are appended to the past unscored.
constexpr int kInlineVerbatimTokens = 32;
// Question-conditioned ranks add this many nats times the IDF-weighted share of the question's
// words an item contains: a small LM that copies poorly still finds the document that names
// what the question asks about, and a good one still decides between documents that do.
constexpr double kOverlapWeight = 1.0;
// Scores are rounded to this step before they are compared, so the last bits of a float (which
// may differ between a batched and an unbatched forward pass) cannot change a decision.
constexpr double kScoreQuantum = 1.0 / 1024;

enum class PartKind { kInstruction, kItem, kQuestion };

struct Part {
  PartKind kind = PartKind::kItem;
  size_t item = 0;  // original context index, for kItem
  lingua::MarkedText marked;
  lingua::Layout layout;
  std::vector<LmToken> tokens;       // offsets into marked.text
  std::vector<int32_t> token_unit;   // first unit a token touches; -1: whitespace only
  std::vector<int32_t> token_units;  // how many units it touches
  std::vector<int32_t> unit_tokens;  // per unit: tokens whose first unit it is
  std::vector<double> cost;          // per unit, estimated target tokens
  std::vector<double> score;         // per unit; higher = more worth keeping
  std::vector<bool> scored;          // per unit
  std::vector<int> group;            // per unit: index into groups; -1 when forced
  std::vector<bool> active;          // per unit: survived the coarse step
  std::vector<bool> kept;            // per unit
  size_t exact = 0;                  // target tokens of marked.text
  double estimate = 0;               // sum of cost
  bool blank = true;                 // nothing but whitespace
  bool present = false;              // goes into the output

  bool Forced(size_t u) const { return layout.units[u].flags & kUnitForced; }
  std::string_view UnitText(size_t u) const {
    const Unit& x = layout.units[u];
    return std::string_view(marked.text).substr(x.begin, x.end - x.begin);
  }
};

// A set of units that share one target: a part's default, or one <terse rate> span of a part.
struct Group {
  double target = 0;   // estimated target tokens the group may keep (besides forced units)
  double elastic = 0;  // estimated cost of its non-forced active units
  double remaining_target = 0;
  double remaining_cost = 0;
  double kept = 0;
};

double Quantize(double x) { return std::round(x / kScoreQuantum) * kScoreQuantum; }

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

std::string Join(const std::vector<std::string_view>& parts) {
  std::string out;
  for (std::string_view p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out.append(kJoin);
    out.append(p);
  }
  return out;
}

double Ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

absl::Status CheckOptions(const Prompt& prompt, const CompressOptions& o) {
  if (o.rate.has_value() && o.target_tokens.has_value()) {
    return absl::InvalidArgumentError("give rate or target_tokens, not both");
  }
  if (o.rate.has_value() && !(*o.rate > 0.0 && *o.rate <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("rate must be in (0, 1], got ", *o.rate));
  }
  const auto unit_interval = [](double x) { return x >= 0.0 && x <= 1.0; };
  if (!unit_interval(o.instruction_rate) || !unit_interval(o.question_rate)) {
    return absl::InvalidArgumentError("instruction_rate and question_rate must be in [0, 1]");
  }
  if (o.segment_tokens < 1) return absl::InvalidArgumentError("segment_tokens must be >= 1");
  if (!(o.context_budget_k > 0) || !(o.sentence_budget_k > 0)) {
    return absl::InvalidArgumentError("context_budget_k and sentence_budget_k must be > 0");
  }
  if (!unit_interval(o.dynamic_ratio)) {
    return absl::InvalidArgumentError("dynamic_ratio must be in [0, 1]");
  }
  for (size_t i : o.forced_items) {
    if (i >= prompt.context.size()) {
      return absl::InvalidArgumentError(absl::StrCat("forced item ", i, " is out of range (",
                                                     prompt.context.size(), " context items)"));
    }
  }
  return absl::OkStatus();
}

std::string OptionsKey(const CompressOptions& o) {
  std::string k;
  const auto num = [&](double x) {
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.17g|", x);
    k += buf;
  };
  num(o.rate.value_or(-1));
  num(o.target_tokens.has_value() ? static_cast<double>(*o.target_tokens) : -1);
  num(o.instruction_rate);
  num(o.question_rate);
  num(o.segment_tokens);
  num(o.context_budget_k);
  num(static_cast<int>(o.rank));
  num(static_cast<int>(o.reorder));
  num(o.dynamic_ratio);
  num(o.contrastive);
  num(o.sentence_filter);
  num(o.exact_past);
  num(o.sentence_budget_k);
  num(o.keep_digits);
  num(o.compress_json_strings);
  num(o.keep_markers);
  num(static_cast<double>(o.min_tokens));
  num(o.explain);
  for (const std::string& t : o.force_tokens) absl::StrAppend(&k, t.size(), ":", t, "|");
  k += "#";
  for (size_t i : o.forced_items) absl::StrAppend(&k, i, ",");
  absl::StrAppend(&k, "#", o.target_tokenizer, "#");
  return k;
}

// One compression, start to end. Holds the per-call state; nothing here is shared.
class Run {
 public:
  Run(LanguageModel& lm, const LmTokenizer& tokenizer, const TargetTokenizer& target,
      const Prompt& prompt, const CompressOptions& options)
      : lm_(lm), tok_(tokenizer), target_(target), prompt_(prompt), o_(options) {}

  absl::StatusOr<CompressResult> Compress();

 private:
  absl::Status BuildPart(PartKind kind, size_t item, std::string_view text);
  double UnitCost(const Part& p, size_t u);
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;
  absl::StatusOr<std::vector<double>> RankItems(const std::vector<size_t>& items);
  absl::Status FilterSentences(const std::vector<size_t>& items, double item_budget);
  void SetGroups(Part& p, double part_target);
  absl::Status CompressFine();
  absl::Status ProcessPart(Part& p, LanguageModel::Session& plain,
                           LanguageModel::Session* conditioned);
  size_t CountOutput(const std::vector<bool>* flat);
  void Correct(size_t target);
  void KeepJsonValid();
  std::vector<size_t> OutputParts() const;
  CompressResult Unchanged(std::string reason) const;
  CompressResult Finish();
  // Joins r's instruction, context and question into r.prompt and counts it against the origin.
  void Total(CompressResult& r) const;
  std::vector<CompressResult::Piece> Explain() const;

  LanguageModel& lm_;
  const LmTokenizer& tok_;
  const TargetTokenizer& target_;
  const Prompt& prompt_;
  const CompressOptions& o_;

  std::vector<Part> parts_;  // instruction, items by index, question (always all three kinds)
  std::vector<size_t> item_order_;  // kept items in output order
  std::vector<Group> groups_;
  std::vector<int32_t> question_ids_;
  std::unordered_map<std::string, double> cost_cache_;
  size_t origin_ = 0;
  bool budgeted_ = false;  // a global rate/target applies (else only rate spans)
};

absl::StatusOr<std::vector<int32_t>> Run::Encode(std::string_view text) const {
  ASSIGN_OR_RETURN(std::vector<LmToken> tokens, tok_.Encode(text));
  std::vector<int32_t> ids;
  ids.reserve(tokens.size());
  for (const LmToken& t : tokens) ids.push_back(t.id);
  return ids;
}

double Run::UnitCost(const Part& p, size_t u) {
  const Unit& x = p.layout.units[u];
  const std::string_view text = p.UnitText(u);
  if (x.flags & kUnitVerbatim) return static_cast<double>(target_.Count(text));
  // Most BPE tokens carry their leading space, so a word costs what " word" costs.
  const bool spaced =
      x.begin > 0 && (p.marked.text[x.begin - 1] == ' ' || p.marked.text[x.begin - 1] == '\t');
  std::string key = spaced ? " " : "";
  key.append(text);
  auto it = cost_cache_.find(key);
  if (it != cost_cache_.end()) return it->second;
  const double c = std::max<double>(1.0, static_cast<double>(target_.Count(key)));
  cost_cache_.emplace(std::move(key), c);
  return c;
}

absl::Status Run::BuildPart(PartKind kind, size_t item, std::string_view text) {
  Part& p = parts_.emplace_back();
  p.kind = kind;
  p.item = item;
  ASSIGN_OR_RETURN(p.marked, lingua::ParseMarkup(text));
  p.blank = IsBlank(p.marked.text);
  if (p.blank) return absl::OkStatus();
  lingua::StructureOptions structure;
  structure.force_tokens = o_.force_tokens;
  structure.keep_digits = o_.keep_digits;
  structure.compress_json_strings = o_.compress_json_strings;
  structure.keep_markers = o_.keep_markers;
  p.layout = lingua::SplitUnits(p.marked, structure);
  const std::vector<Unit>& units = p.layout.units;
  const size_t n = units.size();

  // LM tokens, encoded piecewise so no token straddles a verbatim block or a markup span.
  std::vector<size_t> cuts = {0, p.marked.text.size()};
  for (const Unit& u : units) {
    if (u.flags & kUnitVerbatim) {
      cuts.push_back(u.begin);
      cuts.push_back(u.end);
    }
  }
  for (const lingua::MarkupSpan& s : p.marked.spans) {
    cuts.push_back(s.begin);
    cuts.push_back(s.end);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  for (size_t c = 0; c + 1 < cuts.size(); ++c) {
    const std::string_view piece =
        std::string_view(p.marked.text).substr(cuts[c], cuts[c + 1] - cuts[c]);
    ASSIGN_OR_RETURN(std::vector<LmToken> tokens, tok_.Encode(piece));
    for (LmToken& t : tokens) {
      t.begin += static_cast<uint32_t>(cuts[c]);
      t.end += static_cast<uint32_t>(cuts[c]);
      p.tokens.push_back(t);
    }
  }

  // Token -> units it touches. A token of spaces alone right before a plain unit belongs to
  // that unit: a word's first piece carries its leading space ("▁bus"), and a number's space is
  // a piece of its own ("▁" "1" "7" "9") whose surprise is the number's as much as the digits'.
  // Other whitespace tokens (newlines, indentation) touch no unit.
  p.token_unit.assign(p.tokens.size(), -1);
  p.token_units.assign(p.tokens.size(), 0);
  p.unit_tokens.assign(n, 0);
  size_t u = 0;
  for (size_t t = 0; t < p.tokens.size(); ++t) {
    const LmToken& tok = p.tokens[t];
    while (u < n && units[u].end <= tok.begin) ++u;
    size_t v = u;
    while (v < n && units[v].begin < tok.end) ++v;
    if (v > u) {
      p.token_unit[t] = static_cast<int32_t>(u);
      p.token_units[t] = static_cast<int32_t>(v - u);
      ++p.unit_tokens[u];
    } else if (u < n && units[u].begin == tok.end && !(units[u].flags & kUnitVerbatim) &&
               std::all_of(p.marked.text.begin() + tok.begin, p.marked.text.begin() + tok.end,
                           [](char c) { return c == ' '; })) {
      p.token_unit[t] = static_cast<int32_t>(u);
      p.token_units[t] = 1;
    }
  }

  p.cost.resize(n);
  for (size_t i = 0; i < n; ++i) {
    p.cost[i] = UnitCost(p, i);
    p.estimate += p.cost[i];
  }
  p.score.assign(n, 0.0);
  p.scored.assign(n, false);
  p.group.assign(n, -1);
  p.active.assign(n, true);
  p.kept.assign(n, false);
  p.exact = target_.Count(p.marked.text);
  p.present = true;
  return absl::OkStatus();
}

// Rank scores of context items (higher = better).
absl::StatusOr<std::vector<double>> Run::RankItems(const std::vector<size_t>& items) {
  std::vector<double> scores(parts_.size(), 0.0);
  const int context = lm_.max_context();
  const auto ids_of = [&](const Part& p) {
    std::vector<int32_t> ids;
    ids.reserve(p.tokens.size());
    for (const LmToken& t : p.tokens) ids.push_back(t.id);
    return ids;
  };
  if (o_.rank == RankMethod::kQuestion && !question_ids_.empty()) {
    // Mean self-information of question + restrict after each window of the item; the best
    // window speaks for the item (a long document is as good as its most relevant part).
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
      const std::vector<int32_t> ids = ids_of(parts_[part]);
      for (size_t w = 0; w < std::max<size_t>(1, ids.size()); w += window) {
        const size_t e = std::min(ids.size(), w + window);
        prefixes.emplace_back(ids.begin() + std::min(w, ids.size()), ids.begin() + e);
        targets.push_back(target);
        owner.push_back(part);
      }
    }
    ASSIGN_OR_RETURN(std::vector<std::vector<float>> si, lm_.ScoreContinuations(prefixes, targets));
    std::vector<double> best(parts_.size(), 1e30);
    for (size_t k = 0; k < si.size(); ++k) {
      const double mean =
          si[k].empty() ? 0.0 : std::accumulate(si[k].begin(), si[k].end(), 0.0) / si[k].size();
      best[owner[k]] = std::min(best[owner[k]], mean);
    }
    std::vector<std::string_view> texts;
    for (size_t part : items) texts.push_back(parts_[part].marked.text);
    const std::vector<double> overlap = lingua::QuestionOverlap(parts_.back().marked.text, texts);
    for (size_t k = 0; k < items.size(); ++k) {
      scores[items[k]] = Quantize(-best[items[k]] + kOverlapWeight * overlap[k]);
    }
    return scores;
  }
  // Perplexity: the mean self-information over the item's first context of tokens.
  std::vector<std::vector<int32_t>> seqs;
  for (size_t part : items) {
    std::vector<int32_t> ids = ids_of(parts_[part]);
    if (static_cast<int>(ids.size()) > context) ids.resize(context);
    seqs.push_back(std::move(ids));
  }
  ASSIGN_OR_RETURN(std::vector<std::vector<float>> si, lm_.ScoreSequences(seqs));
  for (size_t k = 0; k < items.size(); ++k) {
    const double mean =
        si[k].empty() ? 0.0 : std::accumulate(si[k].begin(), si[k].end(), 0.0) / si[k].size();
    scores[items[k]] = Quantize(mean);
  }
  return scores;
}

// Drops whole sentences of kept items, by rank, until sentence_budget_k x the item budget is
// what remains. Sentences holding forced units stay.
absl::Status Run::FilterSentences(const std::vector<size_t>& items, double item_budget) {
  struct Sentence {
    size_t part;
    size_t begin, end;  // units
    double cost = 0;
    bool forced = false;
  };
  std::vector<Sentence> sentences;
  double total = 0;
  for (size_t part : items) {
    Part& p = parts_[part];
    const std::vector<size_t> starts = lingua::SentenceStarts(p.marked.text, p.layout.units);
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
  const auto mean = [](const std::vector<float>& v) {
    return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size();
  };
  if (o_.rank == RankMethod::kQuestion && !question_ids_.empty()) {
    std::vector<std::vector<int32_t>> targets(seqs.size(), question_ids_);
    ASSIGN_OR_RETURN(auto si, lm_.ScoreContinuations(seqs, targets));
    std::vector<std::string_view> texts;
    for (const Sentence& s : sentences) {
      const Part& p = parts_[s.part];
      const size_t b = p.layout.units[s.begin].begin;
      texts.push_back(std::string_view(p.marked.text).substr(b, p.layout.units[s.end - 1].end - b));
    }
    const std::vector<double> overlap = lingua::QuestionOverlap(parts_.back().marked.text, texts);
    for (size_t k = 0; k < si.size(); ++k) {
      score[k] = Quantize(-mean(si[k]) + kOverlapWeight * overlap[k]);
    }
  } else {
    ASSIGN_OR_RETURN(auto si, lm_.ScoreSequences(seqs));
    for (size_t k = 0; k < si.size(); ++k) score[k] = Quantize(mean(si[k]));
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

absl::Status Run::ProcessPart(Part& p, LanguageModel::Session& plain,
                              LanguageModel::Session* conditioned) {
  const size_t n = p.layout.units.size();
  const size_t segment =
      static_cast<size_t>(std::clamp(o_.segment_tokens, 8, std::max(8, lm_.max_context() / 2)));
  const size_t append_chunk = static_cast<size_t>(std::max(8, lm_.max_context() / 2));
  std::vector<double> unit_si(n, 0.0);

  // Whether a unit needs a decision (its group keeps less than all of it).
  const auto undecided = [&](int32_t u) {
    if (u < 0 || !p.active[u] || p.group[u] < 0) return false;
    const Group& g = groups_[p.group[u]];
    return g.target < g.elastic;
  };
  bool last_space = true;  // collapse whitespace-only tokens in the appended past
  std::vector<int32_t> ids;
  const auto append = [&](const std::vector<int32_t>& chunk) -> absl::Status {
    for (size_t b = 0; b < chunk.size(); b += append_chunk) {
      const size_t e = std::min(chunk.size(), b + append_chunk);
      std::span<const int32_t> piece(chunk.data() + b, e - b);
      // The two sessions run on two threads so the model can batch their steps together.
      std::future<absl::Status> other;
      if (conditioned != nullptr) {
        other = std::async(std::launch::async, [&] { return conditioned->Append(piece); });
      }
      const absl::Status mine = plain.Append(piece);
      if (other.valid()) RETURN_IF_ERROR(other.get());
      RETURN_IF_ERROR(mine);
    }
    return absl::OkStatus();
  };

  // Flushes the pending segment [seg_begin, seg_end) of token indices.
  std::vector<size_t> seg;
  const auto flush = [&]() -> absl::Status {
    if (seg.empty()) return absl::OkStatus();
    std::vector<size_t> units;  // units touched, in order
    bool decide = false;
    for (size_t t : seg) {
      const int32_t u = p.token_unit[t];
      if (u < 0) continue;
      for (int32_t k = u; k < u + p.token_units[t]; ++k) {
        if (units.empty() || units.back() < static_cast<size_t>(k)) units.push_back(k);
        decide = decide || undecided(k);
      }
    }
    // Which sessions scored exactly seg (their last Score), so can reuse its cache.
    bool plain_scored = false;
    bool conditioned_scored = false;
    if (decide) {
      ids.clear();
      for (size_t t : seg) ids.push_back(p.tokens[t].id);
      std::future<absl::StatusOr<std::vector<float>>> with_question;
      if (conditioned != nullptr && p.kind == PartKind::kItem) {
        with_question = std::async(std::launch::async, [&] { return conditioned->Score(ids); });
      }
      absl::StatusOr<std::vector<float>> scored = plain.Score(ids);
      if (with_question.valid()) {
        conditioned_scored = true;
        absl::StatusOr<std::vector<float>> si_q = with_question.get();
        RETURN_IF_ERROR(si_q.status());
        RETURN_IF_ERROR(scored.status());
        // Contrastive: how much the question makes the token more predictable.
        for (size_t k = 0; k < scored->size(); ++k) (*scored)[k] -= (*si_q)[k];
      }
      ASSIGN_OR_RETURN(std::vector<float> si, std::move(scored));
      plain_scored = true;
      for (size_t k = 0; k < seg.size(); ++k) {
        const size_t t = seg[k];
        const int32_t u = p.token_unit[t];
        if (u < 0) continue;
        const double share = si[k] / p.token_units[t];
        for (int32_t j = u; j < u + p.token_units[t]; ++j) unit_si[j] += share;
      }
      // Per group in this segment: its share of the group's remaining target.
      std::unordered_map<int, std::vector<size_t>> by_group;
      for (size_t u : units) {
        if (!p.active[u]) continue;
        p.score[u] = Quantize(unit_si[u] / p.cost[u]);
        p.scored[u] = true;
        if (undecided(static_cast<int32_t>(u))) by_group[p.group[u]].push_back(u);
      }
      std::vector<int> group_ids;
      for (const auto& [g, _] : by_group) group_ids.push_back(g);
      std::sort(group_ids.begin(), group_ids.end());
      for (int g : group_ids) {
        Group& grp = groups_[g];
        double seg_cost = 0;
        for (size_t u : by_group[g]) seg_cost += p.cost[u];
        const double share =
            grp.remaining_cost > 0
                ? std::max(0.0, grp.remaining_target) * std::min(1.0, seg_cost / grp.remaining_cost)
                : 0.0;
        const double kept = lingua::KeepBest(by_group[g], p.score, p.cost, share, &p.kept);
        grp.remaining_target -= kept;
        grp.remaining_cost -= seg_cost;
        grp.kept += kept;
      }
    }
    // Everything not decided above is kept: forced units and groups kept whole.
    for (size_t u : units) {
      if (p.active[u] && !undecided(static_cast<int32_t>(u))) {
        p.kept[u] = true;
        if (p.group[u] >= 0) groups_[p.group[u]].kept += p.cost[u];
      }
    }
    // The past grows by what was kept.
    ids.clear();
    std::vector<bool> keep_flags;
    keep_flags.reserve(seg.size());
    for (size_t t : seg) {
      const int32_t u = p.token_unit[t];
      bool keep;
      if (u < 0) {
        keep = !last_space;
        last_space = true;
      } else {
        keep = false;
        for (int32_t j = u; j < u + p.token_units[t]; ++j) keep = keep || p.kept[j];
        if (keep) last_space = false;
      }
      if (keep) ids.push_back(p.tokens[t].id);
      keep_flags.push_back(keep);
    }
    seg.clear();
    if (o_.exact_past || !plain_scored) return append(ids);
    // The scoring pass already computed the kept tokens' cache entries: reuse them.
    std::future<absl::Status> other;
    if (conditioned != nullptr) {
      other = std::async(std::launch::async, [&] {
        return conditioned_scored ? conditioned->AppendScored(keep_flags)
                                  : conditioned->Append(ids);
      });
    }
    const absl::Status mine = plain.AppendScored(keep_flags);
    if (other.valid()) RETURN_IF_ERROR(other.get());
    RETURN_IF_ERROR(mine);
    return absl::OkStatus();
  };

  int32_t last_unit = -1;  // last unit touched by the pending segment
  for (size_t t = 0; t < p.tokens.size(); ++t) {
    const int32_t u = p.token_unit[t];
    if (u >= 0 && !p.active[u]) continue;  // dropped by the sentence filter
    const bool starts_unit = u < 0 || u > last_unit;
    if (u >= 0 && (p.layout.units[u].flags & kUnitVerbatim) &&
        p.unit_tokens[u] > kInlineVerbatimTokens && starts_unit) {
      // A long verbatim block: its tokens go to the past as they are, unscored.
      RETURN_IF_ERROR(flush());
      std::vector<int32_t> block;
      size_t e = t;
      while (e < p.tokens.size() && p.token_unit[e] == u) block.push_back(p.tokens[e++].id);
      p.kept[u] = true;
      RETURN_IF_ERROR(append(block));
      last_space = false;
      last_unit = u;
      t = e - 1;
      continue;
    }
    if (seg.size() >= segment && starts_unit) RETURN_IF_ERROR(flush());
    seg.push_back(t);
    if (u >= 0) last_unit = std::max(last_unit, u + p.token_units[t] - 1);
  }
  return flush();
}

std::vector<size_t> Run::OutputParts() const {
  std::vector<size_t> out;
  if (parts_[0].present) out.push_back(0);
  for (size_t i : item_order_) {
    if (parts_[1 + i].present) out.push_back(1 + i);
  }
  if (parts_.back().present) out.push_back(parts_.size() - 1);
  return out;
}

absl::Status Run::CompressFine() {
  std::unique_ptr<LanguageModel::Session> plain = lm_.NewSession();
  std::unique_ptr<LanguageModel::Session> conditioned;
  if (o_.contrastive && !question_ids_.empty() && !item_order_.empty()) {
    conditioned = lm_.NewSession();
    RETURN_IF_ERROR(conditioned->Append(question_ids_));
  }
  ASSIGN_OR_RETURN(std::vector<int32_t> join_ids, Encode(kJoin));
  bool first = true;
  for (size_t part : OutputParts()) {
    if (!first) {
      RETURN_IF_ERROR(plain->Append(join_ids));
      if (conditioned) RETURN_IF_ERROR(conditioned->Append(join_ids));
    }
    first = false;
    RETURN_IF_ERROR(ProcessPart(parts_[part], *plain, conditioned.get()));
  }
  return absl::OkStatus();
}

// Target tokens of the output with `flat` (units of the output parts, in order) as the kept set;
// null: the parts' own kept sets.
size_t Run::CountOutput(const std::vector<bool>* flat) {
  std::vector<std::string> texts;
  size_t offset = 0;
  for (size_t part : OutputParts()) {
    const Part& p = parts_[part];
    const size_t n = p.layout.units.size();
    std::vector<bool> kept(n);
    for (size_t u = 0; u < n; ++u) {
      kept[u] = p.active[u] && (flat ? (*flat)[offset + u] : p.kept[u]);
    }
    offset += n;
    texts.push_back(lingua::Assemble(p.marked.text, p.layout.units, kept));
  }
  std::vector<std::string_view> views(texts.begin(), texts.end());
  return target_.Count(Join(views));
}

void Run::Correct(size_t target) {
  std::vector<bool> flat;
  std::vector<lingua::Adjustable> adjustable;
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
        lingua::Adjustable a;
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
  const auto count = [&](const std::vector<bool>& k) { return CountOutput(&k); };
  lingua::CorrectToTarget(adjustable, floor, group_kept, target, count, &flat);
  size_t offset = 0;
  for (size_t part : OutputParts()) {
    Part& p = parts_[part];
    for (size_t u = 0; u < p.layout.units.size(); ++u) p.kept[u] = flat[offset + u];
    offset += p.layout.units.size();
  }
}

// JSON values whose strings shrank must still parse; any that does not is kept whole.
void Run::KeepJsonValid() {
  for (Part& p : parts_) {
    for (size_t j = 0; j < p.layout.json.size(); ++j) {
      const auto [b, e] = p.layout.json[j];
      std::vector<Unit> units;
      std::vector<bool> kept;
      std::vector<size_t> index;
      for (size_t u = 0; u < p.layout.units.size(); ++u) {
        Unit x = p.layout.units[u];
        if (x.json != static_cast<int32_t>(j)) continue;
        x.begin -= b;
        x.end -= b;
        units.push_back(x);
        kept.push_back(p.active[u] && p.kept[u]);
        index.push_back(u);
      }
      const std::string out =
          lingua::Assemble(std::string_view(p.marked.text).substr(b, e - b), units, kept);
      if (Json::accept(out)) continue;
      for (size_t u : index) p.kept[u] = p.active[u];
    }
  }
}

CompressResult Run::Unchanged(std::string reason) const {
  CompressResult r;
  r.reason = std::move(reason);
  const bool empty =
      std::all_of(parts_.begin(), parts_.end(), [](const Part& p) { return p.blank; });
  // An empty prompt comes back byte for byte; otherwise tags are removed.
  r.instruction = empty ? prompt_.instruction : parts_[0].marked.text;
  r.question = empty ? prompt_.question : parts_.back().marked.text;
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    CompressResult::Item item;
    item.original_index = i;
    item.text = empty ? prompt_.context[i] : parts_[1 + i].marked.text;
    item.kept = true;
    r.context.push_back(std::move(item));
  }
  Total(r);
  if (o_.explain) r.explanation.push_back({r.prompt, true});
  return r;
}

void Run::Total(CompressResult& r) const {
  std::vector<std::string_view> views = {r.instruction};
  for (const auto& item : r.context) views.push_back(item.text);
  views.push_back(r.question);
  r.prompt = Join(views);
  r.origin_tokens = origin_;
  r.compressed_tokens = target_.Count(r.prompt);
  r.rate = origin_ > 0 ? static_cast<double>(r.compressed_tokens) / origin_ : 1.0;
}

std::vector<CompressResult::Piece> Run::Explain() const {
  std::vector<CompressResult::Piece> out;
  const auto add = [&](std::string_view text, bool kept) {
    if (text.empty()) return;
    if (!out.empty() && out.back().kept == kept) {
      out.back().text.append(text);
    } else {
      out.push_back({std::string(text), kept});
    }
  };
  bool first = true;
  for (const Part& p : parts_) {
    if (p.blank) continue;
    if (!first) add(kJoin, true);
    first = false;
    const std::string_view t = p.marked.text;
    if (!p.present) {
      add(t, false);
      continue;
    }
    size_t pos = 0;
    for (size_t u = 0; u < p.layout.units.size(); ++u) {
      const Unit& x = p.layout.units[u];
      add(t.substr(pos, x.begin - pos), true);
      add(t.substr(x.begin, x.end - x.begin), p.active[u] && p.kept[u]);
      pos = x.end;
    }
    add(t.substr(pos), true);
  }
  return out;
}

CompressResult Run::Finish() {
  CompressResult r;
  const auto text_of = [&](const Part& p) {
    if (!p.present) return std::string();
    std::vector<bool> kept(p.layout.units.size());
    for (size_t u = 0; u < kept.size(); ++u) kept[u] = p.active[u] && p.kept[u];
    std::string s = lingua::Assemble(p.marked.text, p.layout.units, kept);
    return IsBlank(s) ? std::string() : s;
  };
  r.instruction = text_of(parts_[0]);
  r.question = text_of(parts_.back());
  std::vector<bool> listed(prompt_.context.size(), false);
  for (size_t i : item_order_) {
    CompressResult::Item item;
    item.original_index = i;
    item.text = text_of(parts_[1 + i]);
    item.kept = !item.text.empty();
    if (!item.kept) continue;
    listed[i] = true;
    r.context.push_back(std::move(item));
  }
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    if (!listed[i]) r.context.push_back({i, std::string(), false});
  }
  Total(r);
  if (o_.explain) r.explanation = Explain();
  return r;
}

absl::StatusOr<CompressResult> Run::Compress() {
  // Parts: instruction, items by index, question.
  RETURN_IF_ERROR(BuildPart(PartKind::kInstruction, 0, prompt_.instruction));
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    RETURN_IF_ERROR(BuildPart(PartKind::kItem, i, prompt_.context[i]));
  }
  RETURN_IF_ERROR(BuildPart(PartKind::kQuestion, 0, prompt_.question));

  std::vector<std::string_view> originals;
  for (const Part& p : parts_) {
    originals.push_back(p.blank ? std::string_view() : std::string_view(p.marked.text));
  }
  origin_ = target_.Count(Join(originals));
  if (std::all_of(parts_.begin(), parts_.end(), [](const Part& p) { return p.blank; })) {
    return Unchanged("empty prompt: nothing to compress");
  }
  if (origin_ < o_.min_tokens) {
    return Unchanged(
        absl::StrCat("prompt has ", origin_, " tokens, below min_tokens ", o_.min_tokens));
  }
  bool rate_spans = false;
  for (const Part& p : parts_) {
    for (const lingua::MarkupSpan& s : p.marked.spans) rate_spans = rate_spans || !s.keep;
  }
  size_t target = origin_;
  if (o_.rate.has_value()) {
    target = static_cast<size_t>(std::llround(*o_.rate * static_cast<double>(origin_)));
  } else if (o_.target_tokens.has_value()) {
    target = *o_.target_tokens;
  }
  budgeted_ = target < origin_;
  if (!budgeted_ && !rate_spans) {
    return Unchanged(o_.rate.has_value() || o_.target_tokens.has_value()
                         ? "the budget is not below the prompt's size"
                         : "no rate or target_tokens given and no <terse rate> spans");
  }
  bool elastic = false;
  for (const Part& p : parts_) {
    for (size_t u = 0; u < p.layout.units.size() && !elastic; ++u) elastic = !p.Forced(u);
  }
  if (!elastic) {
    return Unchanged(
        "nothing compressible: all of it is kept by structure (code, JSON, keep "
        "spans, forced text)");
  }
  const Part& question = parts_.back();
  if (!question.blank) {
    for (const LmToken& t : question.tokens) question_ids_.push_back(t.id);
  }

  // Coarse step.
  std::vector<size_t> items;  // part indices of non-blank items
  for (size_t i = 0; i < prompt_.context.size(); ++i) {
    if (!parts_[1 + i].blank) items.push_back(1 + i);
  }
  const Part& instruction = parts_[0];
  lingua::BudgetInput in;
  in.total_target = static_cast<double>(target);
  in.instruction_tokens = instruction.blank ? 0 : static_cast<double>(instruction.exact);
  in.question_tokens = question.blank ? 0 : static_cast<double>(question.exact);
  in.instruction_rate = o_.instruction_rate;
  in.question_rate = o_.question_rate;
  in.separator_tokens = static_cast<double>(target_.Count(kJoin));
  in.k = o_.context_budget_k;
  in.dynamic_ratio = o_.dynamic_ratio;
  in.reorder = o_.reorder;
  std::vector<bool> forced_item(prompt_.context.size(), false);
  for (size_t i : o_.forced_items) forced_item[i] = true;
  double item_total = 0;
  for (size_t part : items) {
    in.item_tokens.push_back(static_cast<double>(parts_[part].exact));
    in.item_forced.push_back(forced_item[parts_[part].item]);
    item_total += parts_[part].exact;
  }
  const double rough_budget = in.total_target - o_.instruction_rate * in.instruction_tokens -
                              o_.question_rate * in.question_tokens;
  const bool need_rank =
      items.size() > 1 && (o_.reorder != Reorder::kOriginal || o_.dynamic_ratio > 0 ||
                           (budgeted_ && item_total >= o_.context_budget_k * rough_budget));
  in.item_scores.assign(items.size(), 0.0);
  if (need_rank) {
    ASSIGN_OR_RETURN(std::vector<double> scores, RankItems(items));
    for (size_t k = 0; k < items.size(); ++k) in.item_scores[k] = scores[items[k]];
  }

  std::vector<double> part_target(parts_.size(), 0.0);
  if (budgeted_) {
    const lingua::BudgetPlan plan = lingua::PlanBudget(in);
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
      // Item targets again, over what the sentence filter left.
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
      const std::vector<double> t = lingua::SpreadBudget(
          costs, lingua::RankWeights(ranked.size(), o_.dynamic_ratio), plan.item_budget);
      for (size_t r = 0; r < ranked.size(); ++r) part_target[items[ranked[r]]] = t[r];
    }
  } else {
    std::vector<size_t> ranked;
    for (size_t k = 0; k < items.size(); ++k) ranked.push_back(k);
    std::stable_sort(ranked.begin(), ranked.end(),
                     [&](size_t a, size_t b) { return in.item_scores[a] > in.item_scores[b]; });
    for (size_t k : lingua::ReorderItems(ranked, o_.reorder)) {
      item_order_.push_back(parts_[items[k]].item);
    }
  }
  for (size_t k = 0; k < parts_.size(); ++k) {
    if (parts_[k].present) SetGroups(parts_[k], part_target[k]);
  }

  // Fine step, then the exact count.
  RETURN_IF_ERROR(CompressFine());
  if (budgeted_) Correct(target);
  KeepJsonValid();
  return Finish();
}

}  // namespace

absl::StatusOr<RankMethod> ParseRankMethod(std::string_view name) {
  if (name == "perplexity") return RankMethod::kPerplexity;
  if (name == "question") return RankMethod::kQuestion;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown rank method \"", std::string(name), "\" (perplexity | question)"));
}

absl::StatusOr<Reorder> ParseReorder(std::string_view name) {
  if (name == "original") return Reorder::kOriginal;
  if (name == "rank") return Reorder::kRank;
  if (name == "two_stage") return Reorder::kTwoStage;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown reorder \"", std::string(name), "\" (original | rank | two_stage)"));
}

Compressor::Compressor(std::shared_ptr<LanguageModel> lm,
                       std::shared_ptr<const LmTokenizer> tokenizer, size_t cache_entries)
    : lm_(std::move(lm)),
      tokenizer_(std::move(tokenizer)),
      cache_(cache_entries > 0 ? std::make_unique<CompressionCache>(cache_entries) : nullptr) {}

Compressor::~Compressor() = default;

absl::StatusOr<std::unique_ptr<Compressor>> Compressor::Create(
    std::shared_ptr<LanguageModel> lm, std::shared_ptr<const LmTokenizer> tokenizer,
    size_t cache_entries) {
  if (lm == nullptr || tokenizer == nullptr) {
    return absl::InvalidArgumentError("Compressor needs a language model and its tokenizer");
  }
  if (tokenizer->vocab_size() > lm->vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer vocabulary (", tokenizer->vocab_size(),
                     ") is larger than the model's (", lm->vocab_size(), ")"));
  }
  return std::unique_ptr<Compressor>(
      new Compressor(std::move(lm), std::move(tokenizer), cache_entries));
}

absl::StatusOr<std::unique_ptr<Compressor>> Compressor::Load(const LanguageModelOptions& options,
                                                             size_t cache_entries) {
  ASSIGN_OR_RETURN(std::unique_ptr<LmTokenizer> tokenizer, LmTokenizer::Load(options.model_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<LanguageModel> lm, LanguageModel::Load(options));
  return Create(std::move(lm), std::move(tokenizer), cache_entries);
}

size_t Compressor::cache_size() const { return cache_ ? cache_->size() : 0; }

absl::StatusOr<CompressResult> Compressor::CompressText(std::string_view text,
                                                        const CompressOptions& options) {
  Prompt prompt;
  prompt.context.emplace_back(text);
  return Compress(prompt, options);
}

absl::StatusOr<CompressResult> Compressor::Compress(const Prompt& prompt,
                                                    const CompressOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const auto utf8 = [](const std::string& s, const std::string& what) -> absl::Status {
    if (lingua::IsValidUtf8(s)) return absl::OkStatus();
    return absl::InvalidArgumentError(what + " is not valid UTF-8");
  };
  RETURN_IF_ERROR(utf8(prompt.instruction, "the instruction"));
  RETURN_IF_ERROR(utf8(prompt.question, "the question"));
  for (size_t i = 0; i < prompt.context.size(); ++i) {
    RETURN_IF_ERROR(utf8(prompt.context[i], absl::StrCat("context item ", i)));
  }
  RETURN_IF_ERROR(CheckOptions(prompt, options));

  std::optional<CompressionCache::Key> key;
  if (cache_ && options.use_cache) {
    std::string material = absl::StrCat("terse-compress-v1|", lm_->digest(), "|",
                                        tokenizer_->vocab_size(), "|", OptionsKey(options));
    const auto add = [&](const std::string& s) { absl::StrAppend(&material, s.size(), ":", s); };
    add(prompt.instruction);
    absl::StrAppend(&material, "|", prompt.context.size(), "|");
    for (const std::string& c : prompt.context) add(c);
    add(prompt.question);
    key = CompressionCache::MakeKey(material);
    if (std::optional<CompressResult> hit = cache_->Lookup(*key)) {
      hit->cache_hit = true;
      hit->ms = Ms(start);
      return *std::move(hit);
    }
  }
  absl::StatusOr<CompressResult> result = CompressUncached(prompt, options);
  if (!result.ok()) return result.status();
  result->ms = Ms(start);
  if (key.has_value()) cache_->Insert(*key, *result);
  return result;
}

absl::StatusOr<CompressResult> Compressor::CompressUncached(const Prompt& prompt,
                                                            const CompressOptions& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TargetTokenizer> target,
                   GetTargetTokenizer(options.target_tokenizer));
  Run run(*lm_, *tokenizer_, *target, prompt, options);
  return run.Compress();
}

}  // namespace terse::compressor
