// A lane's command queue and driver: what HttpCall handles and other threads share with one lane
// of the providers' HTTP engine (http_client.cc).
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"

namespace terse::providers {
namespace internal {

// What HttpCall handles and other threads share with one lane: its command queue. It outlives
// the HttpClient when handles do, and then refuses every command.
//
// The lane's thread (the driver) queues its own commands on a list of its own, with no lock and no
// wake-up: it is awake. Other threads queue under a mutex and wake the driver through an eventfd
// in the lane's epoll set.
class EngineCore {
 public:
  // Owns `wake_fd`, an eventfd the lane watches.
  explicit EngineCore(int wake_fd) : wake_fd_(wake_fd) {}
  ~EngineCore() { close(wake_fd_); }
  EngineCore(const EngineCore&) = delete;
  EngineCore& operator=(const EngineCore&) = delete;

  int wake_fd() const { return wake_fd_; }

  bool OnDriverThread() const {
    return driver_.load(std::memory_order_acquire) == std::this_thread::get_id();
  }

  // The calling thread becomes the driver (or, with id(), nobody is until the next call). A hosted
  // driver passes the host's run_soon; a lane thread of its own needs none.
  void SetDriver(std::thread::id driver, absl::AnyInvocable<void()> run_soon) {
    run_soon_ = std::move(run_soon);
    run_soon_pending_ = false;
    driver_.store(driver, std::memory_order_release);
  }

  // Queues `command` for the driver; false once the lane has shut down.
  bool Post(absl::AnyInvocable<void()> command) {
    if (OnDriverThread()) {
      if (closed_) return false;
      local_.push_back(std::move(command));
      if (!in_run_ && !run_soon_pending_ && run_soon_) {
        run_soon_pending_ = true;
        run_soon_();
      }
      return true;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (!accepting_) return false;
    const bool was_empty = queue_.empty();
    queue_.push_back(std::move(command));
    // One wake-up per batch: the driver takes the whole queue when it wakes.
    if (was_empty) {
      const uint64_t one = 1;
      ssize_t ignored = write(wake_fd_, &one, sizeof(one));
      (void)ignored;  // EAGAIN only when the counter is huge: the driver is awake anyway
    }
    return true;
  }

  // Driver only, from here on.

  // Brackets the driver's work: a Post in between needs no run_soon, the driver is at it.
  void BeginRun() {
    in_run_ = true;
    run_soon_pending_ = false;
  }
  void EndRun() { in_run_ = false; }

  bool HasLocal() const { return !local_.empty(); }

  std::vector<absl::AnyInvocable<void()>> TakeQueue() {
    std::vector<absl::AnyInvocable<void()>> out;
    out.swap(local_);
    std::lock_guard<std::mutex> lock(mu_);
    if (out.empty()) {
      out.swap(queue_);
    } else {
      for (auto& command : queue_) out.push_back(std::move(command));
      queue_.clear();
    }
    return out;
  }

  // Stops accepting commands if none is waiting; false when commands are still waiting.
  bool CloseIfIdle() {
    if (!local_.empty()) return false;
    std::lock_guard<std::mutex> lock(mu_);
    if (!queue_.empty()) return false;
    accepting_ = false;
    closed_ = true;
    return true;
  }

  std::function<void(uint64_t)> cancel;  // set by the lane before any handle exists

 private:
  const int wake_fd_;
  std::atomic<std::thread::id> driver_{};
  // The driver's own.
  std::vector<absl::AnyInvocable<void()>> local_;
  bool in_run_ = false;
  bool run_soon_pending_ = false;
  bool closed_ = false;
  absl::AnyInvocable<void()> run_soon_;

  std::mutex mu_;  // std::mutex: pthread-based, so ThreadSanitizer understands it
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<absl::AnyInvocable<void()>> queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

}  // namespace terse::providers
