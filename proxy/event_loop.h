// One I/O thread's event loop: one epoll set for its descriptors, each registered once and
// edge-triggered; work its own handlers queue, run before it waits again with no system call;
// work other threads post, with an eventfd to wake it; and timers. A thread that hosts a lane of
// the upstream engine shares the lane's epoll set (HostedLane::Wait), so that one epoll_wait
// serves the clients' sockets and the upstream's: no nested look, no re-arm of a watch.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace terse::providers {
class HostedLane;
}  // namespace terse::providers

namespace terse::proxy {

class EventLoop {
 public:
  // What a descriptor's events go to, on the loop's thread. It must stay alive while its
  // descriptor is in the set, and until the end of the turn in which the descriptor was closed
  // (events of one wait may still name it): release it from work queued with Defer.
  class Watcher {
   public:
    virtual void OnEvents(uint32_t events) = 0;

   protected:
    ~Watcher() = default;
  };

  // Makes the wake-up descriptor; Post works from here on, and what it queues runs once Run does.
  EventLoop();
  // Closes the loop's descriptors. Call it on a stopped loop, after every watched descriptor is
  // closed, and before the hosted lane (if any) is handed back.
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // On the thread that will run the loop, before Run: the epoll set is `lane`'s (which the
  // caller keeps hosted until the loop is gone), or one of the loop's own when `lane` is null.
  // `after_lane_event` runs after the lane's work for each of its sockets, and after each of the
  // loop's own events, so that what the work produced goes out at once.
  absl::Status Attach(providers::HostedLane* lane, absl::AnyInvocable<void()> after_lane_event);

  // Runs until Stop. On the loop's thread.
  void Run();
  // Any thread: Run returns after the turn in progress.
  void Stop();

  // After Run has returned, on the thread that joined the loop's: drops the queued work and the
  // timers (whatever they hold is released), takes the wake-up out of the epoll set, and from
  // then on drops what is posted. The lane (if any) may be handed back after this.
  void Close();

  // Any thread: runs `task` on the loop's thread. From that thread, this is Defer.
  void Post(absl::AnyInvocable<void()> task);
  // The loop's thread: runs `task` after the current handler and before the loop waits again.
  void Defer(absl::AnyInvocable<void()> task);
  // The loop's thread: runs `task` at `when` or soon after. Timers are not cancelled: the task
  // looks at its owner's state (and holds it weakly) when it runs.
  void RunAt(absl::Time when, absl::AnyInvocable<void()> task);
  // The lane has work for its thread outside a wait (a Start from a handler): HostedLane's
  // run_soon. The loop's thread.
  void RunLaneSoon() { lane_due_ = true; }

  // The loop's thread: adds `fd` for reading, writing and the peer's close, edge-triggered.
  // Closing the descriptor takes it out of the set.
  absl::Status Watch(int fd, Watcher* watcher);

  // Whether the caller is the loop's thread.
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_; }

 private:
  struct Timer {
    absl::Time when;
    uint64_t seq;  // keeps timers of one instant in the order they were set
    mutable absl::AnyInvocable<void()> task;
    bool operator>(const Timer& other) const {
      return when != other.when ? when > other.when : seq > other.seq;
    }
  };

  void Dispatch(uint64_t data, uint32_t events);
  void RunDeferred();
  void TakePosted();
  void FireTimers();
  absl::Duration Timeout() const;

  const int wake_fd_;
  int epoll_fd_ = -1;  // the lane's, or (with no lane) the loop's own
  providers::HostedLane* lane_ = nullptr;
  absl::AnyInvocable<void()> after_lane_event_;
  std::thread::id thread_;

  // The loop's thread only.
  bool stop_ = false;
  bool lane_due_ = false;
  absl::Time lane_next_ = absl::InfiniteFuture();
  std::vector<absl::AnyInvocable<void()>> deferred_;
  std::vector<absl::AnyInvocable<void()>> running_;  // RunDeferred's, kept for its capacity
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  uint64_t timer_seq_ = 0;

  std::mutex mu_;
  std::vector<absl::AnyInvocable<void()>> posted_;  // guarded by mu_
  bool wake_pending_ = false;                       // guarded by mu_: the eventfd was written
  bool closed_ = false;                             // guarded by mu_: Close was called
};

}  // namespace terse::proxy
