// The HTTP engine. Each lane has one driver thread that owns its multi handle and every easy
// handle; other threads only post closures to the lane's queue (engine_core.h), so libcurl is
// never touched concurrently. The driver runs libcurl with curl_multi_socket_action on the lane's
// epoll set, which reports only the ready sockets (curl_multi_perform polls every transfer's
// socket on each wake-up, the gateway's bottleneck under concurrency). A hosted lane's epoll set
// is watched by its host's event loop, which calls HostedLane::Run. Cleartext exchanges skip
// libcurl: the lane's Http1Client (http1_client.h) carries them on sockets in the same set.

#include "providers/http_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "absl/time/clock.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "providers/curl_handles.h"
#include "providers/engine_core.h"
#include "providers/http1_client.h"
#include "providers/upstream_errors.h"

namespace terse::providers {
namespace {

std::once_flag curl_global_once;

int ToMs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return 0;
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, INT32_MAX));
}

// Whether the environment names a proxy for libcurl to use (it reads these per exchange unless
// told the proxy outright). Read once: terse does not change its own environment.
bool ProxyInEnvironment() {
  static const bool found = [] {
    for (const char* name :
         {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"}) {
      const char* value = std::getenv(name);
      if (value != nullptr && *value != '\0') return true;
    }
    return false;
  }();
  return found;
}

}  // namespace

std::string_view HttpResponseHead::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

// The lane the calling thread runs, if any (checked against the lane's driver before use, so a
// stale entry is harmless).
struct LaneOfThread {
  const HttpClient* client = nullptr;
  size_t lane = 0;
};
thread_local LaneOfThread lane_of_thread;

void HttpCall::Cancel() {
  std::weak_ptr<internal::EngineCore> weak = core_;
  uint64_t id = id_;
  core_->Post([weak, id] {
    if (auto core = weak.lock()) core->cancel(id);
  });
}

// One lane: everything that lives on the lane's thread.
class HttpClient::Loop {
 public:
  // `epoll_fd` is owned by the loop; the core's wake_fd is already in its set.
  // `http1`: the limits of the lane's own HTTP/1.1 client; none: every exchange goes to libcurl.
  Loop(HttpClient& client, size_t index, CURLM* multi, int epoll_fd,
       std::shared_ptr<internal::EngineCore> core, std::optional<internal::Http1Limits> http1)
      : client_(client),
        index_(index),
        multi_(multi),
        epoll_fd_(epoll_fd),
        wake_fd_(core->wake_fd()),
        core_(std::move(core)) {
    if (http1) {
      std::weak_ptr<internal::EngineCore> weak = core_;
      auto post = [weak](absl::AnyInvocable<void()> command) {
        std::shared_ptr<internal::EngineCore> core = weak.lock();
        return core != nullptr && core->Post(std::move(command));
      };
      http1_ = std::make_unique<internal::Http1Client>(epoll_fd_, *http1, std::move(post),
                                                       client_.connections_opened_,
                                                       client_.active_exchanges_);
    }
  }

  ~Loop() {
    if (thread_.joinable()) thread_.join();
    http1_.reset();
    handles_.Clear();
    curl_multi_cleanup(multi_);
    close(epoll_fd_);
  }

  // libcurl's CURLMOPT_SOCKETFUNCTION: watch `s` for what libcurl waits for, or stop watching it.
  // The socket's per-socket pointer (curl_multi_assign) holds what the epoll set watches for it,
  // plus one (null: not in the set), so that a call that changes nothing costs no system call and
  // a new socket is added without a failing EPOLL_CTL_MOD first.
  static int OnSocket(CURL*, curl_socket_t s, int what, void* user, void* socketp) {
    auto* loop = static_cast<Loop*>(user);
    const auto watched = reinterpret_cast<intptr_t>(socketp);
    if (what == CURL_POLL_REMOVE) {
      if (watched != 0) epoll_ctl(loop->epoll_fd_, EPOLL_CTL_DEL, s, nullptr);  // EBADF: closed
      curl_multi_assign(loop->multi_, s, nullptr);
      return 0;
    }
    epoll_event ev{};
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (watched == static_cast<intptr_t>(ev.events) + 1) return 0;
    if (watched == 0) {
      if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST) {
        epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, s, &ev);
      }
    } else if (epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT) {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, s, &ev);
    }
    curl_multi_assign(loop->multi_, s,
                      reinterpret_cast<void*>(static_cast<intptr_t>(ev.events) + 1));
    return 0;
  }

  // libcurl's CURLMOPT_TIMERFUNCTION: when to call it back with CURL_SOCKET_TIMEOUT (-1: never).
  static int OnTimer(CURLM*, long timeout_ms, void* user) {
    auto* loop = static_cast<Loop*>(user);
    loop->curl_deadline_ =
        timeout_ms < 0 ? absl::InfiniteFuture() : absl::Now() + absl::Milliseconds(timeout_ms);
    return 0;
  }

  const std::shared_ptr<internal::EngineCore>& core() const { return core_; }
  int epoll_fd() const { return epoll_fd_; }
  std::atomic<bool>& hosted() { return hosted_; }

  // Gives the lane a thread of its own, which runs it until RequestStop or RequestYield.
  void StartThread() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "terse-http");  // for top -H and debuggers
      core_->SetDriver(std::this_thread::get_id(), nullptr);
      lane_of_thread = {&client_, index_};
      Run();
    });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // Driver only, from here on.

  // The lane's thread shuts the lane down and ends.
  void RequestStop() { stop_requested_ = true; }
  // The lane's thread ends, leaving everything in flight to the next driver.
  void RequestYield() { yield_requested_ = true; }

  // A host that shares the epoll set: one wait on it for the host's descriptors and the lane's
  // sockets alike (the host's events go to `on_host_event`), then the lane's queued work and
  // timers. The lane's sockets are level-triggered in the set, so whatever this wait leaves
  // (a full event array, a connection whose reads ran out) the next wait reports again.
  absl::Time WaitShared(int timeout_ms, absl::FunctionRef<void(uint64_t, uint32_t)> on_host_event,
                        absl::FunctionRef<void()> after_event) {
    constexpr int kMaxEvents = 128;
    epoll_event events[kMaxEvents];
    core_->BeginRun();
    if (core_->HasLocal()) timeout_ms = 0;
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    HandleEvents(events, n, after_event, on_host_event);  // a wake-up's commands run below
    sockets_unfinished_ = false;
    if (http1_) http1_->TakeUnread();
    core_->EndRun();
    return RunHosted(after_event, /*poll=*/false);
  }

  // A hosted lane's work: everything ready, without blocking. Returns when it is due again.
  // Without `poll`, the sockets are left to the host's watch of the epoll descriptor: only the
  // queued commands, libcurl's timer and the lane's timers run, unless the last look at the
  // sockets left work behind (that watch would not report it again).
  absl::Time RunHosted(absl::FunctionRef<void()> after_event, bool poll) {
    constexpr int kMaxEvents = 128;
    constexpr int kMaxRounds = 16;  // then the host's other work gets a turn
    epoll_event events[kMaxEvents];
    core_->BeginRun();
    absl::Time next = absl::InfiniteFuture();
    for (int round = 0; round < kMaxRounds; ++round) {
      RunCommands();
      RunCurlTimer();
      DrainMessages();
      FireTimers();
      const bool look = poll || sockets_unfinished_;
      const int n = look ? epoll_wait(epoll_fd_, events, kMaxEvents, 0) : 0;
      const bool woken = HandleEvents(events, n, after_event);
      if (look) sockets_unfinished_ = n == kMaxEvents || (http1_ && http1_->TakeUnread());
      DrainMessages();
      after_event();
      next = NextDeadline();
      if (!woken && !sockets_unfinished_ && !core_->HasLocal() && next > absl::Now()) break;
      next = absl::Now();  // more to do: when the rounds run out, the host comes back at once
    }
    core_->EndRun();
    return next;
  }

  void Add(uint64_t id, HttpRequest request, std::shared_ptr<HttpHandler> handler) {
    if (stopping_) {
      handler->OnComplete(absl::CancelledError("HTTP client is shutting down"));
      return;
    }
    if (http1_ && http1_->TryStart(id, request, handler)) return;
    auto t = std::make_unique<Transfer>();
    t->id = id;
    t->loop = this;
    t->request = std::move(request);
    t->handler = std::move(handler);
    t->started = absl::Now();
    if (!Configure(*t)) {
      t->handler->OnComplete(WithRecovery(
          UpstreamFailed("could not set up the upstream request: " + std::string(t->error)),
          Recovery::kNone));
      if (t->easy) handles_.Recycle(t->easy, t->request, /*configured=*/false);
      if (t->header_list) curl_slist_free_all(t->header_list);
      return;
    }
    if (t->request.first_byte_timeout != absl::InfiniteDuration() &&
        t->request.first_byte_timeout > absl::ZeroDuration()) {
      t->first_byte_deadline = t->started + t->request.first_byte_timeout;
      first_byte_deadlines_.insert({t->first_byte_deadline, id});
    }
    CURLMcode rc = curl_multi_add_handle(multi_, t->easy);
    if (rc != CURLM_OK) {
      first_byte_deadlines_.erase({t->first_byte_deadline, id});
      t->handler->OnComplete(UpstreamFailed(std::string("could not start the upstream request: ") +
                                            curl_multi_strerror(rc)));
      handles_.Recycle(t->easy, t->request, /*configured=*/true);
      if (t->header_list) curl_slist_free_all(t->header_list);
      return;
    }
    client_.active_exchanges_.fetch_add(1);
    by_easy_[t->easy] = t.get();
    transfers_[id] = std::move(t);
  }

  void Cancel(uint64_t id) {
    if (http1_ && http1_->Cancel(id)) return;
    auto it = transfers_.find(id);
    if (it == transfers_.end()) return;  // already completed
    Finish(it->second.get(), absl::CancelledError("upstream call cancelled"));
  }

  void AddTimer(absl::Duration delay, absl::AnyInvocable<void(bool)> task) {
    if (stopping_) {
      task(true);
      return;
    }
    timers_.emplace(std::make_pair(absl::Now() + delay, next_timer_seq_++), std::move(task));
  }

 private:
  struct Transfer {
    uint64_t id = 0;
    Loop* loop = nullptr;
    CURL* easy = nullptr;
    curl_slist* header_list = nullptr;
    HttpRequest request;
    std::shared_ptr<HttpHandler> handler;
    HttpResponseHead head;
    absl::Time started;
    absl::Time first_byte_deadline = absl::InfiniteFuture();
    bool connected = false;       // the connection is up (PREREQFUNCTION ran)
    bool got_first_byte = false;  // a response status line arrived
    bool head_delivered = false;
    bool aborted_by_handler = false;
    char error[CURL_ERROR_SIZE] = {0};
  };

  static size_t OnHeaderLine(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    std::string_view line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) {
      // A new status line (after a 100 Continue, say): the head starts over.
      t->head.headers.clear();
      if (!t->got_first_byte) {
        t->got_first_byte = true;
        t->loop->first_byte_deadlines_.erase({t->first_byte_deadline, t->id});
      }
      return size * n;
    }
    size_t colon = line.find(':');
    if (colon != std::string_view::npos) {
      t->head.headers.emplace_back(AsciiLower(AsciiTrim(line.substr(0, colon))),
                                   std::string(AsciiTrim(line.substr(colon + 1))));
    }
    return size * n;
  }

  static size_t OnBodyBytes(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    t->loop->DeliverHead(*t);
    if (!t->handler->OnBody(std::string_view(data, size * n))) {
      t->aborted_by_handler = true;
      return 0;  // makes libcurl abort the transfer with CURLE_WRITE_ERROR
    }
    return size * n;
  }

  static int OnConnected(void* user, char*, char*, int, int) {
    static_cast<Transfer*>(user)->connected = true;
    return CURL_PREREQFUNC_OK;
  }

  bool Configure(Transfer& t) {
    bool configured = false;
    t.easy = handles_.NewEasy(t.request, &configured);
    if (!t.easy) {
      std::strcpy(t.error, "curl_easy_init failed");
      return false;
    }
    CURL* e = t.easy;
    const HttpRequest& r = t.request;
    bool ok = true;
    auto set = [&](CURLoption option, auto value) {
      if (curl_easy_setopt(e, option, value) != CURLE_OK) ok = false;
    };
    if (!configured) {
      set(CURLOPT_NOSIGNAL, 1L);
      set(CURLOPT_PROTOCOLS_STR, "http,https");
      set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
      set(CURLOPT_PIPEWAIT, 1L);
      set(CURLOPT_TCP_KEEPALIVE, 1L);
      set(CURLOPT_SSL_VERIFYPEER, r.insecure_skip_verify ? 0L : 1L);
      set(CURLOPT_SSL_VERIFYHOST, r.insecure_skip_verify ? 0L : 2L);
      if (!r.ca_bundle.empty()) set(CURLOPT_CAINFO, r.ca_bundle.c_str());
      set(CURLOPT_HEADERFUNCTION, &Loop::OnHeaderLine);
      set(CURLOPT_WRITEFUNCTION, &Loop::OnBodyBytes);
      set(CURLOPT_PREREQFUNCTION, &Loop::OnConnected);
      if (!ProxyInEnvironment()) {
        // No proxy: saying so spares libcurl six environment look-ups per exchange.
        set(CURLOPT_PROXY, "");
        set(CURLOPT_NOPROXY, "");
      }
    }
    // The exchange's own options, every time.
    set(CURLOPT_ERRORBUFFER, t.error);
    set(CURLOPT_PRIVATE, &t);
    if (CURLU* url = handles_.ParsedUrl(r.url)) {
      set(CURLOPT_CURLU, url);  // read only by libcurl: shared by every exchange to this URL
    } else {
      set(CURLOPT_CURLU, static_cast<CURLU*>(nullptr));
      set(CURLOPT_URL, r.url.c_str());
    }
    set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(ToMs(r.connect_timeout)));
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(ToMs(r.total_timeout)));
    set(CURLOPT_HEADERDATA, &t);
    set(CURLOPT_WRITEDATA, &t);
    set(CURLOPT_PREREQDATA, &t);
    if (r.method == "GET") {
      set(CURLOPT_CUSTOMREQUEST, static_cast<const char*>(nullptr));
      set(CURLOPT_HTTPGET, 1L);
    } else {
      set(CURLOPT_CUSTOMREQUEST, r.method == "POST" ? nullptr : r.method.c_str());
      set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      set(CURLOPT_POSTFIELDS, r.body.data());
    }
    for (const auto& [name, value] : r.headers) {
      std::string line = name + ": " + value;
      curl_slist* next = curl_slist_append(t.header_list, line.c_str());
      if (!next)
        ok = false;
      else
        t.header_list = next;
    }
    // No "Expect: 100-continue" round trip for large bodies.
    t.header_list = curl_slist_append(t.header_list, "Expect:");
    set(CURLOPT_HTTPHEADER, t.header_list);
    if (!ok && t.error[0] == 0) std::strcpy(t.error, "unsupported option");
    return ok;
  }

  void DeliverHead(Transfer& t) {
    if (t.head_delivered) return;
    t.head_delivered = true;
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    long version = 0;
    curl_easy_getinfo(t.easy, CURLINFO_HTTP_VERSION, &version);
    t.head.status = static_cast<int>(status);
    t.head.http_version = version == CURL_HTTP_VERSION_1_0   ? 10
                          : version == CURL_HTTP_VERSION_1_1 ? 11
                          : version == CURL_HTTP_VERSION_2_0 ? 20
                          : version == CURL_HTTP_VERSION_3   ? 30
                                                             : 0;
    t.handler->OnHead(t.head);
  }

  std::string Detail(const Transfer& t, CURLcode code) const {
    return t.error[0] ? std::string(t.error) : std::string(curl_easy_strerror(code));
  }

  absl::Status StatusOf(Transfer& t, CURLcode code) {
    if (code == CURLE_OK) return absl::OkStatus();
    if (t.aborted_by_handler) return absl::CancelledError("upstream call aborted by its handler");
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT:
        if (!t.connected) return ConnectTimedOut(Detail(t, code));
        return ResponseTimedOut(Detail(t, code));
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_RESOLVE_PROXY:
        return ConnectFailed(Detail(t, code));
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CIPHER:
      case CURLE_SSL_ISSUER_ERROR:
      case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_URL_MALFORMAT:
        return WithRecovery(UpstreamFailed("upstream TLS or URL problem: " + Detail(t, code)),
                            Recovery::kFallBack);
      default:
        return ConnectionFailed(Detail(t, code));
    }
  }

  // Removes the transfer and completes it. Never called from inside a libcurl callback.
  void Finish(Transfer* t, absl::Status status) {
    curl_multi_remove_handle(multi_, t->easy);
    long connects = 0;
    if (curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK) {
      client_.connections_opened_.fetch_add(connects);
    }
    first_byte_deadlines_.erase({t->first_byte_deadline, t->id});
    if (status.ok()) DeliverHead(*t);
    by_easy_.erase(t->easy);
    handles_.Recycle(t->easy, t->request, /*configured=*/true);
    curl_slist_free_all(t->header_list);
    std::unique_ptr<Transfer> owned = std::move(transfers_[t->id]);
    transfers_.erase(t->id);
    client_.active_exchanges_.fetch_sub(1);
    owned->handler->OnComplete(std::move(status));
  }

  void RunCommands() {
    for (auto& command : core_->TakeQueue()) command();
  }

  void DrainMessages() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      auto it = by_easy_.find(msg->easy_handle);
      if (it == by_easy_.end()) continue;
      Transfer* t = it->second;
      Finish(t, StatusOf(*t, msg->data.result));
    }
  }

  void FireTimers() {
    absl::Time now = absl::Now();
    while (!timers_.empty() && timers_.begin()->first.first <= now) {
      auto node = timers_.extract(timers_.begin());
      node.mapped()(false);
    }
    while (!first_byte_deadlines_.empty() && first_byte_deadlines_.begin()->first <= now) {
      uint64_t id = first_byte_deadlines_.begin()->second;
      first_byte_deadlines_.erase(first_byte_deadlines_.begin());
      auto it = transfers_.find(id);
      if (it == transfers_.end()) continue;
      Transfer* t = it->second.get();
      Finish(t, FirstByteTimedOut(t->request.first_byte_timeout));
    }
    if (http1_) http1_->FireDeadlines(now);
  }

  // Lets libcurl act on its timer when it is due (new transfers start this way too).
  void RunCurlTimer() {
    if (curl_deadline_ > absl::Now()) return;
    curl_deadline_ = absl::InfiniteFuture();  // OnTimer sets the next one
    int running = 0;
    curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  }

  // The earliest of libcurl's timer, our timers and the first-byte deadlines.
  absl::Time NextDeadline() const {
    absl::Time next = curl_deadline_;
    if (!timers_.empty()) next = std::min(next, timers_.begin()->first.first);
    if (!first_byte_deadlines_.empty()) {
      next = std::min(next, first_byte_deadlines_.begin()->first);
    }
    if (http1_) next = std::min(next, http1_->NextDeadline());
    return next;
  }

  int PollTimeoutMs() const {
    if (core_->HasLocal()) return 0;
    const absl::Time next = NextDeadline();
    const absl::Time now = absl::Now();
    if (next <= now) return 0;
    if (next - now >= absl::Seconds(1)) return 1000;
    return static_cast<int>(std::max<int64_t>(
        1, absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1)))));
  }

  // Hands ready sockets to libcurl. True when the wake-up was among the events: it is read (reset)
  // here, so the queue must be looked at again before the driver waits, or a command queued
  // between the last look and the reset would wait for an unrelated event.
  // `after_event` runs after the work of each socket.
  // A host's event (HostedLane::kHostEventTag) goes to `on_host_event`; one seen by the lane's
  // own thread or a look of RunHosted's, once the host has gone, is dropped.
  bool HandleEvents(
      const epoll_event* events, int n, absl::FunctionRef<void()> after_event,
      absl::FunctionRef<void(uint64_t, uint32_t)> on_host_event = [](uint64_t, uint32_t) {}) {
    // The lane's events first: an upstream's answer ends a request that came before any the
    // host's events bring, so under a backlog requests finish in about the order they came.
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 & HostedLane::kHostEventTag) continue;  // below
      if (events[i].data.u64 & internal::kHttp1Tag) {
        http1_->OnEvent(events[i].data.u64, events[i].events);
        after_event();
        continue;
      }
      const int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        uint64_t count;
        ssize_t ignored = read(wake_fd_, &count, sizeof(count));
        (void)ignored;
        woken = true;
        continue;
      }
      const uint32_t e = events[i].events;
      int mask = ((e & EPOLLIN) ? CURL_CSELECT_IN : 0) | ((e & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                 ((e & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
      int running = 0;
      curl_multi_socket_action(multi_, fd, mask, &running);
      after_event();
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 & HostedLane::kHostEventTag) {
        on_host_event(events[i].data.u64, events[i].events);
      }
    }
    return woken;
  }

  // The lane's own thread.
  void Run() {
    constexpr int kMaxEvents = 128;
    epoll_event events[kMaxEvents];
    while (true) {
      RunCommands();
      if (stop_requested_ || yield_requested_) break;
      RunCurlTimer();
      DrainMessages();
      FireTimers();
      const int n = epoll_wait(epoll_fd_, events, kMaxEvents, PollTimeoutMs());
      HandleEvents(events, n, [] {});
      DrainMessages();
    }
    if (yield_requested_) {
      yield_requested_ = false;
      core_->SetDriver(std::thread::id(), nullptr);
      return;
    }
    Shutdown();
  }

  void Shutdown() {
    stopping_ = true;
    if (http1_) http1_->Shutdown();
    while (!transfers_.empty()) {
      Finish(transfers_.begin()->second.get(), absl::CancelledError("HTTP client shut down"));
    }
    while (true) {
      RunCommands();  // Start and Schedule now complete at once (stopping_)
      if (!timers_.empty()) {
        auto timers = std::move(timers_);
        timers_.clear();
        for (auto& [key, task] : timers) task(true);
        continue;
      }
      if (core_->CloseIfIdle()) break;
    }
  }

  HttpClient& client_;
  const size_t index_;
  CURLM* const multi_;
  const int epoll_fd_;
  const int wake_fd_;
  const std::shared_ptr<internal::EngineCore> core_;
  std::thread thread_;
  std::atomic<bool> hosted_{false};

  bool stop_requested_ = false;
  bool yield_requested_ = false;
  bool stopping_ = false;
  // A hosted run's last look at the sockets may have left work in the epoll set (all kMaxEvents
  // slots filled, or a connection's reads ran out): the next hosted run looks again.
  bool sockets_unfinished_ = false;
  std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
  std::unordered_map<CURL*, Transfer*> by_easy_;
  std::set<std::pair<absl::Time, uint64_t>> first_byte_deadlines_;
  std::map<std::pair<absl::Time, uint64_t>, absl::AnyInvocable<void(bool)>> timers_;
  uint64_t next_timer_seq_ = 0;
  absl::Time curl_deadline_ = absl::InfiniteFuture();  // libcurl's timer (OnTimer)
  internal::CurlHandles handles_;  // easy handles for the next exchanges, URLs parsed once
  std::unique_ptr<internal::Http1Client> http1_;         // cleartext HTTP/1.1 exchanges; null: none
};

absl::StatusOr<std::unique_ptr<HttpClient>> HttpClient::Create(const HttpClientOptions& options) {
  CURLcode global = CURLE_OK;
  std::call_once(curl_global_once, [&] { global = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (global != CURLE_OK) {
    return absl::InternalError(std::string("curl_global_init: ") + curl_easy_strerror(global));
  }
  const int lanes = std::max(1, options.lanes);
  const int cached = options.max_cached_connections > 0  ? options.max_cached_connections
                     : options.max_total_connections > 0 ? options.max_total_connections
                                                         : 1024;
  std::unique_ptr<HttpClient> client(new HttpClient());
  for (int index = 0; index < lanes; ++index) {
    const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) return absl::InternalError(std::string("eventfd: ") + std::strerror(errno));
    auto core = std::make_shared<internal::EngineCore>(wake_fd);  // owns wake_fd from here on
    const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) return absl::InternalError(std::string("epoll: ") + std::strerror(errno));
    epoll_event wake{};
    wake.events = EPOLLIN;
    wake.data.fd = wake_fd;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &wake) != 0) {
      close(epoll_fd);
      return absl::InternalError(std::string("epoll_ctl: ") + std::strerror(errno));
    }
    CURLM* multi = internal::NewLaneMulti(internal::PerLane(options.max_connections_per_host, lanes),
                                          internal::PerLane(options.max_total_connections, lanes),
                                          internal::PerLane(cached, lanes));
    if (!multi) {
      close(epoll_fd);
      return absl::InternalError("curl_multi_init failed");
    }

    std::optional<internal::Http1Limits> http1;
    // With a proxy in the environment, every exchange goes through libcurl, which honours it.
    if (!options.libcurl_only && !ProxyInEnvironment()) {
      http1 = internal::Http1Limits{
          .per_host = static_cast<int>(internal::PerLane(options.max_connections_per_host, lanes)),
          .total = static_cast<int>(internal::PerLane(options.max_total_connections, lanes)),
          .cached = static_cast<int>(internal::PerLane(cached, lanes))};
    }
    auto loop = std::make_unique<Loop>(*client, static_cast<size_t>(index), multi, epoll_fd,
                                       std::move(core), http1);
    Loop* raw = loop.get();
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Loop::OnSocket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, raw);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Loop::OnTimer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, raw);
    // Handles reach the lane only through its queue, whose commands run on the lane's thread
    // while the lane exists, so the raw pointer is safe there.
    raw->core()->cancel = [raw](uint64_t id) { raw->Cancel(id); };
    client->loops_.push_back(std::move(loop));
  }
  for (auto& loop : client->loops_) loop->StartThread();
  return client;
}

HttpClient::~HttpClient() {
  for (auto& loop : loops_) {
    assert(!loop->hosted().load() && "a HostedLane outlives its HttpClient");
    Loop* raw = loop.get();
    raw->core()->Post([raw] { raw->RequestStop(); });
  }
  for (auto& loop : loops_) loop->Join();
  loops_.clear();
}

HttpClient::Loop& HttpClient::PickLane() {
  const LaneOfThread& mine = lane_of_thread;
  if (mine.client == this && mine.lane < loops_.size() &&
      loops_[mine.lane]->core()->OnDriverThread()) {
    return *loops_[mine.lane];
  }
  if (loops_.size() == 1) return *loops_[0];
  return *loops_[next_lane_.fetch_add(1, std::memory_order_relaxed) % loops_.size()];
}

std::unique_ptr<HttpCall> HttpClient::Start(HttpRequest request,
                                            std::shared_ptr<HttpHandler> handler) {
  static std::atomic<uint64_t> next_id{1};
  uint64_t id = next_id.fetch_add(1, std::memory_order_relaxed);
  exchanges_started_.fetch_add(1, std::memory_order_relaxed);
  Loop* loop = &PickLane();
  std::shared_ptr<HttpHandler> kept = handler;  // to complete it when the lane refuses
  bool posted = loop->core()->Post(
      [loop, id, request = std::move(request), handler = std::move(handler)]() mutable {
        loop->Add(id, std::move(request), std::move(handler));
      });
  if (!posted) kept->OnComplete(absl::CancelledError("HTTP client is shut down"));
  return std::make_unique<HttpCall>(loop->core(), id);
}

void HttpClient::Schedule(absl::Duration delay, absl::AnyInvocable<void(bool stopping)> task) {
  Loop* loop = &PickLane();
  // The command owns the task until the lane takes it; a refused command gives it back.
  auto shared_task = std::make_shared<absl::AnyInvocable<void(bool)>>(std::move(task));
  bool posted = loop->core()->Post(
      [loop, delay, shared_task] { loop->AddTimer(delay, std::move(*shared_task)); });
  if (!posted) (*shared_task)(true);
}

bool HttpClient::OnLoopThread() const {
  for (const auto& loop : loops_) {
    if (loop->core()->OnDriverThread()) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<HostedLane>> HttpClient::Host(int lane,
                                                             absl::AnyInvocable<void()> run_soon) {
  if (lane < 0 || lane >= lanes()) {
    return absl::InvalidArgumentError("no HTTP client lane " + std::to_string(lane));
  }
  Loop* loop = loops_[lane].get();
  if (loop->core()->OnDriverThread() || loop->hosted().exchange(true)) {
    return absl::FailedPreconditionError("HTTP client lane " + std::to_string(lane) +
                                         " is hosted already");
  }
  if (!loop->core()->Post([loop] { loop->RequestYield(); })) {
    loop->hosted().store(false);
    return absl::FailedPreconditionError("the HTTP client is shut down");
  }
  loop->Join();
  loop->core()->SetDriver(std::this_thread::get_id(), std::move(run_soon));
  lane_of_thread = {this, static_cast<size_t>(lane)};
  return std::unique_ptr<HostedLane>(new HostedLane(*this, lane));
}

HostedLane::~HostedLane() {
  HttpClient::Loop* loop = client_.loops_[lane_].get();
  loop->core()->SetDriver(std::thread::id(), nullptr);
  loop->StartThread();
  loop->hosted().store(false);
}

int HostedLane::fd() const { return client_.loops_[lane_]->epoll_fd(); }

absl::Time HostedLane::Run(absl::FunctionRef<void()> after_event) {
  return client_.loops_[lane_]->RunHosted(after_event, /*poll=*/true);
}

absl::Time HostedLane::RunQueued(absl::FunctionRef<void()> after_event) {
  return client_.loops_[lane_]->RunHosted(after_event, /*poll=*/false);
}

absl::Time HostedLane::Wait(absl::Duration timeout,
                            absl::FunctionRef<void(uint64_t, uint32_t)> on_host_event,
                            absl::FunctionRef<void()> after_event) {
  int timeout_ms = -1;
  if (timeout <= absl::ZeroDuration()) {
    timeout_ms = 0;
  } else if (timeout < absl::Hours(1)) {
    timeout_ms =
        static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1))));
  }
  return client_.loops_[lane_]->WaitShared(timeout_ms, on_host_event, after_event);
}

}  // namespace terse::providers
