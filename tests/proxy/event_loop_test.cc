// The I/O threads' event loop: work posted from other threads, deferred work and timers run on
// the loop's thread in order, and a watched descriptor's events reach its watcher, with the set
// the loop's own or a hosted lane's.
#include "proxy/event_loop.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "providers/http_client.h"

namespace terse::proxy {
namespace {

using ::testing::ElementsAre;

// A loop on a thread of its own, attached to its own set or to `engine`'s first lane.
class LoopThread {
 public:
  explicit LoopThread(providers::HttpClient* engine = nullptr) {
    std::promise<absl::Status> attached;
    thread_ = std::thread([&] {
      if (engine != nullptr) {
        auto hosted = engine->Host(0, [this] { loop_.RunLaneSoon(); });
        if (!hosted.ok()) return attached.set_value(hosted.status());
        lane_ = *std::move(hosted);
      }
      absl::Status status = loop_.Attach(lane_.get(), [this] { ++after_events_; });
      const bool ok = status.ok();
      attached.set_value(std::move(status));
      if (ok) loop_.Run();
    });
    status_ = attached.get_future().get();
  }
  ~LoopThread() {
    loop_.Stop();
    thread_.join();
    loop_.Close();
    lane_.reset();
  }

  EventLoop& loop() { return loop_; }
  const absl::Status& status() const { return status_; }
  std::thread::id id() const { return thread_.get_id(); }
  int after_events() const { return after_events_.load(); }

  // Runs `fn` on the loop's thread and waits for it.
  template <typename Fn>
  void RunOn(Fn fn) {
    std::promise<void> done;
    loop_.Post([&] {
      fn();
      done.set_value();
    });
    ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  }

 private:
  EventLoop loop_;
  std::unique_ptr<providers::HostedLane> lane_;
  std::atomic<int> after_events_{0};
  absl::Status status_;
  std::thread thread_;
};

// Each write of the eventfd is an event of its own, though the loop never reads it: no post from
// any thread is stranded, however they interleave with the loop taking them.
TEST(EventLoopTest, EveryPostFromAnyThreadRunsOnTheLoopsThread) {
  LoopThread t;
  ASSERT_TRUE(t.status().ok()) << t.status();
  constexpr int kThreads = 4;
  constexpr int kEach = 5000;
  std::atomic<int> ran{0};
  std::atomic<int> elsewhere{0};
  std::vector<std::thread> posters;
  for (int i = 0; i < kThreads; ++i) {
    posters.emplace_back([&] {
      for (int j = 0; j < kEach; ++j) {
        t.loop().Post([&] {
          if (std::this_thread::get_id() != t.id()) ++elsewhere;
          ++ran;
        });
        if (j % 100 == 0) std::this_thread::yield();
      }
    });
  }
  for (std::thread& p : posters) p.join();
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (ran.load() < kThreads * kEach && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(ran.load(), kThreads * kEach);
  EXPECT_EQ(elsewhere.load(), 0);
}

TEST(EventLoopTest, DeferredWorkRunsAfterTheCurrentTaskInOrder) {
  LoopThread t;
  ASSERT_TRUE(t.status().ok());
  std::vector<int> order;
  t.RunOn([&] {
    t.loop().Defer([&] {
      order.push_back(2);
      t.loop().Defer([&] { order.push_back(4); });
    });
    t.loop().Post([&] { order.push_back(3); });  // from the loop's thread: a Defer
    order.push_back(1);
  });
  t.RunOn([] {});
  EXPECT_THAT(order, ElementsAre(1, 2, 3, 4));
}

TEST(EventLoopTest, TimersFireInTheOrderOfTheirTimesAndNotBefore) {
  LoopThread t;
  ASSERT_TRUE(t.status().ok());
  std::vector<int> order;
  std::vector<absl::Duration> late;
  std::promise<void> done;
  const absl::Time start = absl::Now();
  t.RunOn([&] {
    for (int ms : {60, 20, 40, 20}) {
      const absl::Time when = start + absl::Milliseconds(ms);
      t.loop().RunAt(when, [&, ms, when] {
        order.push_back(ms);
        late.push_back(absl::Now() - when);
        if (order.size() == 4) done.set_value();
      });
    }
  });
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_THAT(order, ElementsAre(20, 20, 40, 60));
  for (absl::Duration d : late) EXPECT_GE(d, absl::ZeroDuration());
}

// A watcher that records the events of its socket on the loop's thread.
class Recorder : public EventLoop::Watcher {
 public:
  void OnEvents(uint32_t events) override {
    if (events & EPOLLIN) ++readable;
    if (events & EPOLLRDHUP) ++peer_closed;
  }
  std::atomic<int> readable{0};
  std::atomic<int> peer_closed{0};
};

void ExpectWatchedSocketEventsArrive(LoopThread& t) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair), 0);
  Recorder recorder;
  t.RunOn([&] { ASSERT_TRUE(t.loop().Watch(pair[0], &recorder).ok()); });
  const int before = t.after_events();
  ASSERT_EQ(write(pair[1], "x", 1), 1);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (recorder.readable.load() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_GE(recorder.readable.load(), 1);
  close(pair[1]);
  while (recorder.peer_closed.load() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_GE(recorder.peer_closed.load(), 1);
  EXPECT_GT(t.after_events(), before);  // after each watcher's events, as after a lane's socket
  t.RunOn([&] { close(pair[0]); });     // out of the set before the recorder goes
}

TEST(EventLoopTest, AWatchedSocketsEventsReachItsWatcher) {
  LoopThread t;
  ASSERT_TRUE(t.status().ok());
  ExpectWatchedSocketEventsArrive(t);
}

// Attached to a hosted lane, the loop's descriptors share the lane's epoll set, and the lane's
// work (a task scheduled from the loop's thread) runs in the same loop.
TEST(EventLoopTest, OnAHostedLaneTheLoopAndTheLaneShareOneWait) {
  providers::HttpClientOptions options;
  options.lanes = 1;
  auto engine = providers::HttpClient::Create(options);
  ASSERT_TRUE(engine.ok());
  {
    LoopThread t(engine->get());
    ASSERT_TRUE(t.status().ok()) << t.status();
    ExpectWatchedSocketEventsArrive(t);
    std::promise<std::thread::id> ran;
    t.RunOn([&] {
      (*engine)->Schedule(absl::Milliseconds(5),
                          [&](bool) { ran.set_value(std::this_thread::get_id()); });
    });
    std::future<std::thread::id> on = ran.get_future();
    ASSERT_EQ(on.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_EQ(on.get(), t.id());
  }
}

TEST(EventLoopTest, AClosedLoopDropsWhatIsPostedAndWhatItHeld) {
  auto held = std::make_shared<int>(1);
  {
    LoopThread t;
    ASSERT_TRUE(t.status().ok());
    t.RunOn([&] { t.loop().RunAt(absl::Now() + absl::Hours(1), [held] {}); });
  }
  EXPECT_EQ(held.use_count(), 1);  // the timer's task was released by Close
}

}  // namespace
}  // namespace terse::proxy
