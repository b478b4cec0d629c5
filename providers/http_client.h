// The one asynchronous HTTP engine of terse, shared by every provider and driven by event loops.
// The engine has one or more lanes; a lane is run by one thread: a thread of its own, or the
// thread of an outside event loop that hosts it (terse's HTTP face hosts one lane on each I/O
// thread, so a request and its upstream exchange never change threads). A lane carries exchanges
// over libcurl's multi interface (TLS with peers verified, HTTP/2 when the upstream offers it,
// proxies) and, for cleartext http:// upstreams, over terse's own HTTP/1.1 connections
// (http1_client.h), which halve a pass-through request's instructions. Either way connections
// are kept alive and reused, and the handler hears the same calls. No libcurl type appears here.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace terse::providers {

// The bytes of a request's body, read-only once set. They are shared, not copied, with whoever
// else holds them: a call keeps its request's text for the next attempt while an attempt sends it.
class HttpBody {
 public:
  HttpBody() = default;
  HttpBody(std::string bytes)  // NOLINT: a body is its bytes
      : bytes_(std::make_shared<const std::string>(std::move(bytes))) {}
  HttpBody(const char* bytes) : HttpBody(std::string(bytes)) {}  // NOLINT: as above
  explicit HttpBody(std::shared_ptr<const std::string> bytes) : bytes_(std::move(bytes)) {}

  std::string_view view() const { return bytes_ ? std::string_view(*bytes_) : std::string_view(); }
  const char* data() const { return view().data(); }
  size_t size() const { return bytes_ ? bytes_->size() : 0; }
  bool empty() const { return size() == 0; }
  void clear() { bytes_.reset(); }

 private:
  std::shared_ptr<const std::string> bytes_;
};

struct HttpRequest {
  std::string method = "POST";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  HttpBody body;
  absl::Duration connect_timeout = absl::Seconds(5);
  // From the start of the exchange until the first byte of the response head.
  absl::Duration first_byte_timeout = absl::Seconds(60);
  // The whole exchange, body included. InfiniteDuration: none.
  absl::Duration total_timeout = absl::Minutes(10);
  std::string ca_bundle;              // PEM file to verify the peer with; empty: the system's
  bool insecure_skip_verify = false;  // for local test upstreams only
  // A cleartext exchange goes through libcurl too, not terse's own HTTP/1.1 client.
  bool libcurl_only = false;
};

struct HttpResponseHead {
  int status = 0;
  int http_version = 0;                                      // 10, 11, 20 or 30
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order

  // The first header `name` (lower-case), or "" when absent; valid as long as the head is.
  std::string_view Header(std::string_view name) const;
};

// Receives one exchange. Every method runs on the thread of the exchange's lane, so it must be
// quick and must not block; it may call HttpClient::Start, Schedule and HttpCall::Cancel.
class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Once, before any body byte, as soon as the response head is complete.
  virtual void OnHead(const HttpResponseHead& head) = 0;
  // Body bytes as they arrive (not buffered to the end). Returning false aborts the exchange:
  // OnComplete(kCancelled) follows.
  virtual bool OnBody(std::string_view bytes) = 0;
  // Exactly once, last. OK when the whole response arrived, whatever its HTTP status. Otherwise
  // UpstreamFailed (connection or TLS failure), UpstreamTimedOut (connect, first byte or total
  // timeout) or kCancelled; see upstream_errors.h for whether a retry may help.
  virtual void OnComplete(absl::Status status) = 0;
};

namespace internal {
class EngineCore;
}  // namespace internal

// A handle on one exchange. Thread-safe. Destroying the handle does not cancel the exchange.
class HttpCall {
 public:
  HttpCall(std::shared_ptr<internal::EngineCore> core, uint64_t id)
      : core_(std::move(core)), id_(id) {}
  // Aborts the exchange (its connection is closed) and completes it with kCancelled, unless it
  // already completed. Idempotent; a no-op once the client has shut down.
  void Cancel();

 private:
  std::shared_ptr<internal::EngineCore> core_;
  uint64_t id_;
};

struct HttpClientOptions {
  int max_connections_per_host = 0;  // 0: no limit
  int max_total_connections = 0;     // 0: no limit
  // Connections kept open, idle or busy, for reuse; 0: max_total_connections, or 1024 when that
  // is 0 too. (libcurl's own default, 4 per exchange in flight, closed most connections of a
  // burst as it ended, and the next burst paid for new ones.) Idle ones close after ~2 minutes.
  int max_cached_connections = 0;
  // Lanes (at least 1). Each lane has its own connections; the limits above are shared out among
  // the lanes, each getting its share rounded up (so at least one connection per host).
  int lanes = 1;
  // Cleartext exchanges (http:// to an address or localhost, no proxy in the environment) go
  // over terse's own HTTP/1.1 connections instead of libcurl's, with the same contract and less
  // CPU per exchange. true: libcurl carries every exchange.
  bool libcurl_only = false;
};

class HostedLane;

// Thread-safe: Start, Schedule and Cancel may be called from any thread. A call from a lane's
// thread goes to that lane without waking anyone; a call from another thread goes to the lanes in
// turn. Neither ever calls the handler or task before returning (except after shutdown).
class HttpClient {
 public:
  static absl::StatusOr<std::unique_ptr<HttpClient>> Create(const HttpClientOptions& options = {});
  // Aborts exchanges in flight (OnComplete(kCancelled)), runs pending tasks with stopping=true,
  // and joins the lanes' threads. Every HostedLane must be gone first. Must not be called on a
  // lane's thread.
  ~HttpClient();

  // Starts an exchange and returns at once; `handler` hears the rest on its lane's thread. Once
  // the client has shut down, the handler is completed with kCancelled on the calling thread.
  std::unique_ptr<HttpCall> Start(HttpRequest request, std::shared_ptr<HttpHandler> handler);

  // Runs `task(false)` on a lane's thread after `delay`, or `task(true)` at once when the client
  // shuts down first (so that work waiting on a timer can end cleanly).
  void Schedule(absl::Duration delay, absl::AnyInvocable<void(bool stopping)> task);

  // Whether the calling thread runs one of the lanes.
  bool OnLoopThread() const;

  int lanes() const { return static_cast<int>(loops_.size()); }

  // Moves lane `lane` from its own thread onto the calling thread, which from now on runs it
  // through the returned HostedLane from an event loop of its own. `run_soon` is called on the
  // calling thread when the lane has work for it outside Run (a Start from an event handler, say):
  // the host should call Run soon after, from its loop, not from inside run_soon.
  // kFailedPrecondition when the lane is hosted already.
  absl::StatusOr<std::unique_ptr<HostedLane>> Host(int lane, absl::AnyInvocable<void()> run_soon);

  // Counters, for tests and metrics.
  int64_t connections_opened() const { return connections_opened_.load(); }
  int64_t exchanges_started() const { return exchanges_started_.load(); }
  int active_exchanges() const { return active_exchanges_.load(); }

 private:
  class Loop;
  friend class HostedLane;
  HttpClient() = default;
  Loop& PickLane();

  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<uint64_t> next_lane_{0};
  std::atomic<int64_t> connections_opened_{0};
  std::atomic<int64_t> exchanges_started_{0};
  std::atomic<int> active_exchanges_{0};
};

// One lane of an HttpClient, run by an outside event loop on the thread that called Host. Run and
// fd are for that thread only.
class HostedLane {
 public:
  // Hands the lane back to a thread of its own, with everything in flight. Call it once the host
  // no longer calls Run (from any thread), before the client is destroyed.
  ~HostedLane();
  HostedLane(const HostedLane&) = delete;
  HostedLane& operator=(const HostedLane&) = delete;

  // Becomes readable when the lane has work (a socket or a command from another thread). It stays
  // readable until Run has taken the work, so an edge-triggered watch re-armed after Run misses
  // nothing. Owned by the lane: do not close it.
  int fd() const;

  // Does all the lane's ready work without blocking, and returns when Run is due again even if
  // fd() stays quiet (absl::InfiniteFuture(): not before fd() or run_soon says so).
  // `after_event` runs after the work of each ready socket (and once more at the end), so that
  // the host can pass on what that work produced without waiting for the rest of the run.
  absl::Time Run(absl::FunctionRef<void()> after_event = [] {});

  // Run without looking at the lane's sockets: the queued commands (a Start from an event
  // handler, say) and the timers only. For a host whose edge-triggered watch of fd() is armed, so
  // that what the sockets have for the lane comes as fd()'s event, and a Run then; it saves the
  // look at the sockets (a system call) when run_soon, not fd(), brought the host here.
  absl::Time RunQueued(absl::FunctionRef<void()> after_event = [] {});

  // For a host that keeps its own descriptors in the lane's epoll set instead of watching fd()
  // from a set of its own: one epoll_wait serves both, with no nested look and no re-arm.
  // The host adds its descriptors to fd() itself (epoll_ctl; edge-triggered or not, as it
  // likes), with data.u64 carrying kHostEventTag and 62 bits of its own, and removes them
  // before the lane is handed back: the lane drops a tagged event it sees on its own. Waits up
  // to `timeout` (InfiniteDuration: until an event) unless the lane has work queued, does the
  // lane's events (after_event after each socket's work, as in Run), then passes each tagged
  // event to `on_host_event(data.u64, events)`, then runs the queued work and timers: answers
  // the wait brought are handled before the new work it brought. Returns when the lane is due
  // again, as Run does; run_soon still tells of work a host's handler gives the lane.
  static constexpr uint64_t kHostEventTag = uint64_t{1} << 62;
  absl::Time Wait(
      absl::Duration timeout, absl::FunctionRef<void(uint64_t data, uint32_t events)> on_host_event,
      absl::FunctionRef<void()> after_event = [] {});

 private:
  friend class HttpClient;
  HostedLane(HttpClient& client, int lane) : client_(client), lane_(lane) {}
  HttpClient& client_;
  const int lane_;
};

}  // namespace terse::providers
