// The TorchScript backend of LanguageModel: loading and checking the module, scoring whole
// sequences in windows, and sessions whose KV cache holds the compressed past. Every forward pass
// goes through the backend's BatchScheduler to its TorchForward (torch_forward.h), so callers
// never touch the module.
#include "compressor/torch_language_model.h"

#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <iterator>
#include <numeric>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compressor/exception_status.h"
#include "compressor/language_model.h"
#include "compressor/torch_forward.h"

namespace terse::compressor {
namespace {

absl::Status CheckTokens(std::span<const int32_t> tokens, int vocab_size) {
  for (int32_t token : tokens) {
    if (token < 0 || token >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", token, " is outside the model's vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

// The cached part of a session: a window of the compressed past, its KV cache and the
// log-probs of whatever comes next.
//
// With learned absolute positions a cache entry is only valid at the position it was computed
// at, so dropping entries from the middle would leave the kept tail at stale positions. When the
// window is full it therefore keeps the sink tokens' entries (positions 0..3, unchanged) and
// re-encodes the newest eighth of a context of tokens after them once. The tail is short because
// a session slides every few segments (a segment needs room after the past), and every slide
// re-runs the tail: an eighth keeps that cost small while the past still spans several segments
// of the original.
struct Window {
  std::vector<int64_t> tokens;      // BOS, then the past (its most recent part once slid)
  std::vector<torch::Tensor> past;  // cache of tokens[0, encoded)
  int64_t encoded = 0;
  std::vector<float> next;  // log-probs after tokens[encoded - 1]; empty if encoded == 0
};

// What the last Score computed, kept for AppendScored while the window is what it extended.
struct Scored {
  Window window;                // the session's window extended with the scored tokens
  std::vector<int32_t> tokens;  // the scored tokens
  bool reusable = false;        // one forward pass over window + tokens, no slide in between
};

class TorchSession : public LanguageModel::Session {
 public:
  explicit TorchSession(std::shared_ptr<TorchBackend> backend) : backend_(std::move(backend)) {
    window_.tokens.push_back(shape().bos_id);
  }

  absl::StatusOr<std::vector<float>> Score(std::span<const int32_t> tokens) override {
    return CatchExceptions("language model scoring failed", [&] { return ScoreOrThrow(tokens); });
  }

  absl::Status Append(std::span<const int32_t> tokens) override {
    return CatchExceptions("language model append failed", [&] { return AppendOrThrow(tokens); });
  }

  absl::Status AppendScored(const std::vector<bool>& keep) override {
    return CatchExceptions("language model append failed",
                           [&] { return AppendScoredOrThrow(keep); });
  }

  int past_length() const override { return past_length_; }

 private:
  absl::StatusOr<std::vector<float>> ScoreOrThrow(std::span<const int32_t> tokens) {
    if (absl::Status s = CheckTokens(tokens, shape().vocab_size); !s.ok()) return s;
    std::vector<float> scores;
    if (tokens.empty()) return scores;
    const int64_t context = shape().max_context;
    if (static_cast<int64_t>(window_.tokens.size() + tokens.size()) > context &&
        static_cast<int64_t>(window_.tokens.size()) > kSinkTokens + SlideTail()) {
      // Make room once in the kept window, so the Append that usually follows does not slide.
      Window slid = window_;
      if (absl::Status s = Slide(slid); !s.ok()) return s;
      SetWindow(std::move(slid));
    }
    Scored scored;
    scored.window = window_;
    int forwards = 0;
    if (absl::Status s = Extend(scored.window, tokens, &scores, &forwards); !s.ok()) return s;
    scored.tokens.assign(tokens.begin(), tokens.end());
    scored.reusable = forwards == 1;
    scored_ = std::move(scored);
    return scores;
  }

  absl::Status AppendScoredOrThrow(const std::vector<bool>& keep) {
    if (!scored_.has_value()) {
      return absl::FailedPreconditionError(
          "AppendScored needs a Score since the past last changed");
    }
    if (keep.size() != scored_->tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat("AppendScored got ", keep.size(),
                                                     " keep flags for ", scored_->tokens.size(),
                                                     " scored tokens"));
    }
    std::vector<int32_t> kept;
    for (size_t j = 0; j < keep.size(); ++j) {
      if (keep[j]) kept.push_back(scored_->tokens[j]);
    }
    if (!scored_->reusable) return AppendOrThrow(kept);
    if (kept.empty()) return absl::OkStatus();
    // The scoring pass cached the window's tokens [0, prefix) followed by the scored tokens.
    // The last kept token stays pending: its entry and the log-probs after it come with the next
    // forward pass, which runs it first.
    const int64_t prefix = static_cast<int64_t>(window_.tokens.size());
    std::vector<int64_t> index(prefix);
    std::iota(index.begin(), index.end(), int64_t{0});
    for (size_t j = 0; j < keep.size(); ++j) {
      if (keep[j]) index.push_back(prefix + static_cast<int64_t>(j));
    }
    index.pop_back();
    Window grown;
    grown.tokens = window_.tokens;
    grown.tokens.insert(grown.tokens.end(), kept.begin(), kept.end());
    grown.encoded = static_cast<int64_t>(index.size());
    try {
      const torch::Tensor rows = torch::tensor(index, torch::TensorOptions().dtype(torch::kInt64))
                                     .to(backend_->forward().device());
      grown.past.reserve(scored_->window.past.size());
      for (const torch::Tensor& t : scored_->window.past) {
        grown.past.push_back(t.index_select(2, rows));
      }
    } catch (const std::exception& e) {
      return StatusFromException(e, "language model cache selection failed");
    }
    SetWindow(std::move(grown));
    past_length_ += static_cast<int>(kept.size());
    return absl::OkStatus();
  }

  absl::Status AppendOrThrow(std::span<const int32_t> tokens) {
    if (absl::Status s = CheckTokens(tokens, shape().vocab_size); !s.ok()) return s;
    if (tokens.empty()) return absl::OkStatus();
    Window grown = window_;
    if (absl::Status s = Extend(grown, tokens, nullptr, nullptr); !s.ok()) return s;
    SetWindow(std::move(grown));
    past_length_ += static_cast<int>(tokens.size());
    return absl::OkStatus();
  }

  void SetWindow(Window window) {
    window_ = std::move(window);
    scored_.reset();
  }

  // Runs `tokens` after the window in chunks that fit the context, sliding when full; counts
  // the forward passes it ran in `forwards` when given.
  absl::Status Extend(Window& window, std::span<const int32_t> tokens, std::vector<float>* scores,
                      int* forwards) {
    const int64_t context = shape().max_context;
    size_t done = 0;
    while (done < tokens.size()) {
      int64_t room = context - static_cast<int64_t>(window.tokens.size());
      if (room <= 0) {
        if (absl::Status s = Slide(window); !s.ok()) return s;
        if (forwards != nullptr) ++*forwards;
        room = context - static_cast<int64_t>(window.tokens.size());
        if (room <= 0) return absl::InternalError("language model session cannot make room");
      }
      const size_t take = std::min<size_t>(room, tokens.size() - done);
      if (absl::Status s = RunChunk(window, tokens.subspan(done, take), scores); !s.ok()) {
        return s;
      }
      if (forwards != nullptr) ++*forwards;
      done += take;
    }
    return absl::OkStatus();
  }

  // Encodes the window's pending tokens plus `chunk`, scoring the chunk when asked.
  absl::Status RunChunk(Window& window, std::span<const int32_t> chunk,
                        std::vector<float>* scores) {
    TorchStep step;
    step.ids.assign(window.tokens.begin() + window.encoded, window.tokens.end());
    const size_t pending = step.ids.size();
    step.ids.insert(step.ids.end(), chunk.begin(), chunk.end());
    step.targets.assign(step.ids.size(), -1);
    if (scores != nullptr) {
      for (size_t j = pending == 0 ? 0 : pending - 1; j + 1 < step.ids.size(); ++j) {
        step.targets[j] = step.ids[j + 1];
      }
    }
    step.past = window.past;
    step.keep_past = true;
    step.keep_last_row = true;
    if (absl::Status s = RunStep(step); !s.ok()) return s;
    if (scores != nullptr) {
      if (pending == 0) scores->push_back(-window.next[chunk[0]]);
      scores->insert(scores->end(), step.nll.begin(), step.nll.end());
    }
    window.tokens.insert(window.tokens.end(), chunk.begin(), chunk.end());
    window.past = std::move(step.new_past);
    window.encoded = static_cast<int64_t>(window.tokens.size());
    window.next = std::move(step.last_row);
    return absl::OkStatus();
  }

  // Keeps the sink tokens' cache and re-encodes the most recent tokens after them (pending
  // tokens among them).
  absl::Status Slide(Window& window) {
    const int64_t size = static_cast<int64_t>(window.tokens.size());
    const int64_t keep_tail = SlideTail();
    if (window.encoded < kSinkTokens || size - window.encoded > keep_tail ||
        size <= kSinkTokens + keep_tail) {
      return absl::OkStatus();
    }
    TorchStep step;
    step.ids.assign(window.tokens.end() - keep_tail, window.tokens.end());
    step.targets.assign(step.ids.size(), -1);
    for (const torch::Tensor& t : window.past) step.past.push_back(t.narrow(2, 0, kSinkTokens));
    step.keep_past = true;
    step.keep_last_row = true;
    if (absl::Status s = RunStep(step); !s.ok()) return s;
    std::vector<int64_t> kept(window.tokens.begin(), window.tokens.begin() + kSinkTokens);
    kept.insert(kept.end(), window.tokens.end() - keep_tail, window.tokens.end());
    window.tokens = std::move(kept);
    window.past = std::move(step.new_past);
    window.encoded = static_cast<int64_t>(window.tokens.size());
    window.next = std::move(step.last_row);
    return absl::OkStatus();
  }

  // Runs one step through the scheduler, batched with other callers' steps.
  absl::Status RunStep(TorchStep& step) {
    BatchStep* const steps[] = {&step};
    return backend_->scheduler().Run(steps)[0];
  }

  const ModelShape& shape() const { return backend_->forward().shape(); }

  // Tokens after the sink that a slide keeps.
  int64_t SlideTail() const { return shape().max_context / 8; }

  std::shared_ptr<TorchBackend> backend_;  // shared: a session may outlive its model handle
  Window window_;
  std::optional<Scored> scored_;  // the last Score, while window_ is what it extended
  int past_length_ = 0;           // tokens appended so far, dropped ones included
};

class TorchLanguageModel : public LanguageModel {
 public:
  TorchLanguageModel(std::shared_ptr<TorchBackend> backend, std::string digest)
      : backend_(std::move(backend)), digest_(std::move(digest)) {}

  absl::StatusOr<std::vector<std::vector<float>>> ScoreSequences(
      const std::vector<std::vector<int32_t>>& sequences) override {
    return CatchExceptions("language model scoring failed", [&] {
      std::vector<std::vector<int32_t>> empty(sequences.size());
      return ScoreTails(sequences, empty, /*tails_only=*/false);
    });
  }

  absl::StatusOr<std::vector<std::vector<float>>> ScoreContinuations(
      const std::vector<std::vector<int32_t>>& prefixes,
      const std::vector<std::vector<int32_t>>& targets) override {
    if (prefixes.size() != targets.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ScoreContinuations needs one target per prefix, got ", prefixes.size(),
                       " prefixes and ", targets.size(), " targets"));
    }
    return CatchExceptions("language model scoring failed",
                           [&] { return ScoreTails(prefixes, targets, /*tails_only=*/true); });
  }

  std::unique_ptr<Session> NewSession() override {
    return std::make_unique<TorchSession>(backend_);
  }

  int max_context() const override { return backend_->forward().shape().max_context; }
  int vocab_size() const override { return backend_->forward().shape().vocab_size; }
  std::string device() const override { return backend_->forward().device().str(); }
  const std::string& digest() const override { return digest_; }

  TorchBackend& backend() const { return *backend_; }

 private:
  // Scores heads[i] + tails[i] after BOS; all of it, or only the tail when tails_only. May throw
  // what LibTorch or the standard library throws.
  absl::StatusOr<std::vector<std::vector<float>>> ScoreTails(
      const std::vector<std::vector<int32_t>>& heads,
      const std::vector<std::vector<int32_t>>& tails, bool tails_only) {
    const ModelShape& shape = backend_->forward().shape();
    std::vector<TorchStep> steps;
    std::vector<size_t> owner;  // steps[k] scores part of sequence owner[k]
    for (size_t i = 0; i < heads.size(); ++i) {
      std::vector<int32_t> joined = heads[i];
      joined.insert(joined.end(), tails[i].begin(), tails[i].end());
      if (absl::Status s = CheckTokens(joined, shape.vocab_size); !s.ok()) return s;
      const size_t from = tails_only ? heads[i].size() : 0;
      for (ScoringWindow& w : PlanWindows(joined, from, shape.bos_id, shape.max_context)) {
        TorchStep& step = steps.emplace_back();
        step.ids = std::move(w.ids);
        step.targets = std::move(w.targets);
        owner.push_back(i);
      }
    }
    std::vector<std::vector<float>> scores(heads.size());
    if (steps.empty()) return scores;
    std::vector<BatchStep*> queued;
    queued.reserve(steps.size());
    for (TorchStep& step : steps) queued.push_back(&step);
    const std::vector<absl::Status> statuses = backend_->scheduler().Run(queued);
    for (size_t k = 0; k < steps.size(); ++k) {
      if (!statuses[k].ok()) return statuses[k];
      std::vector<float>& out = scores[owner[k]];
      out.insert(out.end(), steps[k].nll.begin(), steps[k].nll.end());
    }
    return scores;
  }

  std::shared_ptr<TorchBackend> backend_;
  const std::string digest_;
};

absl::StatusOr<int64_t> IntAttribute(const torch::jit::Module& module, const char* name) {
  if (!module.hasattr(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("TorchScript model has no integer attribute \"", name, "\""));
  }
  torch::jit::IValue value = module.attr(name);
  if (!value.isInt()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TorchScript model attribute \"", name, "\" is not an integer"));
  }
  return value.toInt();
}

absl::StatusOr<ModelShape> ReadShape(const torch::jit::Module& module) {
  ModelShape shape;
  struct Field {
    const char* name;
    int* value;
  };
  for (const Field& f : {Field{"vocab_size", &shape.vocab_size},
                         Field{"max_context", &shape.max_context}, Field{"n_layer", &shape.n_layer},
                         Field{"n_head", &shape.n_head}, Field{"d_model", &shape.d_model},
                         Field{"bos_id", &shape.bos_id}, Field{"pad_id", &shape.pad_id}}) {
    absl::StatusOr<int64_t> v = IntAttribute(module, f.name);
    if (!v.ok()) return v.status();
    *f.value = static_cast<int>(*v);
  }
  if (shape.vocab_size <= 0 || shape.n_layer <= 0 || shape.n_head <= 0 || shape.d_model <= 0) {
    return absl::InvalidArgumentError("TorchScript model has a non-positive dimension");
  }
  // Modules exported before the copy component carry keys and values only.
  shape.past_tensors = 2 * shape.n_layer;
  if (module.hasattr("past_tensors")) {
    absl::StatusOr<int64_t> v = IntAttribute(module, "past_tensors");
    if (!v.ok()) return v.status();
    if (*v < 2 * shape.n_layer || *v > 2 * shape.n_layer + 1) {
      return absl::InvalidArgumentError(absl::StrCat("TorchScript model past_tensors ", *v,
                                                     " is neither 2 * n_layer (", 2 * shape.n_layer,
                                                     ") nor one more"));
    }
    shape.past_tensors = static_cast<int>(*v);
  }
  if (shape.max_context < kMinContext) {
    return absl::InvalidArgumentError(absl::StrCat("TorchScript model max_context ",
                                                   shape.max_context, " is below ", kMinContext));
  }
  for (int id : {shape.bos_id, shape.pad_id}) {
    if (id < 0 || id >= shape.vocab_size) {
      return absl::InvalidArgumentError("TorchScript model bos_id/pad_id outside its vocabulary");
    }
  }
  if (!module.find_method("forward_cached")) {
    return absl::InvalidArgumentError("TorchScript model has no forward_cached method");
  }
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    if (absl::StartsWith(p.name, "wte.") || absl::StartsWith(p.name, "wpe.")) continue;
    shape.non_embedding_params += p.value.numel();
  }
  return shape;
}

absl::StatusOr<torch::Device> ResolveDevice(const std::string& wanted) {
  const bool cuda = torch::cuda::is_available();
  if (wanted == "cuda" && !cuda) {
    return absl::FailedPreconditionError(
        "language model device \"cuda\" requested, but LibTorch sees no CUDA device");
  }
  if (wanted == "cpu" || !cuda) return torch::Device(torch::kCPU);
  return torch::Device(torch::kCUDA, 0);
}

// Reads the module's shape, starts its worker and checks it against the scoring contract. May
// throw what LibTorch or the standard library throws.
absl::StatusOr<std::unique_ptr<LanguageModel>> StartModel(torch::jit::Module module,
                                                          torch::Device device,
                                                          const LanguageModelOptions& options,
                                                          std::string digest) {
  absl::StatusOr<ModelShape> shape = ReadShape(module);
  if (!shape.ok()) return shape.status();

  auto backend = std::make_shared<TorchBackend>(std::move(module), *shape, device, options);
  auto model = std::make_unique<TorchLanguageModel>(std::move(backend), std::move(digest));
  // One short pass checks the module against the contract before anyone relies on it.
  const int32_t probe[] = {shape->bos_id, shape->pad_id};
  absl::StatusOr<std::vector<std::vector<float>>> scores =
      model->ScoreSequences({std::vector<int32_t>(std::begin(probe), std::end(probe))});
  if (!scores.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TorchScript model in ", options.model_dir,
                     " does not follow the scoring contract: ", scores.status().message()));
  }
  return model;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LanguageModel>> LoadTorchScriptModel(
    const LanguageModelOptions& options, const std::string& model_bytes, std::string digest) {
  absl::StatusOr<torch::Device> device = ResolveDevice(options.device);
  if (!device.ok()) return device.status();
  torch::jit::Module module;
  try {
    std::istringstream in(model_bytes);
    module = torch::jit::load(in, *device);
    module.eval();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load TorchScript model from ",
                                                   options.model_dir,
                                                   "/model.pt: ", ExceptionMessage(e)));
  }
  return CatchExceptions("cannot start the TorchScript model", [&] {
    return StartModel(std::move(module), *device, options, std::move(digest));
  });
}

TorchBackend* TorchBackendOf(const LanguageModel& model) {
  const auto* torch_model = dynamic_cast<const TorchLanguageModel*>(&model);
  return torch_model == nullptr ? nullptr : &torch_model->backend();
}

}  // namespace terse::compressor
