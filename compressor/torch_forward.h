// The TorchScript forward pass the batch scheduler feeds: a batch of steps becomes one call of the
// module's forward_cached, with right padding and an attention mask, including steps whose KV
// caches have different lengths (each cache is padded to the longest; the mask hides the gap).
// Internal to compressor/: this header includes LibTorch.
#pragma once

#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "compressor/batch_scheduler.h"
#include "compressor/language_model.h"
#include "compressor/torch_language_model.h"

namespace terse::compressor {

// One forward pass over one sequence, and its result.
struct TorchStep final : BatchStep {
  std::vector<int64_t> ids;
  // ModelShape::past_tensors tensors: k0, v0, k1, v1, ..., each [1, H, P, hd], then with the
  // copy component the window's ids as [1, 1, P, 1]. Empty when P = 0.
  std::vector<torch::Tensor> past;
  std::vector<int64_t> targets;  // targets[j]: token scored after ids[j], or -1
  bool keep_past = false;        // return the cache extended with ids
  bool keep_last_row = false;    // return log-probs of the token after the last id

  // Filled by TorchForward::Execute.
  std::vector<float> nll;               // -log p(targets[j]) for each j with targets[j] >= 0
  std::vector<torch::Tensor> new_past;  // when keep_past
  std::vector<float> last_row;          // when keep_last_row: vocab_size log-probs

  int64_t new_tokens() const override { return static_cast<int64_t>(ids.size()); }
  int64_t past_tokens() const override { return past.empty() ? 0 : past[0].size(2); }
  bool cached() const override { return !past.empty(); }
};

// Runs batches of TorchSteps through the module on the scheduler's worker thread, which alone
// touches the module.
class TorchForward final : public BatchExecutor {
 public:
  // `threads`: intra-op threads of the worker (> 0).
  TorchForward(torch::jit::Module module, const ModelShape& shape, torch::Device device,
               int threads);

  void Serve(const std::function<void()>& serve) override;
  absl::Status Execute(std::span<BatchStep* const> batch) override;

  const ModelShape& shape() const { return shape_; }
  const torch::Device& device() const { return device_; }

 private:
  // Execute's work; LibTorch reports failures by throwing.
  void ExecuteOrThrow(std::span<TorchStep* const> batch);

  // Constant after construction; module_ is touched only by the worker thread.
  torch::jit::Module module_;
  const ModelShape shape_;
  const torch::Device device_;
  const int threads_;
};

// What a model handle and its sessions share: the forward pass and the scheduler that feeds it.
// Thread-safe.
class TorchBackend {
 public:
  TorchBackend(torch::jit::Module module, const ModelShape& shape, torch::Device device,
               const LanguageModelOptions& options);

  const TorchForward& forward() const { return forward_; }
  BatchScheduler& scheduler() { return scheduler_; }

 private:
  TorchForward forward_;
  BatchScheduler scheduler_;  // after forward_: its worker stops before the module goes
};

}  // namespace terse::compressor
