// Internals of the TorchScript LanguageModel that need no LibTorch type: the window plan for long
// sequences (language_model.cc), the module's shape, the loader LanguageModel::Load calls, and
// the way in for the probes (language_model_probes.h). Only compressor/*.cc files include torch.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compressor/language_model.h"

namespace terse::compressor {

class TorchBackend;

// Tokens at the start of a sequence (BOS included) that every window keeps when a sequence or a
// session outgrows the context: they anchor the attention the way a document start does.
inline constexpr int kSinkTokens = 4;

// Smallest context the scorer accepts: room for the sink plus a useful tail.
inline constexpr int kMinContext = 16;

// One stateless forward pass: `ids` run from position 0; targets[j] is the token scored after
// ids[j], or -1 when position j scores nothing. Concatenating the scored targets of the windows
// of a plan, in order, gives the tokens of the sequence from `score_from` on, each exactly once.
struct ScoringWindow {
  std::vector<int64_t> ids;
  std::vector<int64_t> targets;
};

// Windows that score tokens[score_from..] after BOS. A sequence that fits (BOS + tokens within
// max_context) is one window. A longer one is cut into windows of max_context tokens: the first
// starts at BOS; each later one is the sink tokens followed by the next stretch, advancing by
// half the non-sink width, so every token is scored with at least that much context.
std::vector<ScoringWindow> PlanWindows(std::span<const int32_t> tokens, size_t score_from,
                                       int bos_id, int max_context);

// Architecture read from the TorchScript module.
struct ModelShape {
  int vocab_size = 0;
  int max_context = 0;
  int n_layer = 0;
  int n_head = 0;
  int d_model = 0;
  int bos_id = 0;
  int pad_id = 0;
  int past_tensors = 0;  // tensors in forward_cached's past: 2 * n_layer, plus the ids with copying
  int64_t non_embedding_params = 0;  // every parameter but the token and position embeddings
};

// Loads `model_bytes` (the contents of model.pt) as the TorchScript backend. `options` were
// validated by LanguageModel::Load.
absl::StatusOr<std::unique_ptr<LanguageModel>> LoadTorchScriptModel(
    const LanguageModelOptions& options, const std::string& model_bytes, std::string digest);

// The shared parts of the TorchScript backend behind `model` (torch_forward.h); null when
// `model` is another backend.
TorchBackend* TorchBackendOf(const LanguageModel& model);

}  // namespace terse::compressor
