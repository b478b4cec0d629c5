// The TorchScript backend of LanguageModel: one worker thread owns the module and runs every
// forward pass; callers queue steps (one sequence each) and wait on futures. The worker batches
// queued steps with right padding and an attention mask, including session steps whose KV
// caches have different lengths (each cache is padded to the longest; the mask hides the gap).
#include "compressor/torch_language_model.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <new>
#include <numeric>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "compressor/language_model.h"

namespace terse::compressor {
namespace {

std::string MessageOf(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

// LibTorch failures as statuses; out-of-memory is reported as such so callers can shed load.
absl::Status FromException(const std::exception& e, absl::string_view what) {
  const std::string message = MessageOf(e);
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr ||
      absl::StrContains(message, "out of memory") ||
      absl::StrContains(message, "not enough memory")) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": ", message));
  }
  return absl::InternalError(absl::StrCat(what, ": ", message));
}

// One forward pass over one sequence: the unit the worker batches.
struct Step {
  std::vector<int64_t> ids;
  std::vector<torch::Tensor> past;  // k0, v0, k1, v1, ...: each [1, H, P, hd]; empty when P = 0
  std::vector<int64_t> targets;     // targets[j]: token scored after ids[j], or -1
  bool keep_past = false;           // return the cache extended with ids
  bool keep_last_row = false;       // return log-probs of the token after the last id

  int64_t past_length() const { return past.empty() ? 0 : past[0].size(2); }
};

struct StepResult {
  std::vector<float> nll;           // -log p(targets[j]) for each j with targets[j] >= 0
  std::vector<torch::Tensor> past;  // when keep_past
  std::vector<float> last_row;      // when keep_last_row: vocab_size log-probs
};

using Clock = std::chrono::steady_clock;

// A queued step, or a task that must run alone on the worker thread (probes).
struct Pending {
  Step step;
  std::function<absl::Status()> task;
  std::promise<absl::StatusOr<StepResult>> done;
  std::thread::id caller;
  Clock::time_point enqueued;
};

class Engine {
 public:
  Engine(torch::jit::Module module, ModelShape shape, torch::Device device,
         const LanguageModelOptions& options)
      : module_(std::move(module)),
        shape_(shape),
        device_(device),
        threads_(options.threads > 0
                     ? options.threads
                     : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
        max_batch_size_(options.max_batch_size),
        max_batch_wait_(std::chrono::microseconds(options.max_batch_wait_us)),
        batch_token_budget_(shape.max_context) {
    worker_ = std::thread([this] { Loop(); });
  }

  ~Engine() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    wake_.SignalAll();
    worker_.join();
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelShape& shape() const { return shape_; }
  const torch::Device& device() const { return device_; }

  // Runs every step (batched with whatever else is queued) and blocks until all are done;
  // result i belongs to steps[i].
  std::vector<absl::StatusOr<StepResult>> Run(std::vector<Step> steps) {
    std::vector<std::future<absl::StatusOr<StepResult>>> futures;
    futures.reserve(steps.size());
    {
      absl::MutexLock lock(&mu_);
      const auto now = Clock::now();
      const auto caller = std::this_thread::get_id();
      last_seen_[caller] = now;
      for (Step& step : steps) {
        auto pending = std::make_unique<Pending>();
        pending->step = std::move(step);
        pending->caller = caller;
        pending->enqueued = now;
        futures.push_back(pending->done.get_future());
        queue_.push_back(std::move(pending));
      }
    }
    wake_.Signal();
    std::vector<absl::StatusOr<StepResult>> results;
    results.reserve(futures.size());
    for (auto& future : futures) results.push_back(future.get());
    return results;
  }

  // Runs `task` alone on the worker thread.
  absl::Status RunTask(std::function<absl::Status()> task) {
    auto pending = std::make_unique<Pending>();
    pending->task = std::move(task);
    pending->caller = std::this_thread::get_id();
    pending->enqueued = Clock::now();
    auto future = pending->done.get_future();
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back(std::move(pending));
    }
    wake_.Signal();
    return future.get().status();
  }

  InferenceStats stats() const {
    absl::MutexLock lock(&mu_);
    InferenceStats stats = stats_;
    stats.queued = static_cast<int64_t>(queue_.size());
    return stats;
  }

 private:
  void Loop() {
    // OpenMP thread counts are per calling thread: set them on the thread that runs the model.
    at::set_num_threads(threads_);
    c10::InferenceMode inference_mode;
    while (true) {
      std::vector<std::unique_ptr<Pending>> batch;
      {
        absl::MutexLock lock(&mu_);
        while (!stop_ && queue_.empty()) wake_.Wait(&mu_);
        if (queue_.empty()) return;  // stopping and drained
        if (max_batch_size_ > 1) {
          const auto deadline = queue_.front()->enqueued + max_batch_wait_;
          while (!stop_ && ShouldWaitForCompany(Clock::now()) && Clock::now() < deadline) {
            wake_.WaitWithDeadline(&mu_, absl::Now() + absl::FromChrono(deadline - Clock::now()));
          }
        }
        batch = TakeBatch();
      }
      const auto started = Clock::now();
      Execute(batch);
      {
        absl::MutexLock lock(&mu_);
        last_batch_duration_ = Clock::now() - started;
      }
    }
  }

  // Company is worth waiting for while callers active a moment ago have nothing queued yet and
  // the batch has room: they are likely between two calls.
  bool ShouldWaitForCompany(Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (queue_.front()->task) return false;
    if (static_cast<int>(queue_.size()) >= max_batch_size_) return false;
    int64_t queued_tokens = 0;
    std::vector<std::thread::id> queued_callers;
    for (const auto& p : queue_) {
      queued_tokens += static_cast<int64_t>(p->step.ids.size());
      if (std::find(queued_callers.begin(), queued_callers.end(), p->caller) ==
          queued_callers.end()) {
        queued_callers.push_back(p->caller);
      }
    }
    if (queued_tokens >= batch_token_budget_) return false;
    const auto recent = 2 * last_batch_duration_ + 2 * max_batch_wait_;
    int active = 0;
    for (auto it = last_seen_.begin(); it != last_seen_.end();) {
      if (now - it->second > recent + std::chrono::seconds(10)) {
        it = last_seen_.erase(it);  // forget long-gone callers
        continue;
      }
      if (now - it->second <= recent) ++active;
      ++it;
    }
    return static_cast<int>(queued_callers.size()) < active;
  }

  // The oldest step plus queued steps compatible with it (same kind: with or without a cache),
  // while the padded batch stays within the token budget and not much larger than the real
  // work. Long sequences run alone: on a CPU, batching them only thrashes the caches.
  std::vector<std::unique_ptr<Pending>> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::unique_ptr<Pending>> batch;
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
    if (batch[0]->task || max_batch_size_ <= 1) return batch;
    const Step& first = batch[0]->step;
    const bool cached = !first.past.empty();
    // Work of a row ~ tokens * (per-token linear work in attention-key units + keys seen).
    const int64_t linear = 6 * shape_.d_model + shape_.vocab_size / (2 * shape_.n_layer);
    int64_t t_max = static_cast<int64_t>(first.ids.size());
    int64_t p_max = first.past_length();
    int64_t real = t_max * (linear + p_max + t_max);
    for (auto it = queue_.begin();
         it != queue_.end() && static_cast<int>(batch.size()) < max_batch_size_;) {
      const Step& step = (*it)->step;
      if ((*it)->task || step.past.empty() == cached) {
        ++it;
        continue;
      }
      const int64_t t = static_cast<int64_t>(step.ids.size());
      const int64_t p = step.past_length();
      const int64_t b = static_cast<int64_t>(batch.size()) + 1;
      const int64_t nt = std::max(t_max, t);
      const int64_t np = std::max(p_max, p);
      const int64_t padded_cost = b * nt * (linear + np + nt);
      const int64_t real_cost = real + t * (linear + p + t);
      if (b * nt > batch_token_budget_ || 2 * padded_cost > 3 * real_cost) {
        ++it;
        continue;
      }
      t_max = nt;
      p_max = np;
      real = real_cost;
      batch.push_back(std::move(*it));
      it = queue_.erase(it);
    }
    return batch;
  }

  void Execute(std::vector<std::unique_ptr<Pending>>& batch) {
    if (batch.size() == 1 && batch[0]->task) {
      absl::Status status;
      try {
        status = batch[0]->task();
      } catch (const std::exception& e) {
        status = FromException(e, "language model task failed");
      }
      if (status.ok()) {
        batch[0]->done.set_value(StepResult{});
      } else {
        batch[0]->done.set_value(status);
      }
      return;
    }
    absl::StatusOr<std::vector<StepResult>> results = Forward(batch);
    if (!results.ok() && batch.size() > 1) {
      // A batch can fail where its parts would not (memory): retry each step alone.
      for (auto& pending : batch) {
        std::vector<std::unique_ptr<Pending>> one;
        one.push_back(std::move(pending));
        Execute(one);
      }
      return;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (results.ok()) {
        batch[i]->done.set_value(std::move((*results)[i]));
      } else {
        batch[i]->done.set_value(results.status());
      }
    }
  }

  absl::StatusOr<std::vector<StepResult>> Forward(
      const std::vector<std::unique_ptr<Pending>>& batch) {
    try {
      return ForwardOrThrow(batch);
    } catch (const std::exception& e) {
      return FromException(e, "language model forward pass failed");
    }
  }

  std::vector<StepResult> ForwardOrThrow(const std::vector<std::unique_ptr<Pending>>& batch) {
    const int64_t b = static_cast<int64_t>(batch.size());
    int64_t t_max = 0;
    int64_t p_max = 0;
    int64_t real_tokens = 0;
    for (const auto& pending : batch) {
      t_max = std::max<int64_t>(t_max, pending->step.ids.size());
      p_max = std::max(p_max, pending->step.past_length());
      real_tokens += static_cast<int64_t>(pending->step.ids.size());
    }
    const auto cpu_long = torch::TensorOptions().dtype(torch::kInt64);
    torch::Tensor ids = torch::full({b, t_max}, shape_.pad_id, cpu_long);
    torch::Tensor targets = torch::zeros({b, t_max}, cpu_long);
    bool padded = false;
    {
      auto ids_a = ids.accessor<int64_t, 2>();
      auto targets_a = targets.accessor<int64_t, 2>();
      for (int64_t i = 0; i < b; ++i) {
        const Step& step = batch[i]->step;
        for (size_t j = 0; j < step.ids.size(); ++j) {
          ids_a[i][j] = step.ids[j];
          targets_a[i][j] = std::max<int64_t>(step.targets[j], 0);
        }
        padded |= static_cast<int64_t>(step.ids.size()) != t_max || step.past_length() != p_max;
      }
    }

    // Keys: [0, P_i) the row's cache, [P_i, p_max) padding, then its T_i new tokens, then
    // padding. Positions follow the mask, so a padded row sees the positions it would alone.
    torch::jit::IValue mask;  // None
    if (padded) {
      torch::Tensor m = torch::zeros({b, p_max + t_max}, cpu_long);
      for (int64_t i = 0; i < b; ++i) {
        const Step& step = batch[i]->step;
        m[i].narrow(0, 0, step.past_length()).fill_(1);
        m[i].narrow(0, p_max, static_cast<int64_t>(step.ids.size())).fill_(1);
      }
      mask = m.to(device_);
    }
    c10::List<at::Tensor> past;
    if (p_max > 0) {
      if (b == 1) {
        for (const torch::Tensor& t : batch[0]->step.past) past.push_back(t);
      } else {
        const size_t n_past = batch[0]->step.past.size();
        for (size_t l = 0; l < n_past; ++l) {
          const torch::Tensor& like = batch[0]->step.past[l];
          torch::Tensor joined =
              torch::zeros({b, like.size(1), p_max, like.size(3)}, like.options());
          for (int64_t i = 0; i < b; ++i) {
            const torch::Tensor& own = batch[i]->step.past[l];
            joined[i].narrow(1, 0, own.size(2)).copy_(own[0]);
          }
          past.push_back(joined);
        }
      }
    }

    torch::jit::IValue output = module_.run_method("forward_cached", ids.to(device_), past, mask);
    const auto& tuple = output.toTupleRef().elements();
    torch::Tensor logits = tuple.at(0).toTensor();
    c10::List<at::Tensor> new_past = tuple.at(1).toTensorList();
    TORCH_CHECK(logits.dim() == 3 && logits.size(0) == b && logits.size(1) == t_max &&
                    logits.size(2) == shape_.vocab_size,
                "forward_cached returned logits of shape ", logits.sizes(), ", expected [", b, ", ",
                t_max, ", ", shape_.vocab_size, "]");
    TORCH_CHECK(new_past.size() == static_cast<size_t>(shape_.past_tensors),
                "forward_cached returned ", new_past.size(), " cache tensors, expected ",
                shape_.past_tensors);

    // Normalise only the positions some row reads (later windows score just their tail).
    int64_t first_read = t_max;
    for (const auto& pending : batch) {
      const Step& step = pending->step;
      const int64_t t = static_cast<int64_t>(step.ids.size());
      if (step.keep_last_row) first_read = std::min(first_read, t - 1);
      for (int64_t j = 0; j < std::min(t, first_read); ++j) {
        if (step.targets[j] >= 0) {
          first_read = j;
          break;
        }
      }
    }
    first_read = std::min(first_read, t_max - 1);
    const int64_t read = t_max - first_read;
    // -log p(target) = logsumexp(row) - row[target]: no normalised [B, T, V] tensor is written.
    const torch::Tensor rows = logits.narrow(1, first_read, read).to(torch::kFloat32);
    const torch::Tensor picked =
        rows.gather(2, targets.narrow(1, first_read, read).to(device_).unsqueeze(2)).squeeze(2);
    torch::Tensor nll = (torch::logsumexp(rows, -1) - picked).to(torch::kCPU);
    auto nll_a = nll.accessor<float, 2>();

    std::vector<StepResult> results(b);
    for (int64_t i = 0; i < b; ++i) {
      const Step& step = batch[i]->step;
      StepResult& result = results[i];
      const int64_t t = static_cast<int64_t>(step.ids.size());
      for (int64_t j = first_read; j < t; ++j) {
        if (step.targets[j] >= 0) result.nll.push_back(nll_a[i][j - first_read]);
      }
      if (step.keep_last_row) {
        torch::Tensor row =
            torch::log_softmax(rows[i][t - 1 - first_read], -1).to(torch::kCPU).contiguous();
        result.last_row.assign(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
      }
      if (step.keep_past) {
        const int64_t p = step.past_length();
        result.past.reserve(new_past.size());
        for (size_t l = 0; l < new_past.size(); ++l) {
          torch::Tensor full = new_past.get(l);
          if (!padded) {
            result.past.push_back(b == 1 ? full : full.narrow(0, i, 1).clone());
          } else if (p == p_max) {
            // clone(): a view would keep the whole batch's cache alive.
            result.past.push_back(full.narrow(0, i, 1).narrow(2, 0, p_max + t).clone());
          } else {
            torch::Tensor row = full.narrow(0, i, 1);
            result.past.push_back(torch::cat({row.narrow(2, 0, p), row.narrow(2, p_max, t)}, 2));
          }
        }
      }
    }

    absl::MutexLock lock(&mu_);
    ++stats_.batches;
    stats_.steps += b;
    stats_.max_batch_steps = std::max(stats_.max_batch_steps, b);
    stats_.tokens += real_tokens;
    stats_.padded_tokens += b * t_max;
    return results;
  }

  // Constant after construction; module_ is touched only by the worker thread.
  torch::jit::Module module_;
  const ModelShape shape_;
  const torch::Device device_;
  const int threads_;
  const int max_batch_size_;
  const std::chrono::microseconds max_batch_wait_;
  const int64_t batch_token_budget_;  // most padded tokens in one forward pass

  mutable absl::Mutex mu_;
  absl::CondVar wake_;  // a step was queued, or stop_ was set
  std::deque<std::unique_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // When each caller thread last queued work: callers seen lately are expected back soon.
  std::map<std::thread::id, Clock::time_point> last_seen_ ABSL_GUARDED_BY(mu_);
  Clock::duration last_batch_duration_ ABSL_GUARDED_BY(mu_) = Clock::duration::zero();
  InferenceStats stats_ ABSL_GUARDED_BY(mu_);

  std::thread worker_;  // last: starts after every other member exists
};

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
// a session slides every few segments (a segment needs room after the past): with a 512-token
// context and 200-token segments keeping half, a quarter-context tail re-ran 32% of the tokens
// scored and an eighth 11%, for a past that still spans 64 compressed tokens (a few hundred of
// the original) after a slide.
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
  explicit TorchSession(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {
    window_.tokens.push_back(engine_->shape().bos_id);
  }

  absl::StatusOr<std::vector<float>> Score(std::span<const int32_t> tokens) override {
    if (absl::Status s = CheckTokens(tokens, engine_->shape().vocab_size); !s.ok()) return s;
    std::vector<float> scores;
    if (tokens.empty()) return scores;
    const int64_t context = engine_->shape().max_context;
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

  absl::Status AppendScored(const std::vector<bool>& keep) override {
    if (!scored_.has_value()) {
      return absl::FailedPreconditionError(
          "AppendScored needs a Score since the past last changed");
    }
    if (keep.size() != scored_->tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat("AppendScored got ", keep.size(),
                                                     " keep flags for ",
                                                     scored_->tokens.size(), " scored tokens"));
    }
    std::vector<int32_t> kept;
    for (size_t j = 0; j < keep.size(); ++j) {
      if (keep[j]) kept.push_back(scored_->tokens[j]);
    }
    if (!scored_->reusable) return Append(kept);
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
      const torch::Tensor rows =
          torch::tensor(index, torch::TensorOptions().dtype(torch::kInt64))
              .to(engine_->device());
      grown.past.reserve(scored_->window.past.size());
      for (const torch::Tensor& t : scored_->window.past) {
        grown.past.push_back(t.index_select(2, rows));
      }
    } catch (const std::exception& e) {
      return FromException(e, "language model cache selection failed");
    }
    SetWindow(std::move(grown));
    past_length_ += static_cast<int>(kept.size());
    return absl::OkStatus();
  }

  absl::Status Append(std::span<const int32_t> tokens) override {
    if (absl::Status s = CheckTokens(tokens, engine_->shape().vocab_size); !s.ok()) return s;
    if (tokens.empty()) return absl::OkStatus();
    Window grown = window_;
    if (absl::Status s = Extend(grown, tokens, nullptr, nullptr); !s.ok()) return s;
    SetWindow(std::move(grown));
    past_length_ += static_cast<int>(tokens.size());
    return absl::OkStatus();
  }

  int past_length() const override { return past_length_; }

 private:
  void SetWindow(Window window) {
    window_ = std::move(window);
    scored_.reset();
  }

  // Runs `tokens` after the window in chunks that fit the context, sliding when full; counts
  // the forward passes it ran in `forwards` when given.
  absl::Status Extend(Window& window, std::span<const int32_t> tokens, std::vector<float>* scores,
                      int* forwards) {
    const int64_t context = engine_->shape().max_context;
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
    Step step;
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
    std::vector<Step> steps;
    steps.push_back(std::move(step));
    absl::StatusOr<StepResult> result = std::move(engine_->Run(std::move(steps))[0]);
    if (!result.ok()) return result.status();
    if (scores != nullptr) {
      if (pending == 0) scores->push_back(-window.next[chunk[0]]);
      scores->insert(scores->end(), result->nll.begin(), result->nll.end());
    }
    window.tokens.insert(window.tokens.end(), chunk.begin(), chunk.end());
    window.past = std::move(result->past);
    window.encoded = static_cast<int64_t>(window.tokens.size());
    window.next = std::move(result->last_row);
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
    Step step;
    step.ids.assign(window.tokens.end() - keep_tail, window.tokens.end());
    step.targets.assign(step.ids.size(), -1);
    for (const torch::Tensor& t : window.past) step.past.push_back(t.narrow(2, 0, kSinkTokens));
    step.keep_past = true;
    step.keep_last_row = true;
    std::vector<Step> steps;
    steps.push_back(std::move(step));
    absl::StatusOr<StepResult> result = std::move(engine_->Run(std::move(steps))[0]);
    if (!result.ok()) return result.status();
    std::vector<int64_t> kept(window.tokens.begin(), window.tokens.begin() + kSinkTokens);
    kept.insert(kept.end(), window.tokens.end() - keep_tail, window.tokens.end());
    window.tokens = std::move(kept);
    window.past = std::move(result->past);
    window.encoded = static_cast<int64_t>(window.tokens.size());
    window.next = std::move(result->last_row);
    return absl::OkStatus();
  }

  // Tokens after the sink that a slide keeps.
  int64_t SlideTail() const { return engine_->shape().max_context / 8; }

  std::shared_ptr<Engine> engine_;  // shared: a session may outlive its LanguageModel handle
  Window window_;
  std::optional<Scored> scored_;  // the last Score, while window_ is what it extended
  int past_length_ = 0;           // tokens appended so far, dropped ones included
};

class TorchLanguageModel : public LanguageModel {
 public:
  TorchLanguageModel(std::shared_ptr<Engine> engine, std::string digest)
      : engine_(std::move(engine)), digest_(std::move(digest)) {}

  absl::StatusOr<std::vector<std::vector<float>>> ScoreSequences(
      const std::vector<std::vector<int32_t>>& sequences) override {
    std::vector<std::vector<int32_t>> empty(sequences.size());
    return ScoreTails(sequences, empty, /*tails_only=*/false);
  }

  absl::StatusOr<std::vector<std::vector<float>>> ScoreContinuations(
      const std::vector<std::vector<int32_t>>& prefixes,
      const std::vector<std::vector<int32_t>>& targets) override {
    if (prefixes.size() != targets.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ScoreContinuations needs one target per prefix, got ", prefixes.size(),
                       " prefixes and ", targets.size(), " targets"));
    }
    return ScoreTails(prefixes, targets, /*tails_only=*/true);
  }

  std::unique_ptr<Session> NewSession() override { return std::make_unique<TorchSession>(engine_); }

  int max_context() const override { return engine_->shape().max_context; }
  int vocab_size() const override { return engine_->shape().vocab_size; }
  std::string device() const override { return engine_->device().str(); }
  const std::string& digest() const override { return digest_; }

  Engine& engine() const { return *engine_; }

 private:
  // Scores heads[i] + tails[i] after BOS; all of it, or only the tail when tails_only.
  absl::StatusOr<std::vector<std::vector<float>>> ScoreTails(
      const std::vector<std::vector<int32_t>>& heads,
      const std::vector<std::vector<int32_t>>& tails, bool tails_only) {
    const ModelShape& shape = engine_->shape();
    std::vector<Step> steps;
    std::vector<size_t> owner;  // steps[k] scores part of sequence owner[k]
    for (size_t i = 0; i < heads.size(); ++i) {
      std::vector<int32_t> joined = heads[i];
      joined.insert(joined.end(), tails[i].begin(), tails[i].end());
      if (absl::Status s = CheckTokens(joined, shape.vocab_size); !s.ok()) return s;
      const size_t from = tails_only ? heads[i].size() : 0;
      for (ScoringWindow& w : PlanWindows(joined, from, shape.bos_id, shape.max_context)) {
        Step& step = steps.emplace_back();
        step.ids = std::move(w.ids);
        step.targets = std::move(w.targets);
        owner.push_back(i);
      }
    }
    std::vector<std::vector<float>> scores(heads.size());
    if (steps.empty()) return scores;
    std::vector<absl::StatusOr<StepResult>> results = engine_->Run(std::move(steps));
    for (size_t k = 0; k < results.size(); ++k) {
      if (!results[k].ok()) return results[k].status();
      std::vector<float>& out = scores[owner[k]];
      out.insert(out.end(), results[k]->nll.begin(), results[k]->nll.end());
    }
    return scores;
  }

  std::shared_ptr<Engine> engine_;
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
      return absl::InvalidArgumentError(
          absl::StrCat("TorchScript model past_tensors ", *v, " is neither 2 * n_layer (",
                       2 * shape.n_layer, ") nor one more"));
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
                                                   options.model_dir, "/model.pt: ", MessageOf(e)));
  }
  absl::StatusOr<ModelShape> shape = ReadShape(module);
  if (!shape.ok()) return shape.status();

  auto engine = std::make_shared<Engine>(std::move(module), *shape, *device, options);
  auto model = std::make_unique<TorchLanguageModel>(engine, std::move(digest));
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

InferenceStats StatsOf(const LanguageModel& model) {
  const auto* torch_model = dynamic_cast<const TorchLanguageModel*>(&model);
  return torch_model == nullptr ? InferenceStats{} : torch_model->engine().stats();
}

absl::Status RunOnWorker(const LanguageModel& model, std::function<void()> task) {
  const auto* torch_model = dynamic_cast<const TorchLanguageModel*>(&model);
  if (torch_model == nullptr) {
    return absl::InvalidArgumentError("not a TorchScript language model");
  }
  return torch_model->engine().RunTask([&task] {
    task();
    return absl::OkStatus();
  });
}

absl::StatusOr<ModelShape> ShapeOf(const LanguageModel& model) {
  const auto* torch_model = dynamic_cast<const TorchLanguageModel*>(&model);
  if (torch_model == nullptr) {
    return absl::InvalidArgumentError("not a TorchScript language model");
  }
  return torch_model->engine().shape();
}

absl::StatusOr<double> MeasureMatmulFlops(const LanguageModel& model, int rows, int repeats,
                                          bool bf16) {
  const auto* torch_model = dynamic_cast<const TorchLanguageModel*>(&model);
  if (torch_model == nullptr) {
    return absl::InvalidArgumentError("not a TorchScript language model");
  }
  Engine& engine = torch_model->engine();
  const ModelShape shape = engine.shape();
  double flops_per_second = 0;
  absl::Status status = engine.RunTask([&]() -> absl::Status {
    const auto options = torch::TensorOptions()
                             .dtype(bf16 ? torch::kBFloat16 : torch::kFloat32)
                             .device(engine.device());
    const int64_t d = shape.d_model;
    // The products of one forward pass: per layer qkv, attention out, MLP in and out; LM head.
    std::vector<std::pair<torch::Tensor, torch::Tensor>> products;
    double flops = 0;
    auto add = [&](int64_t k, int64_t n) {
      products.emplace_back(torch::randn({rows, k}, options), torch::randn({k, n}, options));
      flops += 2.0 * rows * k * n;
    };
    for (int l = 0; l < shape.n_layer; ++l) {
      add(d, 3 * d);
      add(d, d);
      add(d, 4 * d);
      add(4 * d, d);
    }
    add(d, shape.vocab_size);
    auto run_all = [&] {
      for (const auto& [a, w] : products) torch::mm(a, w);
      if (engine.device().is_cuda()) torch::cuda::synchronize();
    };
    run_all();  // warm-up
    const auto start = Clock::now();
    for (int r = 0; r < repeats; ++r) run_all();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    flops_per_second = flops * repeats / seconds;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return flops_per_second;
}

}  // namespace terse::compressor
