// terse's own HTTP/1.1 client for cleartext upstreams (`http://` to an address or localhost: the
// in-cluster vLLM, Ollama or llama.cpp server, where the gateway's own cost shows most). One lives
// in each lane of HttpClient and shares the lane's thread, epoll set and deadlines; libcurl keeps
// everything else (TLS, HTTP/2, proxies). Host names are resolved off the lane's thread and
// kept for a minute, refreshed in the background. It honours HttpClient's contract
// to the letter: the same handler calls, timeouts, statuses and recovery marks, keep-alive reuse
// with connection limits, and a request that met a stale kept-alive connection is sent again once
// on a new one, as libcurl does. Internal to providers/.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "providers/http1_response.h"
#include "providers/http_client.h"

namespace terse::providers::internal {

// The epoll data of this client's sockets: the tag plus the connection's id. (libcurl's sockets
// carry their descriptor, which never has the tag's bit.)
inline constexpr uint64_t kHttp1Tag = uint64_t{1} << 63;

struct Http1Limits {
  int per_host = 0;   // connections to one host:port, busy or idle; 0: no limit
  int total = 0;      // all connections; 0: no limit
  int cached = 1024;  // connections kept open for reuse at most
};

// Lane thread only, like everything of a lane.
class Http1Client {
 public:
  // Queues a command for the lane's thread from any thread; false when the lane is gone (the
  // command is then dropped).
  using PostFn = std::function<bool(absl::AnyInvocable<void()>)>;

  Http1Client(int epoll_fd, Http1Limits limits, PostFn post,
              std::atomic<int64_t>& connections_opened, std::atomic<int>& active_exchanges);
  // Closes every connection; exchanges still in flight are dropped without a call (Shutdown
  // completes them first).
  ~Http1Client();
  Http1Client(const Http1Client&) = delete;
  Http1Client& operator=(const Http1Client&) = delete;

  // Starts `request` when this client can carry it (an http:// URL with a numeric host,
  // localhost or a plain DNS name) and takes it and `handler`; false, leaving both alone, when
  // libcurl must.
  bool TryStart(uint64_t id, HttpRequest& request, std::shared_ptr<HttpHandler>& handler);
  // Aborts exchange `id` (its connection is closed) with kCancelled; false when it is not one of
  // this client's exchanges in flight.
  bool Cancel(uint64_t id);
  // An epoll event whose data has kHttp1Tag.
  void OnEvent(uint64_t data, uint32_t events);
  // Whether, since the last call, a connection stopped reading with bytes perhaps still unread
  // (its reads for one event ran out). The epoll set reports such a socket again, but a watch of
  // the epoll descriptor from outside does not: the caller must look at the set once more.
  bool TakeUnread() { return std::exchange(unread_, false); }
  // Ends the exchanges whose timeouts have passed, and closes connections idle for too long.
  void FireDeadlines(absl::Time now);
  absl::Time NextDeadline() const;
  // Completes every exchange with kCancelled and closes every connection.
  void Shutdown();

 private:
  struct Origin;
  struct Target;
  struct Connection;
  struct Exchange;
  struct Resolution {
    sockaddr_storage address{};
    socklen_t address_size = 0;
    std::string error;  // empty: resolved
  };

  const Target* TargetOf(const std::string& url);
  void Assign(Exchange& exchange);
  // Connects the exchange to its origin, once its host name has an address.
  void Connect(Exchange& exchange);
  // Resolves the origin's name on a thread of its own; OnResolved hears the answer on the lane.
  void Resolve(Origin& origin);
  void OnResolved(Origin& origin, Resolution result);
  // The connection is up: the exchange on it goes out.
  void Connected(Connection& connection);
  void Send(Connection& connection);
  void Receive(Connection& connection);
  void Watch(Connection& connection, uint32_t events);
  // Completes the exchange with `status` and leaves its connection idle (reusable) or closed.
  void Complete(Exchange& exchange, absl::Status status, bool reuse_connection);
  // The connection failed under its exchange: resend a request that met a stale kept-alive
  // connection, or complete the exchange with `status`.
  void Fail(Connection& connection, absl::Status status);
  void Close(Connection& connection);
  void Reschedule(Exchange& exchange);
  // Starts waiting exchanges that the connection limits now allow, when a connection closed or
  // went idle since it last ran (nothing else makes room).
  void StartWaiting();
  bool UnderHostLimit(const Origin& origin) const;
  bool UnderTotalLimit() const;
  bool HasRoomFor(const Origin& origin) const;
  // Puts `exchange` on `connection`, its request to be sent from the start.
  void Attach(Exchange& exchange, Connection& connection);

  // Constant after construction.
  const int epoll_fd_;
  const Http1Limits limits_;
  const PostFn post_;
  std::atomic<int64_t>& connections_opened_;
  std::atomic<int>& active_exchanges_;

  std::unordered_map<std::string, std::unique_ptr<Target>> targets_;  // by URL; null: libcurl's
  std::unordered_map<std::string, std::unique_ptr<Origin>> origins_;  // by "host:port"
  std::unordered_map<uint64_t, std::unique_ptr<Exchange>> exchanges_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::deque<uint64_t> waiting_;  // exchanges held back by the limits, in order
  std::set<std::pair<absl::Time, uint64_t>> deadlines_;  // each exchange's next deadline
  absl::Time next_idle_sweep_ = absl::InfiniteFuture();
  uint64_t next_connection_id_ = 1;
  bool stopping_ = false;
  bool room_freed_ = false;   // a connection closed or went idle since StartWaiting last ran
  std::vector<char> buffer_;  // one read's bytes
  bool unread_ = false;       // see TakeUnread
};

}  // namespace terse::providers::internal
