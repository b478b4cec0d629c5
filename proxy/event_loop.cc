#include "proxy/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "providers/http_client.h"

namespace terse::proxy {
namespace {

using providers::HostedLane;

// The event data of the loop's descriptors: the tag and a Watcher's address, or the wake-up's
// value (a Watcher is aligned, so its address never has the lowest bit set).
constexpr uint64_t kWakeData = HostedLane::kHostEventTag | 1;
constexpr int kMaxEvents = 128;
// A wait without a deadline still ends this often; nothing depends on it.
constexpr absl::Duration kLongestWait = absl::Seconds(60);

absl::Status Errno(const char* what) {
  return absl::InternalError(std::string(what) + ": " + std::strerror(errno));
}

}  // namespace

EventLoop::EventLoop() : wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

EventLoop::~EventLoop() {
  if (wake_fd_ >= 0) close(wake_fd_);  // out of the lane's set, which is not ours to close
  if (lane_ == nullptr && epoll_fd_ >= 0) close(epoll_fd_);
}

absl::Status EventLoop::Attach(HostedLane* lane, absl::AnyInvocable<void()> after_lane_event) {
  if (wake_fd_ < 0) return absl::InternalError("eventfd failed");
  thread_ = std::this_thread::get_id();
  lane_ = lane;
  after_lane_event_ = after_lane_event ? std::move(after_lane_event) : [] {};
  if (lane != nullptr) {
    epoll_fd_ = lane->fd();
  } else {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) return Errno("epoll_create1");
  }
  // Edge-triggered and never read: each write of the counter is an event of its own.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeData;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) return Errno("epoll_ctl");
  return absl::OkStatus();
}

absl::Status EventLoop::Watch(int fd, Watcher* watcher) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = HostedLane::kHostEventTag | reinterpret_cast<uintptr_t>(watcher);
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) return Errno("epoll_ctl");
  return absl::OkStatus();
}

void EventLoop::Post(absl::AnyInvocable<void()> task) {
  if (OnLoopThread()) return Defer(std::move(task));
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;  // `task` is dropped on the way out, outside the lock
    posted_.push_back(std::move(task));
    wake = !std::exchange(wake_pending_, true);
  }
  if (wake) {
    const uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof(one));
    (void)ignored;  // EAGAIN only when the counter is near 2^64: the loop is woken anyway
  }
}

void EventLoop::Defer(absl::AnyInvocable<void()> task) { deferred_.push_back(std::move(task)); }

void EventLoop::RunAt(absl::Time when, absl::AnyInvocable<void()> task) {
  timers_.push(Timer{when, timer_seq_++, std::move(task)});
}

void EventLoop::Stop() {
  if (OnLoopThread()) {
    stop_ = true;
    return;
  }
  Post([this] { stop_ = true; });
}

void EventLoop::Close() {
  std::vector<absl::AnyInvocable<void()>> posted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    posted.swap(posted_);
  }
  // Dropping a task may queue another (a session's last Close defers its release): until none.
  while (!posted.empty() || !deferred_.empty() || !timers_.empty()) {
    posted.clear();
    std::vector<absl::AnyInvocable<void()>> deferred;
    deferred.swap(deferred_);
    deferred.clear();
    while (!timers_.empty()) timers_.pop();
  }
  if (epoll_fd_ >= 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, wake_fd_, nullptr);
}

void EventLoop::TakePosted() {
  std::vector<absl::AnyInvocable<void()>> posted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    posted.swap(posted_);
    wake_pending_ = false;  // a Post from here on writes the eventfd again: a new event
  }
  for (auto& task : posted) deferred_.push_back(std::move(task));
}

void EventLoop::RunDeferred() {
  // What a task defers runs in the same pass, after it: the queue is swapped until it stays empty.
  while (!deferred_.empty()) {
    running_.swap(deferred_);
    for (auto& task : running_) task();
    running_.clear();
  }
}

void EventLoop::FireTimers() {
  const absl::Time now = absl::Now();
  while (!timers_.empty() && timers_.top().when <= now) {
    absl::AnyInvocable<void()> task = std::move(timers_.top().task);
    timers_.pop();
    task();
  }
}

absl::Duration EventLoop::Timeout() const {
  if (!deferred_.empty() || lane_due_ || stop_) return absl::ZeroDuration();
  absl::Time next = lane_next_;
  if (!timers_.empty()) next = std::min(next, timers_.top().when);
  if (next == absl::InfiniteFuture()) return kLongestWait;
  return std::clamp(next - absl::Now(), absl::ZeroDuration(), kLongestWait);
}

void EventLoop::Dispatch(uint64_t data, uint32_t events) {
  if (data == kWakeData) return TakePosted();
  auto* watcher =
      reinterpret_cast<Watcher*>(static_cast<uintptr_t>(data & ~HostedLane::kHostEventTag));
  watcher->OnEvents(events);
  after_lane_event_();
}

void EventLoop::Run() {
  epoll_event events[kMaxEvents];
  while (!stop_) {
    RunDeferred();
    FireTimers();
    RunDeferred();
    if (lane_due_) {
      // Work a handler gave the lane (a request to send upstream): done now, without a look at
      // the sockets, which the next wait makes.
      lane_due_ = false;
      lane_next_ = lane_->RunQueued([this] { after_lane_event_(); });
      continue;
    }
    if (stop_) break;
    const absl::Duration timeout = Timeout();
    if (lane_ != nullptr) {
      lane_next_ = lane_->Wait(
          timeout, [this](uint64_t data, uint32_t e) { Dispatch(data, e); },
          [this] { after_lane_event_(); });
      continue;
    }
    const int timeout_ms =
        static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1))));
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    for (int i = 0; i < n; ++i) Dispatch(events[i].data.u64, events[i].events);
  }
}

}  // namespace terse::proxy
