// The small causal LM that scores tokens: the seam between the LLMLingua method and the runtime
// (TorchScript today). No LibTorch type appears here, so any folder may include this header.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace terse::compressor {

struct LanguageModelOptions {
  std::string model_dir = "models/terse-small-en";  // model.pt, tokenizer.json, model.json
  std::string device = "auto";                      // auto | cpu | cuda
  int threads = 0;                                  // intra-op threads; 0: number of cores
  int max_batch_size = 8;                           // sequences per forward pass
  int max_batch_wait_us = 2000;                     // how long a request waits for company
};

// Self-information is -log p(token | what precedes it), in nats.
//
// Thread-safe. One inference component owns the module and serves every caller through a
// queue, batching concurrent requests (right padding + attention mask). Callers never touch the
// module. Runtime exceptions become absl::Status (kInternal, or kResourceExhausted on OOM).
class LanguageModel {
 public:
  // Incremental state of one iterative compression: the compressed past, held in a KV cache.
  // Not thread-safe itself (one compression uses it from one thread at a time). It may outlive
  // the LanguageModel that made it.
  class Session {
   public:
    virtual ~Session() = default;
    // Self-information of each of `tokens` as a continuation of the current past (BOS when the
    // past is empty). The past is unchanged.
    virtual absl::StatusOr<std::vector<float>> Score(std::span<const int32_t> tokens) = 0;
    // Appends `tokens` to the past, extending the cache without re-running the past. Past the
    // model's context the cache slides: the first tokens stay, the oldest others are dropped
    // (Score may slide it too, to make room; the past it conditions on is then shorter).
    // On error the past is unchanged.
    virtual absl::Status Append(std::span<const int32_t> tokens) = 0;
    // Appends the tokens of the last Score call whose `keep` flag is set (keep.size() must equal
    // that call's token count), reusing the keys and values computed while scoring them instead
    // of running them again: the LLMLingua reference's approximation, where a kept token's cache
    // entry was computed with the dropped tokens still in view and later tokens take the
    // positions after the kept ones. One forward pass per segment instead of 1 + rate. Runs
    // them (as Append) when the last Score needed more than one pass (it slid); fails with
    // FailedPrecondition when the past changed after the last Score. On error the past is
    // unchanged.
    virtual absl::Status AppendScored(const std::vector<bool>& keep) = 0;
    // Tokens appended so far, BOS not counted, dropped ones included.
    virtual int past_length() const = 0;
  };

  static absl::StatusOr<std::unique_ptr<LanguageModel>> Load(const LanguageModelOptions& options);
  virtual ~LanguageModel() = default;

  // Self-information of every token of every sequence, each sequence scored independently after
  // BOS; sequences longer than the context use a sliding window. Sequences are batched together.
  virtual absl::StatusOr<std::vector<std::vector<float>>> ScoreSequences(
      const std::vector<std::vector<int32_t>>& sequences) = 0;

  // Self-information of each `targets[i]` after `prefixes[i]` (question-conditioned ranking:
  // how well an item predicts the question). Batched like ScoreSequences.
  virtual absl::StatusOr<std::vector<std::vector<float>>> ScoreContinuations(
      const std::vector<std::vector<int32_t>>& prefixes,
      const std::vector<std::vector<int32_t>>& targets) = 0;

  virtual std::unique_ptr<Session> NewSession() = 0;

  virtual int max_context() const = 0;
  virtual int vocab_size() const = 0;
  virtual std::string device() const = 0;          // "cpu" or "cuda:0"
  virtual const std::string& digest() const = 0;   // identifies the weights (cache keys)
};

}  // namespace terse::compressor
