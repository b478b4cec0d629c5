// The worker loop of BatchScheduler: wait briefly for company when callers seen lately are likely
// between two calls, take the oldest step plus compatible ones, run them as one batch, and answer
// every caller through its future.
#include "compressor/batch_scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace terse::compressor {

BatchScheduler::BatchScheduler(BatchExecutor& executor, const BatchSchedulerOptions& options)
    : executor_(executor), options_(options) {
  worker_ = std::thread([this] { executor_.Serve([this] { Loop(); }); });
}

BatchScheduler::~BatchScheduler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  worker_.join();
}

std::vector<absl::Status> BatchScheduler::Run(std::span<BatchStep* const> steps) {
  std::vector<std::future<absl::Status>> futures;
  futures.reserve(steps.size());
  {
    absl::MutexLock lock(&mu_);
    const auto now = Clock::now();
    const auto caller = std::this_thread::get_id();
    last_seen_[caller] = now;
    for (BatchStep* step : steps) {
      auto pending = std::make_unique<Pending>();
      pending->step = step;
      pending->caller = caller;
      pending->enqueued = now;
      futures.push_back(pending->done.get_future());
      queue_.push_back(std::move(pending));
    }
  }
  wake_.Signal();
  std::vector<absl::Status> statuses;
  statuses.reserve(futures.size());
  for (auto& future : futures) statuses.push_back(future.get());
  return statuses;
}

absl::Status BatchScheduler::RunTask(std::function<absl::Status()> task) {
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
  return future.get();
}

InferenceStats BatchScheduler::stats() const {
  absl::MutexLock lock(&mu_);
  InferenceStats stats = stats_;
  stats.queued = static_cast<int64_t>(queue_.size());
  return stats;
}

void BatchScheduler::Loop() {
  while (true) {
    std::vector<std::unique_ptr<Pending>> batch;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && queue_.empty()) wake_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping and drained
      if (options_.max_batch_size > 1) {
        const auto deadline = queue_.front()->enqueued + options_.max_batch_wait;
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

// Company is worth waiting for while callers active a moment ago have nothing queued yet and the
// batch has room: they are likely between two calls.
bool BatchScheduler::ShouldWaitForCompany(Clock::time_point now) {
  if (queue_.front()->task) return false;
  if (static_cast<int>(queue_.size()) >= options_.max_batch_size) return false;
  int64_t queued_tokens = 0;
  std::vector<std::thread::id> queued_callers;
  for (const auto& p : queue_) {
    if (p->step != nullptr) queued_tokens += p->step->new_tokens();
    if (std::find(queued_callers.begin(), queued_callers.end(), p->caller) ==
        queued_callers.end()) {
      queued_callers.push_back(p->caller);
    }
  }
  if (queued_tokens >= options_.batch_token_budget) return false;
  const auto recent = 2 * last_batch_duration_ + 2 * options_.max_batch_wait;
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
// while the padded batch stays within the token budget and not much larger than the real work.
// Long sequences run alone: on a CPU, batching them only thrashes the caches.
std::vector<std::unique_ptr<BatchScheduler::Pending>> BatchScheduler::TakeBatch() {
  std::vector<std::unique_ptr<Pending>> batch;
  batch.push_back(std::move(queue_.front()));
  queue_.pop_front();
  if (batch[0]->task || options_.max_batch_size <= 1) return batch;
  const BatchStep& first = *batch[0]->step;
  const bool cached = first.cached();
  // Work of a row ~ tokens * (per-token linear work in attention-key units + keys seen).
  const int64_t linear = options_.linear_cost;
  int64_t t_max = first.new_tokens();
  int64_t p_max = first.past_tokens();
  int64_t real = t_max * (linear + p_max + t_max);
  for (auto it = queue_.begin();
       it != queue_.end() && static_cast<int>(batch.size()) < options_.max_batch_size;) {
    if ((*it)->task || (*it)->step->cached() != cached) {
      ++it;
      continue;
    }
    const BatchStep& step = *(*it)->step;
    const int64_t t = step.new_tokens();
    const int64_t p = step.past_tokens();
    const int64_t b = static_cast<int64_t>(batch.size()) + 1;
    const int64_t nt = std::max(t_max, t);
    const int64_t np = std::max(p_max, p);
    const int64_t padded_cost = b * nt * (linear + np + nt);
    const int64_t real_cost = real + t * (linear + p + t);
    if (b * nt > options_.batch_token_budget || 2 * padded_cost > 3 * real_cost) {
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

void BatchScheduler::Execute(std::vector<std::unique_ptr<Pending>>& batch) {
  if (batch.size() == 1 && batch[0]->task) {
    batch[0]->done.set_value(batch[0]->task());
    return;
  }
  std::vector<BatchStep*> steps;
  steps.reserve(batch.size());
  for (const auto& pending : batch) steps.push_back(pending->step);
  const absl::Status status = executor_.Execute(steps);
  if (!status.ok() && batch.size() > 1) {
    // A batch can fail where its parts would not (memory): retry each step alone.
    for (auto& pending : batch) {
      std::vector<std::unique_ptr<Pending>> one;
      one.push_back(std::move(pending));
      Execute(one);
    }
    return;
  }
  if (status.ok()) {
    int64_t tokens = 0;
    int64_t t_max = 0;
    for (const BatchStep* step : steps) {
      tokens += step->new_tokens();
      t_max = std::max(t_max, step->new_tokens());
    }
    const int64_t b = static_cast<int64_t>(steps.size());
    absl::MutexLock lock(&mu_);
    ++stats_.batches;
    stats_.steps += b;
    stats_.max_batch_steps = std::max(stats_.max_batch_steps, b);
    stats_.tokens += tokens;
    stats_.padded_tokens += b * t_max;
  }
  for (auto& pending : batch) pending->done.set_value(status);
}

}  // namespace terse::compressor
