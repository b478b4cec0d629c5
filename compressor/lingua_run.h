// One compression of one prompt by the LLMLingua method, as a `Run`: the per-call state that the
// coarse step (lingua_coarse.cc), the fine step (lingua_fine.cc) and the budget
// (lingua_budget.cc) share, and the run that chains them (lingua_run.cc). Internal to
// compressor/: callers use Compressor (compressor.h).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compressor/compressor.h"
#include "compressor/language_model.h"
#include "compressor/lingua_budget.h"
#include "compressor/lingua_text.h"
#include "compressor/lm_tokenizer.h"
#include "compressor/target_tokenizer.h"

namespace terse::compressor::lingua {

// What joins the non-empty parts of a prompt, in the output and while scoring.
inline constexpr std::string_view kJoin = "\n\n";

// Scores are rounded to this step before they are compared, so the last bits of a float (which
// may differ between a batched and an unbatched forward pass) cannot change a decision.
inline constexpr double kScoreQuantum = 1.0 / 1024;
inline double Quantize(double x) { return std::round(x / kScoreQuantum) * kScoreQuantum; }

// True when `s` holds nothing but ASCII whitespace.
bool IsBlank(std::string_view s);

// The weight of a digit piece's surprisal against other pieces': ln(vocab_size) / ln(10). A
// digit's surprisal is bounded by ln 10 where a word piece's reaches ln V, so in raw nats a digit
// the model could not guess at all weighs less than a guessable word; scaled, both weigh as
// "unpredictable among the alternatives of their kind", and numbers keep their rank as values.
double DigitScale(int32_t vocab_size);

// The non-empty strings of `parts`, joined with kJoin.
std::string Join(const std::vector<std::string_view>& parts);

enum class PartKind { kInstruction, kItem, kQuestion };

// One part of the prompt: the instruction, one context item or the question, as units (what is
// kept or dropped), the scoring model's tokens over them, and the decisions taken so far.
struct Part {
  PartKind kind = PartKind::kItem;
  size_t item = 0;  // original context index, for kItem
  MarkedText marked;
  Layout layout;
  std::vector<LmToken> tokens;       // offsets into marked.text
  std::vector<int32_t> token_unit;   // first unit a token touches; -1: whitespace only
  std::vector<int32_t> token_units;  // how many units it touches
  std::vector<int32_t> unit_tokens;  // per unit: tokens whose first unit it is
  std::vector<float> token_scale;    // per token: its surprisal's weight (DigitScale for digits)
  std::vector<double> cost;          // per unit, estimated target tokens
  std::vector<double> score;         // per unit; higher = more worth keeping
  std::vector<bool> scored;          // per unit
  std::vector<int> group;            // per unit: index into Run's groups; -1 when forced
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

// One compression, start to end. Holds the per-call state; nothing here is shared, so a Run is
// used by one thread (the fine step's helper threads only touch the model's sessions).
class Run {
 public:
  Run(LanguageModel& lm, const LmTokenizer& tokenizer, const TargetTokenizer& target,
      const Prompt& prompt, const CompressOptions& options)
      : lm_(lm), tok_(tokenizer), target_(target), prompt_(prompt), o_(options) {}

  // Compressor::Compress without the input checks and the cache: the options are valid.
  absl::StatusOr<CompressResult> Compress();

 private:
  // The parts and the result (lingua_run.cc).
  absl::Status BuildPart(PartKind kind, size_t item, std::string_view text);
  absl::Status EncodePiecewise(Part& p) const;
  double UnitCost(const Part& p, size_t u);
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;
  // The target size in target tokens, and budgeted_.
  size_t SetTarget();
  // Why the prompt is returned as it is, if it is.
  std::optional<std::string> WhyUnchanged() const;
  // Part indices of the output, in output order.
  std::vector<size_t> OutputParts() const;
  // JSON values whose strings shrank must still parse; any that does not is kept whole.
  void KeepJsonValid();
  CompressResult Unchanged(std::string reason) const;
  CompressResult Finish();
  // Joins r's instruction, context and question into r.prompt and counts it against the origin.
  void Total(CompressResult& r) const;
  std::vector<CompressResult::Piece> Explain() const;

  // The coarse step (lingua_coarse.cc): which items survive, in which order, and the target of
  // every part in exact target tokens (one per part; 0 for dropped items).
  absl::StatusOr<std::vector<double>> SelectItems(size_t target);
  BudgetInput CoarseBudgetInput(const std::vector<size_t>& items, size_t target,
                                const std::vector<bool>& forced_item) const;
  bool NeedsRanking(const std::vector<size_t>& items, const BudgetInput& in) const;
  absl::StatusOr<std::vector<double>> RankItems(const std::vector<size_t>& items);
  absl::StatusOr<std::vector<double>> RankItemsByQuestion(const std::vector<size_t>& items);
  absl::StatusOr<std::vector<double>> RankItemsByPerplexity(const std::vector<size_t>& items);
  absl::Status FilterSentences(const std::vector<size_t>& items, double item_budget);
  void SpreadOverFilteredItems(const std::vector<size_t>& items, const BudgetPlan& plan,
                               std::vector<double>& part_target) const;

  // The fine step (lingua_fine.cc): every output part, segment by segment, against the
  // compressed past.
  absl::Status CompressFine();

  // The budget (lingua_budget.cc): group targets, then the exact count.
  void SetGroups(Part& p, double part_target);
  size_t CountOutput(const std::vector<bool>& flat);
  void Correct(size_t target);

  // Constant for the run.
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

}  // namespace terse::compressor::lingua
