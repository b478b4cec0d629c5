// The inference component's queue, apart from any runtime: one worker thread takes the steps
// callers queue, groups compatible ones into batches and hands each batch to a BatchExecutor
// (the runtime's forward pass, e.g. torch_forward.h); callers wait on futures. Internal to
// compressor/.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace terse::compressor {

// One forward pass over one sequence: the unit the scheduler batches. The runtime derives its
// own step (inputs, cache, and room for the result); the scheduler reads only the sizes below.
class BatchStep {
 public:
  virtual ~BatchStep() = default;
  virtual int64_t new_tokens() const = 0;   // tokens the step runs
  virtual int64_t past_tokens() const = 0;  // cached tokens they follow; 0 without a cache
  virtual bool cached() const = 0;          // steps with and without a cache never share a batch
};

// The runtime side of the scheduler. Called on the worker thread only.
class BatchExecutor {
 public:
  virtual ~BatchExecutor() = default;
  // Runs `serve` (the worker's loop) inside the per-thread state the runtime needs (thread
  // counts, inference mode) and returns when it does.
  virtual void Serve(const std::function<void()>& serve) = 0;
  // One forward pass over `batch`: one or more steps, all cached or all not, of the executor's
  // own step type. On success every step holds its result; on error none does. Never throws.
  virtual absl::Status Execute(std::span<BatchStep* const> batch) = 0;
};

// Counters of the worker, for tests and benchmarks.
struct InferenceStats {
  int64_t batches = 0;          // forward passes run
  int64_t steps = 0;            // sequences (work items) run in them
  int64_t max_batch_steps = 0;  // most sequences in one forward pass
  int64_t tokens = 0;           // real tokens fed
  int64_t padded_tokens = 0;    // tokens fed including right padding
  int64_t queued = 0;           // steps waiting in the queue right now
};

struct BatchSchedulerOptions {
  int max_batch_size = 8;                          // steps per forward pass; 1 turns batching off
  std::chrono::microseconds max_batch_wait{2000};  // how long a step waits for company
  int64_t batch_token_budget = 0;                  // most padded tokens in one forward pass
  // The per-token work of the model's linear layers and head, in units of the work of attending
  // to one key: what a padded row costs beside the real ones.
  int64_t linear_cost = 0;
};

// Thread-safe. Owns the worker thread; `executor` must outlive the scheduler.
class BatchScheduler {
 public:
  BatchScheduler(BatchExecutor& executor, const BatchSchedulerOptions& options);
  // Runs what is queued, then stops the worker.
  ~BatchScheduler();
  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Runs every step (batched with whatever else is queued) and blocks until all have run; status
  // i belongs to steps[i], whose result the executor has filled when it is OK. The steps stay
  // the caller's.
  std::vector<absl::Status> Run(std::span<BatchStep* const> steps);

  // Runs `task` alone on the worker thread (the queue waits meanwhile) and returns its status.
  // `task` must not throw.
  absl::Status RunTask(std::function<absl::Status()> task);

  InferenceStats stats() const;

 private:
  using Clock = std::chrono::steady_clock;

  // A queued step, or a task that must run alone.
  struct Pending {
    BatchStep* step = nullptr;  // null for a task
    std::function<absl::Status()> task;
    std::promise<absl::Status> done;
    std::thread::id caller;
    Clock::time_point enqueued;
  };

  void Loop();
  bool ShouldWaitForCompany(Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::unique_ptr<Pending>> TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Execute(std::vector<std::unique_ptr<Pending>>& batch);

  // Constant after construction.
  BatchExecutor& executor_;
  const BatchSchedulerOptions options_;

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

}  // namespace terse::compressor
