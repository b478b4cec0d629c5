// The public face of the compressor: input and option checks, the cache of finished
// compressions, and the hand-over to one lingua::Run per uncached call (lingua_run.h).
#include "compressor/compressor.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "compressor/compression_cache.h"
#include "compressor/exception_status.h"
#include "compressor/lingua_run.h"
#include "compressor/lm_tokenizer.h"
#include "compressor/target_tokenizer.h"
#include "compressor/target_tokenizer_text.h"

namespace terse::compressor {
namespace {

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
  // Nothing the method, its helper threads or the model throw gets past here.
  return CatchExceptions("compression failed", [&]() -> absl::StatusOr<CompressResult> {
    const auto start = std::chrono::steady_clock::now();
    const auto utf8 = [](const std::string& s, const std::string& what) -> absl::Status {
      if (IsValidUtf8(s)) return absl::OkStatus();
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
  });
}

absl::StatusOr<CompressResult> Compressor::CompressUncached(const Prompt& prompt,
                                                            const CompressOptions& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<const TargetTokenizer> target,
                   GetTargetTokenizer(options.target_tokenizer));
  lingua::Run run(*lm_, *tokenizer_, *target, prompt, options);
  return run.Compress();
}

}  // namespace terse::compressor
