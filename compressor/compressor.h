// Prompt compression (LLMLingua with the LongLLMLingua extensions): the public face of the
// compressor folder. Budgets are in the target LLM's tokens; README's "Compression" section
// describes the method and its options, docs/eval.md how what it keeps is measured.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/language_model.h"
#include "compressor/lingua_budget.h"

namespace terse::compressor {

class LmTokenizer;
class TargetTokenizer;
class CompressionCache;

// The parts of a prompt, compressed differently. Any part may be empty. Text may carry terse
// markup: <terse:keep>...</terse:keep> (kept verbatim) and <terse rate=0.4>...</terse> (that span
// compressed at its own rate), or LLMLingua's <llmlingua, compress=False> and
// <llmlingua, rate=0.4> tags for the same; tags never reach the output.
struct Prompt {
  std::string instruction;           // system text
  std::vector<std::string> context;  // demonstrations, documents, older turns: the items
  std::string question;              // the final ask
};

enum class RankMethod {
  kPerplexity,  // items the small LM finds least predictable first (LLMLingua)
  kQuestion,    // items that best predict the question first (LongLLMLingua), plus a share
                // of the question's words the item contains (IDF-weighted, worth one nat of
                // mean self-information), so a small LM that copies poorly still ranks well
};
using lingua::Reorder;

struct CompressOptions {
  // The budget, in target tokens: at most one of the two. With neither, only <terse rate=...>
  // spans are compressed and the rest is kept.
  std::optional<double> rate;           // fraction kept, in (0, 1]
  std::optional<size_t> target_tokens;  // absolute size of the compressed prompt
  // Verbatim by default: one lost digit or "not" in the ask changes the answer. The paper's rates
  // (instruction 0.85, question 0.9) are opt-ins; surplus item budget raises them.
  double instruction_rate = 1.0;
  double question_rate = 1.0;
  int segment_tokens = 200;       // small-LM tokens per iterative segment (8 to context/2)
  double context_budget_k = 2.0;  // coarse step keeps items until k x the item budget
  RankMethod rank = RankMethod::kPerplexity;  // kQuestion needs a question (else perplexity)
  Reorder reorder = Reorder::kOriginal;
  double dynamic_ratio = 0;      // 0: off; d: item rates spread +-d (relative) over the ranks
  bool contrastive = false;      // token score = self-information without minus with the question
  bool sentence_filter = false;  // also drop whole sentences of kept items by rank
  // The compressed past grows by re-running the kept tokens of each segment, so later segments
  // are scored against exactly the compressed text: 1 + rate forward passes instead of 1. Off
  // (the default, as in the reference implementation): kept tokens keep the cache entries
  // computed while their segment was scored.
  bool exact_past = false;
  double sentence_budget_k = 1.5;         // sentences kept until this x the item budget
  std::vector<std::string> force_tokens;  // text always kept where it occurs ("Q:", "?")
  bool keep_digits = false;               // words with digits always kept
  std::vector<size_t> forced_items;       // context indices kept whatever their rank
  bool compress_json_strings = false;     // JSON: shrink string values only (else keep JSON whole)
  bool keep_markers = true;  // line-leading Markdown markers and speaker labels always kept
  std::string target_tokenizer = "cl100k_base";  // cl100k_base | o200k_base
  size_t min_tokens = 0;  // prompts below this many target tokens are left unchanged
  bool use_cache = true;
  bool explain = false;  // fill CompressResult::explanation
};

struct CompressResult {
  struct Item {
    size_t original_index = 0;
    std::string text;   // compressed; empty when dropped
    bool kept = false;  // false: dropped by the coarse step (or nothing of it survived)
  };
  // One stretch of the original prompt (tags removed, parts joined in their original order):
  // kept or dropped. Filled when CompressOptions::explain is set.
  struct Piece {
    std::string text;
    bool kept = true;
  };

  std::string instruction;
  std::vector<Item> context;  // kept items in output order, then dropped ones by index
  std::string question;
  std::string prompt;            // non-empty parts joined with "\n\n": instruction, items, question
  size_t origin_tokens = 0;      // target tokens of the original prompt
  size_t compressed_tokens = 0;  // target tokens of `prompt`
  double rate = 1.0;             // compressed_tokens / origin_tokens
  double ms = 0;
  bool cache_hit = false;
  std::string reason;  // set when the prompt was returned unchanged: why
  std::vector<Piece> explanation;
};

absl::StatusOr<RankMethod> ParseRankMethod(std::string_view name);  // perplexity | question
absl::StatusOr<Reorder> ParseReorder(std::string_view name);        // original | rank | two_stage

// Thread-safe: any number of threads may call Compress at once; their scoring is batched by the
// LanguageModel. Deterministic: the same prompt, options, model and tokenizer always give the
// same bytes, so a stable prefix (a system prompt, fixed demonstrations) compressed on its own
// with CompressText stays byte-identical across requests and providers' prompt caches keep
// working; repeated inputs are answered from an LRU cache.
class Compressor {
 public:
  // `cache_entries` 0 disables the cache.
  static absl::StatusOr<std::unique_ptr<Compressor>> Create(
      std::shared_ptr<LanguageModel> lm, std::shared_ptr<const LmTokenizer> tokenizer,
      size_t cache_entries);
  // Loads the model and its tokenizer from options.model_dir.
  static absl::StatusOr<std::unique_ptr<Compressor>> Load(const LanguageModelOptions& options,
                                                          size_t cache_entries);
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // Errors: InvalidArgument for text that is not UTF-8, malformed terse markup or bad options
  // (rate outside (0, 1], both rate and target_tokens, a forced item out of range, unknown
  // tokenizer); NotFound when the target tokenizer's rank file is missing; model errors as the
  // LanguageModel reports them; Internal (ResourceExhausted when memory ran out) for anything
  // thrown inside, which never leaves. An empty prompt, a budget not below the prompt's size or
  // a prompt under min_tokens is returned unchanged (tags removed) with `reason` set.
  absl::StatusOr<CompressResult> Compress(const Prompt& prompt, const CompressOptions& options);

  // A prompt that is all context (one item): for plain text and for stable prefixes.
  absl::StatusOr<CompressResult> CompressText(std::string_view text,
                                              const CompressOptions& options);

  LanguageModel& language_model() const { return *lm_; }
  size_t cache_size() const;

 private:
  Compressor(std::shared_ptr<LanguageModel> lm, std::shared_ptr<const LmTokenizer> tokenizer,
             size_t cache_entries);
  absl::StatusOr<CompressResult> CompressUncached(const Prompt& prompt,
                                                  const CompressOptions& options);

  // Constant after construction.
  const std::shared_ptr<LanguageModel> lm_;
  const std::shared_ptr<const LmTokenizer> tokenizer_;
  const std::unique_ptr<CompressionCache> cache_;  // null when disabled; thread-safe itself
};

// LongLLMLingua's recovery: restores, in an LLM answer to a compressed prompt, words that the
// compression cut from inside phrases the answer quotes. Each run of two or more answer words
// that appears contiguously in `compressed` is replaced by the shortest span of `original` it was
// compressed from (when that span is longer); everything else is returned as is.
std::string RecoverAnswer(std::string_view original, std::string_view compressed,
                          std::string_view answer);

}  // namespace terse::compressor
