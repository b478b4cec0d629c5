#include "providers/http1_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>
#include <thread>

#include "absl/strings/ascii.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "providers/upstream_errors.h"

namespace terse::providers::internal {
namespace {

// How long a connection may stay idle before it is closed (libcurl's default maximum age).
constexpr absl::Duration kMaxIdle = absl::Seconds(118);
constexpr absl::Duration kIdleSweepEvery = absl::Seconds(10);
constexpr size_t kReadBytes = 64 * 1024;
// Reads per readable event before the lane's other work gets a turn (level-triggered epoll
// reports the rest again).
constexpr int kMaxReadsPerEvent = 4;
// How long a resolved address is used before the name is resolved again (libcurl's DNS cache
// keeps entries as long), and when to try again after a refresh failed.
constexpr absl::Duration kResolvedFor = absl::Seconds(60);
constexpr absl::Duration kResolveRetryAfter = absl::Seconds(5);

int64_t ToMs(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

absl::Time DeadlineAfter(absl::Time start, absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration() || timeout <= absl::ZeroDuration()) {
    return absl::InfiniteFuture();
  }
  return start + timeout;
}

std::string ErrnoText(int error) { return std::strerror(error); }

// The parts of an http:// URL this client can carry: a numeric host (IPv4, or IPv6 in
// brackets), localhost, or a plain DNS name; an optional port; no user info or fragment. False
// when libcurl must take the URL.
struct UrlParts {
  sockaddr_storage address{};
  socklen_t address_size = 0;  // 0: `name` is to be resolved
  std::string name;
  int port = 0;
  std::string origin;       // "host:port", the connection pool's key
  std::string host_header;  // the authority as written
  std::string target;       // path and query, origin-form
};

bool ParseCleartextUrl(std::string_view url, UrlParts* parts) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() <= kScheme.size() ||
      !AsciiEqualsIgnoreCase(url.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f ||
        c == '#' || c == '\\') {
      return false;  // libcurl's rules for these (encoding, rejection) stay libcurl's
    }
  }
  url.remove_prefix(kScheme.size());
  const size_t authority_end = url.find_first_of("/?");
  const std::string_view authority = url.substr(0, authority_end);
  std::string_view rest =
      authority_end == std::string_view::npos ? std::string_view() : url.substr(authority_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;

  std::string_view host, port_text;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return false;
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  int port = 80;
  if (!port_text.empty()) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
        port > 65535) {
      return false;
    }
  } else if (authority.back() == ':') {
    return false;
  }

  const std::string host_text(host);
  const std::string lower_host = AsciiLower(host);
  if (authority.front() == '[') {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&parts->address);
    if (inet_pton(AF_INET6, host_text.c_str(), &in6->sin6_addr) != 1) return false;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    parts->address_size = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&parts->address);
    const bool localhost = lower_host == "localhost";
    if (inet_pton(AF_INET, localhost ? "127.0.0.1" : host_text.c_str(), &in4->sin_addr) == 1) {
      in4->sin_family = AF_INET;
      in4->sin_port = htons(static_cast<uint16_t>(port));
      parts->address_size = sizeof(sockaddr_in);
    } else {
      // A name to resolve: letters, digits, '-', '.' and '_' only (anything else, an IDN say,
      // is libcurl's).
      if (host.empty() || host.front() == '.' || host.front() == '-') return false;
      for (char c : host) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' &&
            c != '_') {
          return false;
        }
      }
      parts->name = lower_host;
    }
  }
  parts->port = port;
  parts->origin = lower_host + ":" + std::to_string(port);
  parts->host_header = std::string(authority);
  parts->target = rest.empty() || rest.front() == '?' ? "/" + std::string(rest) : std::string(rest);
  return true;
}

}  // namespace

// The connections to one host:port.
struct Http1Client::Origin {
  std::string name;  // the host name to resolve; empty: the address is literal
  int port = 0;
  sockaddr_storage address{};
  socklen_t address_size = 0;                          // 0: not resolved yet
  absl::Time resolved_until = absl::InfiniteFuture();  // when to resolve `name` again
  bool resolving = false;
  std::vector<uint64_t> unresolved;  // exchanges waiting for the first address
  int connections = 0;               // open, busy or idle
  std::vector<Connection*> idle;     // most recently used last
};

struct Http1Client::Target {
  Origin* origin = nullptr;
  std::string host_header;
  std::string request_target;
};

struct Http1Client::Connection {
  uint64_t id = 0;
  int fd = -1;
  Origin* origin = nullptr;
  Exchange* exchange = nullptr;  // the exchange it carries; null when idle
  bool connected = false;
  int exchanges_done = 0;  // exchanges it carried to the end before the current one
  uint32_t watched = 0;    // the events the epoll set watches for it; 0: not in the set
  absl::Time idle_since;
};

struct Http1Client::Exchange {
  uint64_t id = 0;
  HttpRequest request;
  std::shared_ptr<HttpHandler> handler;
  const Target* target = nullptr;
  Connection* connection = nullptr;
  std::string head;  // the request head; the body follows it from request.body
  size_t sent = 0;   // bytes of head and body written
  Http1ResponseReader reader;
  absl::Time connect_deadline = absl::InfiniteFuture();
  absl::Time first_byte_deadline = absl::InfiniteFuture();
  absl::Time total_deadline = absl::InfiniteFuture();
  absl::Time deadline = absl::InfiniteFuture();  // its entry in deadlines_
  bool waiting = false;                          // in waiting_
  bool unresolved = false;                       // in its origin's unresolved list
  bool resent = false;                           // sent again after a stale kept-alive connection

  size_t size() const { return head.size() + request.body.size(); }
  // Its connection is up (a connection being opened, or none yet, is not).
  bool connected() const { return connection != nullptr && connection->connected; }
};

Http1Client::Http1Client(int epoll_fd, Http1Limits limits, PostFn post,
                         std::atomic<int64_t>& connections_opened,
                         std::atomic<int>& active_exchanges)
    : epoll_fd_(epoll_fd),
      limits_(limits),
      post_(std::move(post)),
      connections_opened_(connections_opened),
      active_exchanges_(active_exchanges),
      buffer_(kReadBytes) {}

Http1Client::~Http1Client() {
  for (auto& [id, connection] : connections_) close(connection->fd);
}

const Http1Client::Target* Http1Client::TargetOf(const std::string& url) {
  auto it = targets_.find(url);
  if (it != targets_.end()) return it->second.get();
  constexpr size_t kMaxTargets = 256;  // then further URLs go to libcurl
  if (targets_.size() >= kMaxTargets) return nullptr;
  UrlParts parts;
  if (!ParseCleartextUrl(url, &parts)) {
    targets_.emplace(url, nullptr);  // remembered: libcurl's
    return nullptr;
  }
  auto& origin = origins_[parts.origin];
  if (!origin) {
    origin = std::make_unique<Origin>();
    origin->name = parts.name;
    origin->port = parts.port;
    origin->address = parts.address;
    origin->address_size = parts.address_size;
  }
  auto target = std::make_unique<Target>();
  target->origin = origin.get();
  target->host_header = std::move(parts.host_header);
  target->request_target = std::move(parts.target);
  const Target* raw = target.get();
  targets_.emplace(url, std::move(target));
  return raw;
}

bool Http1Client::TryStart(uint64_t id, HttpRequest& request,
                           std::shared_ptr<HttpHandler>& handler) {
  if (request.libcurl_only) return false;
  const Target* target = TargetOf(request.url);
  if (target == nullptr) return false;
  auto owned = std::make_unique<Exchange>();
  Exchange& exchange = *owned;
  exchange.id = id;
  exchange.target = target;
  exchange.request = std::move(request);
  exchange.handler = std::move(handler);
  const HttpRequest& r = exchange.request;

  // The head, once (a resent request reuses it).
  std::string& head = exchange.head;
  head.reserve(128 + r.headers.size() * 48);
  head.append(r.method).append(" ").append(target->request_target).append(" HTTP/1.1\r\nHost: ");
  head.append(target->host_header).append("\r\n");
  for (const auto& [name, value] : r.headers) {
    if (value.empty()) continue;  // libcurl's convention: "Name:" removes a header
    head.append(name).append(": ").append(value).append("\r\n");
  }
  if (r.method == "GET" || r.method == "HEAD") {
    exchange.request.body.clear();  // as libcurl: these carry no body
  } else {
    head.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
  }
  head.append("\r\n");

  const absl::Time now = absl::Now();
  exchange.first_byte_deadline = DeadlineAfter(now, r.first_byte_timeout);
  exchange.total_deadline = DeadlineAfter(now, r.total_timeout);
  exchanges_.emplace(id, std::move(owned));
  active_exchanges_.fetch_add(1);
  Reschedule(exchange);
  Assign(exchange);
  return true;
}

bool Http1Client::UnderHostLimit(const Origin& origin) const {
  return limits_.per_host <= 0 || origin.connections < limits_.per_host;
}

bool Http1Client::UnderTotalLimit() const {
  return limits_.total <= 0 || static_cast<int>(connections_.size()) < limits_.total;
}

bool Http1Client::HasRoomFor(const Origin& origin) const {
  return UnderHostLimit(origin) && UnderTotalLimit();
}

void Http1Client::Attach(Exchange& exchange, Connection& connection) {
  connection.exchange = &exchange;
  exchange.connection = &connection;
  exchange.sent = 0;
  exchange.reader.Begin(exchange.request.method == "HEAD");
}

void Http1Client::Assign(Exchange& exchange) {
  Origin& origin = *exchange.target->origin;
  if (!origin.idle.empty()) {
    Connection* connection = origin.idle.back();
    origin.idle.pop_back();
    Attach(exchange, *connection);
    Reschedule(exchange);
    Send(*connection);
    return;
  }
  if (UnderHostLimit(origin) && !UnderTotalLimit()) {
    // The total limit is reached: an idle connection to another host, if any, gives way.
    for (auto& [key, other] : origins_) {
      if (!other->idle.empty()) {
        Close(*other->idle.front());
        break;
      }
    }
  }
  if (!HasRoomFor(origin)) {
    exchange.waiting = true;
    waiting_.push_back(exchange.id);
    return;
  }
  Connect(exchange);
}

void Http1Client::Connect(Exchange& exchange) {
  Origin& origin = *exchange.target->origin;
  if (!origin.name.empty()) {
    const absl::Time now = absl::Now();
    if (origin.address_size == 0) {
      // Waits for the first address (OnResolved), under the connect timeout.
      exchange.unresolved = true;
      origin.unresolved.push_back(exchange.id);
      exchange.connect_deadline = DeadlineAfter(now, exchange.request.connect_timeout);
      Reschedule(exchange);
      if (!origin.resolving) Resolve(origin);
      return;
    }
    // A refresh in the background; the address it has is used meanwhile.
    if (!origin.resolving && now >= origin.resolved_until) Resolve(origin);
  }
  const int fd = socket(origin.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Complete(exchange, ConnectFailed("socket: " + ErrnoText(errno)), false);
  // As libcurl does: no Nagle delay, and TCP keep-alive probes after a minute of silence.
  const int one = 1, sixty = 60;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &sixty, sizeof(sixty));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &sixty, sizeof(sixty));

  auto owned = std::make_unique<Connection>();
  Connection& connection = *owned;
  connection.id = next_connection_id_++;
  connection.fd = fd;
  connection.origin = &origin;
  connections_.emplace(connection.id, std::move(owned));
  ++origin.connections;
  connections_opened_.fetch_add(1);
  Attach(exchange, connection);
  exchange.connect_deadline = DeadlineAfter(absl::Now(), exchange.request.connect_timeout);
  Reschedule(exchange);

  if (connect(fd, reinterpret_cast<const sockaddr*>(&origin.address), origin.address_size) == 0) {
    Connected(connection);
  } else if (errno == EINPROGRESS) {
    Watch(connection, EPOLLOUT);
  } else {
    const int error = errno;
    Close(connection);
    Complete(exchange, ConnectFailed(ErrnoText(error)), false);
  }
}

void Http1Client::Connected(Connection& connection) {
  connection.connected = true;
  Reschedule(*connection.exchange);  // from the connect deadline to the first-byte one
  Send(connection);
}

void Http1Client::Resolve(Origin& origin) {
  origin.resolving = true;
  // The origin outlives the lane's commands: origins_ never lets one go.
  auto resolve = [post = post_, this, target = &origin, name = origin.name,
                  port = std::to_string(origin.port)] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    Resolution result;
    const int rc = getaddrinfo(name.c_str(), port.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
      result.error = rc == EAI_SYSTEM ? ErrnoText(errno) : gai_strerror(rc);
    } else {
      std::memcpy(&result.address, found->ai_addr, found->ai_addrlen);
      result.address_size = found->ai_addrlen;
    }
    if (found != nullptr) freeaddrinfo(found);
    // Dropped when the lane is gone: nobody waits for the answer any more.
    post([this, target, result = std::move(result)]() mutable {
      OnResolved(*target, std::move(result));
    });
  };
  try {
    std::thread(std::move(resolve)).detach();
  } catch (const std::system_error& e) {
    Resolution failed;
    failed.error = std::string("no thread to resolve with: ") + e.what();
    OnResolved(origin, std::move(failed));
  }
}

void Http1Client::OnResolved(Origin& origin, Resolution result) {
  if (stopping_) return;
  origin.resolving = false;
  const absl::Time now = absl::Now();
  if (result.error.empty()) {
    origin.address = result.address;
    origin.address_size = result.address_size;
    origin.resolved_until = now + kResolvedFor;
  } else if (origin.address_size != 0) {
    origin.resolved_until = now + kResolveRetryAfter;  // a failed refresh: keep the old address
  }
  std::vector<uint64_t> unresolved;
  unresolved.swap(origin.unresolved);
  for (uint64_t id : unresolved) {
    auto found = exchanges_.find(id);
    if (found == exchanges_.end()) continue;
    Exchange& exchange = *found->second;
    exchange.unresolved = false;
    if (origin.address_size != 0) {
      Connect(exchange);
    } else {
      Complete(exchange,
               WithRecovery(UpstreamFailed("could not resolve the upstream host \"" + origin.name +
                                           "\": " + result.error),
                            Recovery::kRetry),
               false);
    }
  }
  StartWaiting();
}

void Http1Client::Watch(Connection& connection, uint32_t events) {
  if (connection.watched == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = kHttp1Tag | connection.id;
  epoll_ctl(epoll_fd_, connection.watched == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, connection.fd, &ev);
  connection.watched = events;
}

void Http1Client::Send(Connection& connection) {
  Exchange& exchange = *connection.exchange;
  const std::string& head = exchange.head;
  const std::string_view body = exchange.request.body.view();
  while (exchange.sent < exchange.size()) {
    iovec parts[2];
    int count = 0;
    if (exchange.sent < head.size()) {
      parts[count++] = {const_cast<char*>(head.data()) + exchange.sent,
                        head.size() - exchange.sent};
      if (!body.empty()) parts[count++] = {const_cast<char*>(body.data()), body.size()};
    } else {
      const size_t at = exchange.sent - head.size();
      parts[count++] = {const_cast<char*>(body.data()) + at, body.size() - at};
    }
    msghdr message{};
    message.msg_iov = parts;
    message.msg_iovlen = count;
    const ssize_t n = sendmsg(connection.fd, &message, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        Watch(connection, EPOLLIN | EPOLLOUT);
        return;
      }
      Fail(connection, ConnectionFailed("sending: " + ErrnoText(errno)));
      return;
    }
    exchange.sent += static_cast<size_t>(n);
  }
  Watch(connection, EPOLLIN);
}

void Http1Client::Receive(Connection& connection) {
  for (int reads = 0; reads < kMaxReadsPerEvent; ++reads) {
    const ssize_t n = recv(connection.fd, buffer_.data(), buffer_.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Exchange* exchange = connection.exchange;
    if (exchange == nullptr) {
      Close(connection);  // an idle connection closed by its peer, or bytes nobody asked for
      return;
    }
    if (n < 0) {
      Fail(connection, ConnectionFailed(ErrnoText(errno)));
      return;
    }
    if (n == 0) {
      absl::Status end = exchange->reader.OnEndOfStream();
      if (!end.ok()) {
        Fail(connection, WithRecovery(std::move(end), Recovery::kRetry));
        return;
      }
      Complete(*exchange, absl::OkStatus(), false);
      return;
    }
    const bool had_started = exchange->reader.started();
    const std::string_view bytes(buffer_.data(), static_cast<size_t>(n));
    absl::StatusOr<size_t> used = exchange->reader.Feed(bytes, *exchange->handler);
    if (!used.ok()) {
      Fail(connection, WithRecovery(used.status(), Recovery::kRetry));
      return;
    }
    if (exchange->reader.aborted()) {
      Complete(*exchange, absl::CancelledError("upstream call aborted by its handler"), false);
      return;
    }
    if (exchange->reader.done()) {
      Complete(*exchange, absl::OkStatus(),
               exchange->reader.keep_alive() && *used == bytes.size() &&
                   exchange->sent == exchange->size());
      return;
    }
    if (!had_started) Reschedule(*exchange);  // from the first-byte deadline to the total one
    if (static_cast<size_t>(n) < buffer_.size()) return;  // drained, most likely
  }
  unread_ = true;  // the other connections get their turn first
}

void Http1Client::Fail(Connection& connection, absl::Status status) {
  Exchange& exchange = *connection.exchange;
  // A kept-alive connection the upstream closed while the request was on its way: the request
  // never reached it, so it goes again, once, on a new connection.
  const bool stale =
      connection.exchanges_done > 0 && !exchange.reader.started() && !exchange.resent;
  Close(connection);
  if (stale) {
    exchange.resent = true;
    Connect(exchange);
    return;
  }
  Complete(exchange, std::move(status), false);
}

void Http1Client::Complete(Exchange& exchange, absl::Status status, bool reuse_connection) {
  if (Connection* connection = exchange.connection) {
    connection->exchange = nullptr;
    exchange.connection = nullptr;
    if (reuse_connection && static_cast<int>(connections_.size()) <= limits_.cached) {
      ++connection->exchanges_done;
      connection->idle_since = absl::Now();
      connection->origin->idle.push_back(connection);
      room_freed_ = true;
      if (next_idle_sweep_ == absl::InfiniteFuture()) {
        next_idle_sweep_ = connection->idle_since + kIdleSweepEvery;
      }
      Watch(*connection, EPOLLIN);
    } else {
      Close(*connection);
    }
  }
  deadlines_.erase({exchange.deadline, exchange.id});
  if (exchange.waiting) waiting_.erase(std::find(waiting_.begin(), waiting_.end(), exchange.id));
  if (exchange.unresolved) {
    std::vector<uint64_t>& unresolved = exchange.target->origin->unresolved;
    unresolved.erase(std::find(unresolved.begin(), unresolved.end(), exchange.id));
  }
  auto it = exchanges_.find(exchange.id);
  std::unique_ptr<Exchange> owned = std::move(it->second);
  exchanges_.erase(it);
  active_exchanges_.fetch_sub(1);
  owned->handler->OnComplete(std::move(status));
}

void Http1Client::Close(Connection& connection) {
  if (connection.watched != 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, connection.fd, nullptr);
  close(connection.fd);
  Origin& origin = *connection.origin;
  --origin.connections;
  room_freed_ = true;
  if (connection.exchange == nullptr) {
    auto idle = std::find(origin.idle.begin(), origin.idle.end(), &connection);
    if (idle != origin.idle.end()) origin.idle.erase(idle);
  } else {
    connection.exchange->connection = nullptr;
  }
  connections_.erase(connection.id);
}

void Http1Client::Reschedule(Exchange& exchange) {
  absl::Time next = exchange.total_deadline;
  if (!exchange.reader.started()) next = std::min(next, exchange.first_byte_deadline);
  if (!exchange.connected() && (exchange.connection != nullptr || exchange.unresolved)) {
    next = std::min(next, exchange.connect_deadline);
  }
  if (next == exchange.deadline) return;
  deadlines_.erase({exchange.deadline, exchange.id});
  exchange.deadline = next;
  if (next != absl::InfiniteFuture()) deadlines_.insert({next, exchange.id});
}

void Http1Client::OnEvent(uint64_t data, uint32_t events) {
  const uint64_t id = data & ~kHttp1Tag;
  auto it = connections_.find(id);
  if (it == connections_.end()) return;  // closed by an earlier event of the same batch
  Connection& connection = *it->second;
  if (!connection.connected) {
    Exchange& exchange = *connection.exchange;
    int error = 0;
    socklen_t size = sizeof(error);
    if (getsockopt(connection.fd, SOL_SOCKET, SO_ERROR, &error, &size) != 0) error = errno;
    if (error == 0 && (events & EPOLLERR)) error = ECONNREFUSED;
    if (error != 0) {
      Close(connection);
      Complete(exchange, ConnectFailed(ErrnoText(error)), false);
    } else {
      Connected(connection);
    }
  } else {
    if ((events & EPOLLOUT) && connection.exchange != nullptr &&
        connection.exchange->sent < connection.exchange->size()) {
      Send(connection);
      it = connections_.find(id);
      if (it == connections_.end()) return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) Receive(*it->second);
  }
  StartWaiting();
}

void Http1Client::StartWaiting() {
  // Room appears only where a connection closes or goes idle.
  const bool room_freed = room_freed_;
  room_freed_ = false;
  if (stopping_ || !room_freed) return;
  for (size_t n = waiting_.size(); n > 0 && !waiting_.empty(); --n) {
    const uint64_t id = waiting_.front();
    waiting_.pop_front();
    Exchange& exchange = *exchanges_.find(id)->second;
    const Origin& origin = *exchange.target->origin;
    if (origin.idle.empty() && !HasRoomFor(origin)) {
      waiting_.push_back(id);
      continue;
    }
    exchange.waiting = false;
    Assign(exchange);
  }
}

bool Http1Client::Cancel(uint64_t id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return false;
  Exchange& exchange = *it->second;
  if (exchange.connection != nullptr) Close(*exchange.connection);
  Complete(exchange, absl::CancelledError("upstream call cancelled"), false);
  StartWaiting();
  return true;
}

void Http1Client::FireDeadlines(absl::Time now) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const uint64_t id = deadlines_.begin()->second;
    auto it = exchanges_.find(id);
    if (it == exchanges_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    Exchange& exchange = *it->second;
    const HttpRequest& r = exchange.request;
    absl::Status status;
    if (exchange.unresolved && exchange.connect_deadline <= now) {
      status = WithRecovery(UpstreamTimedOut("resolving the upstream host \"" +
                                             exchange.target->origin->name + "\" timed out"),
                            Recovery::kRetry);
    } else if (!exchange.connected() && exchange.connection != nullptr &&
               exchange.connect_deadline <= now) {
      status = ConnectTimedOut("after " + std::to_string(ToMs(r.connect_timeout)) + " ms");
    } else if (!exchange.reader.started() && exchange.first_byte_deadline <= now) {
      status = FirstByteTimedOut(r.first_byte_timeout);
    } else if (!exchange.connected()) {
      status = ConnectTimedOut("the exchange's " + std::to_string(ToMs(r.total_timeout)) +
                               " ms ran out");
    } else {
      status = ResponseTimedOut("after " + std::to_string(ToMs(r.total_timeout)) + " ms");
    }
    if (exchange.connection != nullptr) Close(*exchange.connection);
    Complete(exchange, std::move(status), false);
  }
  if (now >= next_idle_sweep_) {
    std::vector<Connection*> expired;
    bool idle_left = false;
    for (auto& [key, origin] : origins_) {
      for (Connection* connection : origin->idle) {
        if (connection->idle_since + kMaxIdle <= now) {
          expired.push_back(connection);
        } else {
          idle_left = true;
        }
      }
    }
    for (Connection* connection : expired) Close(*connection);
    next_idle_sweep_ = idle_left ? now + kIdleSweepEvery : absl::InfiniteFuture();
  }
  StartWaiting();
}

absl::Time Http1Client::NextDeadline() const {
  absl::Time next = next_idle_sweep_;
  if (!deadlines_.empty()) next = std::min(next, deadlines_.begin()->first);
  return next;
}

void Http1Client::Shutdown() {
  stopping_ = true;
  while (!exchanges_.empty()) {
    Exchange& exchange = *exchanges_.begin()->second;
    if (exchange.connection != nullptr) Close(*exchange.connection);
    Complete(exchange, absl::CancelledError("HTTP client shut down"), false);
  }
  while (!connections_.empty()) Close(*connections_.begin()->second);
}

}  // namespace terse::providers::internal
