// The engine's lanes: several lanes share the work, and a lane hosted by an outside event loop
// runs its exchanges on that loop's thread, takes work from the loop's own handlers without a
// wake-up, and goes back to a thread of its own with its exchanges in flight.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "base/json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "providers/http_client.h"
#include "tests/providers/recorders.h"
#include "tests/support/fake_upstream.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::FakeReply;
using ::terse::testing::FakeUpstream;
using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;

HttpRequest ChatRequest(const FakeUpstream& upstream, const std::string& text, bool stream) {
  HttpRequest request;
  request.url = upstream.base_url() + "/chat/completions";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = Json{
      {"model", "m"},
      {"messages", Json::array({{{"role", "user"}, {"content", text}}})},
      {"stream",
       stream}}.dump();
  return request;
}

std::unique_ptr<HttpClient> NewClient(int lanes) {
  HttpClientOptions options;
  options.lanes = lanes;
  auto client = HttpClient::Create(options);
  EXPECT_THAT(client, IsOk());
  return std::move(client).value();
}

// How an outside loop watches the lane's descriptor, and which run it calls.
enum class Watch {
  kLevel,        // poll(2) on the descriptor; always HostedLane::Run
  kLevelQueued,  // poll(2); RunQueued unless the descriptor is readable
  kEdgeQueued,   // an edge-triggered epoll watch that stays armed: RunQueued unless the
                 // descriptor's event brought the loop there (Asio's watch is edge-triggered too,
                 // but each wait re-arms it with EPOLL_CTL_MOD, which looks at the set again)
  kShared,       // the host's own descriptor (its task pipe, edge-triggered) in the lane's epoll
                 // set, and HostedLane::Wait its only wait
};

// A small outside event loop, as the HTTP face's I/O threads are: one thread watches the lane's
// descriptor and a pipe for its own tasks, and runs the lane when either is ready, when run_soon
// asked for it, or when the lane's deadline is due.
class PollHost {
 public:
  // `after_event`, when given, runs on the host's thread after each socket's work in a lane run
  // (HostedLane::Run's after_event).
  PollHost(HttpClient& client, int lane, std::function<void()> after_event = {},
           Watch watch = Watch::kLevel)
      : after_event_(std::move(after_event)), watch_(watch) {
    EXPECT_EQ(pipe2(wake_, O_NONBLOCK | O_CLOEXEC), 0);
    std::promise<absl::Status> hosted;
    thread_ = std::thread([&, lane] {
      auto h = client.Host(lane, [this] {
        ++run_soon_calls_;
        run_soon_ = true;
      });
      hosted.set_value(h.status());
      if (h.ok()) Loop(**h);
      lane_ = std::move(h).value_or(nullptr);  // handed back by the test thread, as the server does
    });
    status_ = hosted.get_future().get();
  }
  ~PollHost() {
    Stop();
    lane_.reset();
    close(wake_[0]);
    close(wake_[1]);
  }

  const absl::Status& status() const { return status_; }
  std::thread::id thread_id() const { return thread_.get_id(); }
  int run_soon_calls() const { return run_soon_calls_.load(); }
  int queued_runs_done() const { return queued_runs_done_.load(); }

  // Runs `task` on the host's thread, as an event handler of the loop.
  void Post(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    char one = 1;
    EXPECT_EQ(write(wake_[1], &one, 1), 1);
  }

  // Ends the loop; the lane stays hosted (and idle) until the host is destroyed.
  void Stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    char one = 1;
    EXPECT_EQ(write(wake_[1], &one, 1), 1);
    thread_.join();
  }

 private:
  void Loop(HostedLane& lane) {
    auto after_event = [this] {
      if (after_event_) after_event_();
    };
    const int edge = watch_ == Watch::kEdgeQueued ? epoll_create1(EPOLL_CLOEXEC) : -1;
    EXPECT_EQ(edge >= 0, watch_ == Watch::kEdgeQueued);  // no quiet fallback to poll(2)
    if (edge >= 0) {
      epoll_event lane_event{EPOLLIN | EPOLLET, {.fd = lane.fd()}};
      epoll_event wake_event{EPOLLIN, {.fd = wake_[0]}};
      EXPECT_EQ(epoll_ctl(edge, EPOLL_CTL_ADD, lane.fd(), &lane_event), 0);
      EXPECT_EQ(epoll_ctl(edge, EPOLL_CTL_ADD, wake_[0], &wake_event), 0);
    }
    if (watch_ == Watch::kShared) return SharedLoop(lane, after_event);
    absl::Time next = lane.Run(after_event);
    while (!stop_) {
      // As an event loop does: no deadline, no wake-up but the descriptors.
      int timeout_ms = -1;
      if (run_soon_) {
        timeout_ms = 0;
      } else if (next != absl::InfiniteFuture()) {
        timeout_ms = static_cast<int>(std::clamp<int64_t>(
            absl::ToInt64Milliseconds(absl::Ceil(next - absl::Now(), absl::Milliseconds(1))), 0,
            1000));
      }
      bool readable = false;
      if (edge >= 0) {
        epoll_event events[2];
        const int n = epoll_wait(edge, events, 2, timeout_ms);
        for (int i = 0; i < n; ++i) readable |= events[i].data.fd == lane.fd();
      } else {
        pollfd fds[2] = {{lane.fd(), POLLIN, 0}, {wake_[0], POLLIN, 0}};
        poll(fds, 2, timeout_ms);
        readable = (fds[0].revents & POLLIN) != 0;
      }
      RunPostedTasks();
      run_soon_ = false;
      if (watch_ != Watch::kLevel && !readable) {
        ++queued_runs_done_;
        next = lane.RunQueued(after_event);
      } else {
        next = lane.Run(after_event);
      }
    }
    if (edge >= 0) close(edge);
  }

  // Empties the wake-up pipe and runs the tasks Post queued.
  void RunPostedTasks() {
    char drain[64];
    while (read(wake_[0], drain, sizeof drain) > 0) {
    }
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task();
  }

  void SharedLoop(HostedLane& lane, const std::function<void()>& after_event) {
    constexpr uint64_t kWakeData = HostedLane::kHostEventTag | 7;
    epoll_event wake_event{EPOLLIN | EPOLLET, {.u64 = kWakeData}};
    EXPECT_EQ(epoll_ctl(lane.fd(), EPOLL_CTL_ADD, wake_[0], &wake_event), 0);
    absl::Time next = absl::Now();
    while (!stop_) {
      absl::Duration timeout = absl::InfiniteDuration();
      if (run_soon_) {
        timeout = absl::ZeroDuration();
      } else if (next != absl::InfiniteFuture()) {
        timeout = std::min(next - absl::Now(), absl::Seconds(1));
      }
      run_soon_ = false;
      bool woken = false;
      next = lane.Wait(
          timeout,
          [&](uint64_t data, uint32_t events) {
            EXPECT_EQ(data, kWakeData);
            EXPECT_NE(events & EPOLLIN, 0u);
            woken = true;
          },
          after_event);
      if (!woken) continue;
      RunPostedTasks();
    }
    EXPECT_EQ(epoll_ctl(lane.fd(), EPOLL_CTL_DEL, wake_[0], nullptr), 0);
  }

  const std::function<void()> after_event_;  // before thread_: set when the thread starts
  const Watch watch_;
  std::atomic<int> queued_runs_done_{0};
  int wake_[2] = {-1, -1};
  std::thread thread_;
  absl::Status status_;
  std::unique_ptr<HostedLane> lane_;
  std::atomic<bool> stop_{false};
  bool run_soon_ = false;  // the host thread's
  std::atomic<int> run_soon_calls_{0};
  std::mutex mu_;
  std::vector<std::function<void()>> tasks_;
};

// Completes on the host's thread and counts how many completions no after_event has followed.
class CountingHandler : public RecordingHttpHandler {
 public:
  explicit CountingHandler(int& unannounced) : unannounced_(unannounced) {}
  void OnComplete(absl::Status status) override {
    ++unannounced_;
    RecordingHttpHandler::OnComplete(std::move(status));
  }

 private:
  int& unannounced_;  // the host thread's
};

TEST(HostedLaneTest, ExchangesFromOtherThreadsRunOnTheHostThread) {
  FakeUpstream upstream;
  auto client = NewClient(1);
  PollHost host(*client, 0);
  ASSERT_THAT(host.status(), IsOk());
  EXPECT_FALSE(client->OnLoopThread());

  std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
  for (int i = 0; i < 10; ++i) {
    handlers.push_back(std::make_shared<RecordingHttpHandler>());
    client->Start(ChatRequest(upstream, "hosted-" + std::to_string(i), i % 2 == 1),
                  handlers.back());
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(handlers[i]->WaitDone());
    EXPECT_THAT(handlers[i]->status(), IsOk());
    EXPECT_THAT(handlers[i]->body(), ::testing::HasSubstr("hosted-" + std::to_string(i)));
    EXPECT_THAT(handlers[i]->threads(), ElementsAre(host.thread_id()));
  }
  // The hosted lane keeps its connections: the next exchange opens none.
  const int64_t opened = client->connections_opened();
  auto again = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "again", false), again);
  ASSERT_TRUE(again->WaitDone());
  EXPECT_THAT(again->status(), IsOk());
  EXPECT_EQ(client->connections_opened(), opened);
}

// The host hears of each socket's work as it is done, not only when the run ends: no two
// exchanges complete without an after_event between them, and none is left without one.
TEST(HostedLaneTest, AfterEventFollowsEachSocketsWork) {
  FakeUpstream upstream;
  auto client = NewClient(1);
  int unannounced = 0;   // the host thread's
  int most_at_once = 0;  // the host thread's
  std::atomic<int> after_events{0};
  PollHost host(*client, 0, [&] {
    most_at_once = std::max(most_at_once, unannounced);
    unannounced = 0;
    ++after_events;
  });
  ASSERT_THAT(host.status(), IsOk());
  std::vector<std::shared_ptr<CountingHandler>> handlers;
  for (int i = 0; i < 20; ++i) {
    handlers.push_back(std::make_shared<CountingHandler>(unannounced));
    client->Start(ChatRequest(upstream, "each-" + std::to_string(i), false), handlers.back());
  }
  for (auto& handler : handlers) {
    ASSERT_TRUE(handler->WaitDone());
    EXPECT_THAT(handler->status(), IsOk());
  }
  // Read on the host's thread, after the run that completed the last exchange.
  std::promise<std::pair<int, int>> seen;
  host.Post([&] { seen.set_value({unannounced, most_at_once}); });
  auto [left, most] = seen.get_future().get();
  EXPECT_EQ(left, 0);
  EXPECT_LE(most, 1);
  EXPECT_GE(after_events.load(), 20);
}

TEST(HostedLaneTest, WorkFromTheHostsOwnHandlersAsksForARunInsteadOfWakingAnyone) {
  FakeUpstream upstream;
  auto client = NewClient(1);
  PollHost host(*client, 0);
  ASSERT_THAT(host.status(), IsOk());

  auto handler = std::make_shared<RecordingHttpHandler>();
  std::promise<bool> on_loop;
  struct Seen {
    bool on_loop = false;
    bool stopping = true;
    std::thread::id thread;
  };
  std::promise<Seen> timer;
  host.Post([&] {
    on_loop.set_value(client->OnLoopThread());
    client->Start(ChatRequest(upstream, "from a handler", false), handler);
    client->Schedule(absl::Milliseconds(20), [&](bool stopping) {
      timer.set_value({client->OnLoopThread(), stopping, std::this_thread::get_id()});
    });
  });
  EXPECT_TRUE(on_loop.get_future().get());
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_THAT(handler->threads(), ElementsAre(host.thread_id()));
  EXPECT_GE(host.run_soon_calls(), 1);

  std::future<Seen> seen = timer.get_future();
  ASSERT_EQ(seen.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Seen result = seen.get();
  EXPECT_TRUE(result.on_loop);
  EXPECT_FALSE(result.stopping);
  EXPECT_EQ(result.thread, host.thread_id());
}

// A host that lets the lane look at its sockets only when its descriptor is readable, and runs
// the rest (commands from its own handlers, timers, deadlines) with RunQueued, loses nothing:
// what the sockets bring reaches a Run, whether the host's watch is level- or edge-triggered.
void ExpectQueuedRunsLoseNothing(Watch watch) {
  FakeUpstream upstream;
  auto client = NewClient(1);
  PollHost host(*client, 0, {}, watch);
  ASSERT_THAT(host.status(), IsOk());

  constexpr int kEach = 12;
  std::vector<std::shared_ptr<RecordingHttpHandler>> from_host, from_outside;
  for (int i = 0; i < kEach; ++i) {
    from_host.push_back(std::make_shared<RecordingHttpHandler>());
    from_outside.push_back(std::make_shared<RecordingHttpHandler>());
  }
  auto stalled = std::make_shared<RecordingHttpHandler>();
  std::promise<bool> timer;
  host.Post([&] {
    for (int i = 0; i < kEach; ++i) {
      client->Start(ChatRequest(upstream, "host-" + std::to_string(i), i % 2 == 0), from_host[i]);
    }
    client->Schedule(absl::Milliseconds(20), [&](bool stopping) { timer.set_value(stopping); });
  });
  for (int i = 0; i < kEach; ++i) {
    client->Start(ChatRequest(upstream, "outside-" + std::to_string(i), i % 2 == 1),
                  from_outside[i]);
  }
  for (int i = 0; i < kEach; ++i) {
    ASSERT_TRUE(from_host[i]->WaitDone());
    EXPECT_THAT(from_host[i]->status(), IsOk());
    EXPECT_THAT(from_host[i]->body(), ::testing::HasSubstr("host-" + std::to_string(i)));
    ASSERT_TRUE(from_outside[i]->WaitDone());
    EXPECT_THAT(from_outside[i]->status(), IsOk());
    EXPECT_THAT(from_outside[i]->body(), ::testing::HasSubstr("outside-" + std::to_string(i)));
  }
  std::future<bool> fired = timer.get_future();
  ASSERT_EQ(fired.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_FALSE(fired.get());

  // A first-byte deadline is the lane's own timer: a queued run ends the stalled exchange.
  upstream.SetDefaultReply(FakeReply::Stall());
  host.Post([&] {
    HttpRequest request = ChatRequest(upstream, "stalled", false);
    request.first_byte_timeout = absl::Milliseconds(100);
    client->Start(std::move(request), stalled);
  });
  ASSERT_TRUE(stalled->WaitDone());
  EXPECT_THAT(stalled->status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  if (watch != Watch::kShared) {
    EXPECT_GE(host.queued_runs_done(), 1);
  }
}

TEST(HostedLaneTest, QueuedRunsLeaveTheSocketsToTheDescriptorAndLoseNothing) {
  ExpectQueuedRunsLoseNothing(Watch::kLevelQueued);
}

TEST(HostedLaneTest, QueuedRunsUnderAnEdgeTriggeredWatchLoseNothing) {
  ExpectQueuedRunsLoseNothing(Watch::kEdgeQueued);
}

// The host's own descriptor in the lane's epoll set: its events reach the host, the lane's its
// sockets, and the lane's queued work and timers run, all from the one wait.
TEST(HostedLaneTest, AHostSharingTheLanesEpollSetLosesNothing) {
  ExpectQueuedRunsLoseNothing(Watch::kShared);
}

// An edge-triggered watch of the lane's descriptor reports new events only: an answer larger
// than one event's reads, arriving whole, and more sockets ready than one look takes, must still
// be finished by the lane itself rather than wait for bytes that will never come.
void ExpectWhatOneLookLeavesIsFinished(Watch watch) {
  FakeUpstream upstream;
  auto client = NewClient(1);
  PollHost host(*client, 0, {}, watch);
  ASSERT_THAT(host.status(), IsOk());

  const std::string large(3 << 20, 'a');  // 3 MiB: many times one event's reads
  FakeReply reply = FakeReply::Text("unused");
  reply.raw_body = "{\"text\":\"" + large + "\"}";
  upstream.SetDefaultReply(reply);
  for (int round = 0; round < 3; ++round) {  // one kept-alive connection, idle between answers
    auto handler = std::make_shared<RecordingHttpHandler>();
    host.Post([&] { client->Start(ChatRequest(upstream, "large", false), handler); });
    ASSERT_TRUE(handler->WaitDone()) << "round " << round;
    EXPECT_THAT(handler->status(), IsOk());
    EXPECT_EQ(handler->body().size(), reply.raw_body->size()) << "round " << round;
  }

  upstream.SetDefaultReply(FakeReply::Text("small"));
  constexpr int kMany = 300;  // more than one look at the sockets takes (128 events)
  std::vector<std::shared_ptr<RecordingHttpHandler>> many;
  for (int i = 0; i < kMany; ++i) many.push_back(std::make_shared<RecordingHttpHandler>());
  host.Post([&] {
    for (auto& handler : many) client->Start(ChatRequest(upstream, "many", false), handler);
  });
  for (int i = 0; i < kMany; ++i) {
    ASSERT_TRUE(many[i]->WaitDone()) << "exchange " << i;
    EXPECT_THAT(many[i]->status(), IsOk());
  }
}

TEST(HostedLaneTest, AnEdgeTriggeredHostGetsWhatOneLookAtTheSocketsLeaves) {
  ExpectWhatOneLookLeavesIsFinished(Watch::kEdgeQueued);
}

// In a shared set the lane's sockets stay level-triggered: the next wait reports what one left.
TEST(HostedLaneTest, AHostSharingTheLanesEpollSetGetsWhatOneWaitLeaves) {
  ExpectWhatOneLookLeavesIsFinished(Watch::kShared);
}

// Records when an answer's head reaches it, into a list the host thread shares.
class OrderHandler : public RecordingHttpHandler {
 public:
  explicit OrderHandler(std::vector<std::string>& order) : order_(order) {}
  void OnHead(const HttpResponseHead& head) override {
    order_.push_back("answer");
    RecordingHttpHandler::OnHead(head);
  }

 private:
  std::vector<std::string>& order_;  // the host thread's
};

// One wait that reports an upstream's answer and a host's socket both handles the answer first:
// it ends a request older than anything the host's socket can bring, so under a backlog requests
// finish in about the order they came.
TEST(HostedLaneTest, AWaitHandlesTheLanesAnswersBeforeTheHostsEvents) {
  FakeUpstream upstream;
  auto client = NewClient(1);
  auto lane = client->Host(0, [] {});
  ASSERT_THAT(lane, IsOk());
  std::vector<std::string> order;
  auto on_host_event = [&](uint64_t, uint32_t) { order.push_back("host"); };
  FakeReply late = FakeReply::Text("late");
  late.head_delay = absl::Milliseconds(100);  // written well after the wait that sends the request
  upstream.SetDefaultReply(late);
  auto handler = std::make_shared<OrderHandler>(order);
  client->Start(ChatRequest(upstream, "first", false), handler);
  for (int i = 0; i < 500 && upstream.request_count() == 0; ++i) {
    (*lane)->Wait(absl::Milliseconds(5), on_host_event, [] {});
  }
  ASSERT_EQ(upstream.request_count(), 1u);
  ASSERT_TRUE(order.empty());
  // The host's socket becomes ready first, then the answer arrives: epoll reports them in that
  // order.
  const int host_fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(host_fd, 0);
  epoll_event host_event{EPOLLIN | EPOLLET, {.u64 = HostedLane::kHostEventTag | 8}};
  ASSERT_EQ(epoll_ctl((*lane)->fd(), EPOLL_CTL_ADD, host_fd, &host_event), 0);
  ASSERT_TRUE(upstream.WaitForAnswersWritten(1, absl::Seconds(5)));

  (*lane)->Wait(absl::ZeroDuration(), on_host_event, [] {});
  EXPECT_THAT(order, ElementsAre("answer", "host"));
  for (int i = 0; i < 500 && !handler->WaitDone(absl::ZeroDuration()); ++i) {
    (*lane)->Wait(absl::Milliseconds(10), on_host_event, [] {});
  }
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_EQ(epoll_ctl((*lane)->fd(), EPOLL_CTL_DEL, host_fd, nullptr), 0);
  close(host_fd);
}

// Other threads queue work while the host runs the lane: every task must reach it without the
// host polling on a timer (a wake-up consumed while work was still queued would strand it).
TEST(HostedLaneTest, WorkQueuedFromManyThreadsWhileTheHostRunsAlwaysArrives) {
  auto client = NewClient(1);
  PollHost host(*client, 0);
  ASSERT_THAT(host.status(), IsOk());
  constexpr int kThreads = 4;
  constexpr int kTasksEach = 3000;
  std::atomic<int> ran{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kTasksEach; ++i) {
        client->Schedule(absl::ZeroDuration(), [&](bool) { ran.fetch_add(1); });
        if (i % 64 == 0) std::this_thread::yield();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (ran.load() < kThreads * kTasksEach && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ran.load(), kThreads * kTasksEach);
}

TEST(HostedLaneTest, ALaneIsHostedOnceAndOnlyIfItExists) {
  auto client = NewClient(1);
  PollHost host(*client, 0);
  ASSERT_THAT(host.status(), IsOk());
  PollHost second(*client, 0);
  EXPECT_THAT(second.status(), StatusIs(absl::StatusCode::kFailedPrecondition));
  PollHost missing(*client, 1);
  EXPECT_THAT(missing.status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(HostedLaneTest, TheLaneGoesBackToAThreadOfItsOwnWithItsExchangesInFlight) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::SlowStream(absl::Milliseconds(30)));
  auto client = NewClient(1);
  auto handler = std::make_shared<RecordingHttpHandler>();
  {
    PollHost host(*client, 0);
    ASSERT_THAT(host.status(), IsOk());
    client->Start(ChatRequest(upstream, "one two three four five six", true), handler);
    ASSERT_TRUE(handler->WaitBodyContains("two"));
  }  // the loop ends and the lane is handed back mid-stream
  EXPECT_THAT(handler->body(), ::testing::Not(::testing::HasSubstr("six")));
  EXPECT_FALSE(client->OnLoopThread());
  ASSERT_TRUE(handler->WaitDone());
  EXPECT_THAT(handler->status(), IsOk());
  EXPECT_THAT(handler->body(), ::testing::HasSubstr("six"));

  // And the lane keeps serving.
  auto after = std::make_shared<RecordingHttpHandler>();
  client->Start(ChatRequest(upstream, "after", false), after);
  ASSERT_TRUE(after->WaitDone());
  EXPECT_THAT(after->status(), IsOk());
}

TEST(HostedLaneTest, CallsFromOutsideTakeTheLanesInTurn) {
  FakeUpstream upstream;
  auto client = NewClient(2);
  EXPECT_EQ(client->lanes(), 2);
  std::vector<std::shared_ptr<RecordingHttpHandler>> handlers;
  for (int i = 0; i < 8; ++i) {
    handlers.push_back(std::make_shared<RecordingHttpHandler>());
    client->Start(ChatRequest(upstream, "lane " + std::to_string(i), false), handlers.back());
  }
  std::set<std::thread::id> threads;
  for (auto& handler : handlers) {
    ASSERT_TRUE(handler->WaitDone());
    EXPECT_THAT(handler->status(), IsOk());
    for (std::thread::id id : handler->threads()) threads.insert(id);
  }
  EXPECT_EQ(threads.size(), 2u);
}

TEST(HostedLaneTest, ShutdownAfterHandBackCancelsWhatIsLeft) {
  FakeUpstream upstream;
  upstream.SetDefaultReply(FakeReply::Stall());
  auto client = NewClient(2);
  auto handler = std::make_shared<RecordingHttpHandler>();
  {
    PollHost host(*client, 1);
    ASSERT_THAT(host.status(), IsOk());
    host.Post([&] { client->Start(ChatRequest(upstream, "x", false), handler); });
    ASSERT_TRUE(upstream.WaitForRequestCount(1, absl::Seconds(10)));
  }
  client.reset();
  EXPECT_EQ(handler->completions(), 1);
  EXPECT_THAT(handler->status(), StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace terse::providers
