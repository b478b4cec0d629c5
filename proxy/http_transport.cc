// The transport's listener, I/O threads and shutdown (http_connection.h has the design); the
// connections themselves are in http_connection.cc.
#include "proxy/http_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/json.h"
#include "proxy/http_connection.h"
#include "proxy/log.h"

namespace terse::proxy {
namespace {

thread_local IoThread* current_io_thread = nullptr;

// A listening socket for `host`:`port`, non-blocking.
absl::StatusOr<int> Listen(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      rc != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve HTTP listener host \"", host,
                                               "\": ", rc != 0 ? gai_strerror(rc) : "no address"));
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  const bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
                  bind(fd, found->ai_addr, found->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0;
  const int error = errno;
  freeaddrinfo(found);
  if (!ok) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", host, ":", port, ": ", std::strerror(error)));
  }
  return fd;
}

std::vector<std::unique_ptr<IoThread>> MakeIoThreads(unsigned n) {
  std::vector<std::unique_ptr<IoThread>> out;
  for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<IoThread>());
  return out;
}

}  // namespace

// ---- The I/O threads.

IoThread* IoThread::Current() { return current_io_thread; }

absl::Status IoThread::Start(providers::HttpClient* engine, int lane_index,
                             EventLoop::Watcher* listener, int listen_fd) {
  std::promise<absl::Status> started;
  thread = std::thread([&, engine, lane_index, listener, listen_fd] {
    pthread_setname_np(pthread_self(), "terse-io");  // for top -H and profiles
    current_io_thread = this;
    if (engine != nullptr && lane_index < engine->lanes()) {
      absl::StatusOr<std::unique_ptr<providers::HostedLane>> hosted =
          engine->Host(lane_index, [this] { loop->RunLaneSoon(); });
      if (hosted.ok()) {
        lane = *std::move(hosted);
      } else {
        LogJson(LogLevel::kWarn, Json{{"msg", "cannot host the upstream engine's lane"},
                                      {"error", std::string(hosted.status().message())}});
      }
    }
    absl::Status status = loop->Attach(lane.get(), [this] { DeliverReady(); });
    if (status.ok() && listener != nullptr) status = loop->Watch(listen_fd, listener);
    const bool run = status.ok();
    started.set_value(std::move(status));  // `started` is gone from here on
    if (run) loop->Run();
  });
  return started.get_future().get();
}

void IoThread::Stop() {
  loop->Stop();
  if (thread.joinable()) thread.join();
  // What is still open is closed from here, the thread being gone: each exchange in progress is
  // abandoned, and the sockets leave the lane's epoll set before the lane goes back.
  for (auto& [raw, connection] : open) connection->Close();
  open.clear();
  ready.clear();
  loop->Close();
  lane.reset();  // back to a thread of its own, with whatever is still in flight
}

void IoThread::Ready(std::shared_ptr<HttpDelivery> delivery) {
  if (ready.empty()) loop->Defer([this] { DeliverReady(); });
  ready.push_back(std::move(delivery));
}

void IoThread::DeliverReady() {
  if (ready.empty()) return;
  // A delivery may start the connection's next request, whose delivery may join `ready`: it is
  // delivered on the next turn.
  delivering.swap(ready);
  for (const std::shared_ptr<HttpDelivery>& delivery : delivering) delivery->Deliver();
  delivering.clear();
}

// ---- The transport's shared state: accepting and shutting down.

HttpTransport::Impl::Impl(HttpHandler& handler, uint64_t max_body_bytes, unsigned io_threads)
    : handler(handler), max_body_bytes(max_body_bytes), io(MakeIoThreads(io_threads)) {}

HttpTransport::Impl::~Impl() {
  if (listen_fd >= 0) close(listen_fd);
}

void HttpTransport::Impl::Accept() {
  for (int accepts = 0; listen_fd >= 0 && !accept_paused; ++accepts) {
    if (accepts == kReadsPerTurn) {  // more may wait: after the other sockets' events
      return io[0]->loop->Defer([self = shared_from_this()] { self->Accept(); });
    }
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      // Out of descriptors or similar: pause instead of spinning, then try again. The socket
      // reports no new event for the connections still waiting, so the timer resumes.
      LogJson(LogLevel::kWarn, Json{{"msg", "accept failed"}, {"error", std::strerror(errno)}});
      accept_paused = true;
      io[0]->loop->RunAt(absl::Now() + absl::Milliseconds(50), [self = shared_from_this()] {
        self->accept_paused = false;
        if (!self->stopping.load()) self->Accept();
      });
      return;
    }
    if (stopping.load()) {
      close(fd);
      continue;
    }
    IoThread& target = *io[next_io++ % io.size()];
    auto connection = std::make_shared<HttpConnection>(shared_from_this(), target, fd);
    target.loop->Post([connection] { connection->Start(); });  // on its own I/O thread
  }
}

template <typename Fn>
void HttpTransport::Impl::ForEachConnection(Fn fn) {
  std::vector<std::shared_ptr<HttpConnection>> live;
  {
    absl::MutexLock lock(&mu);
    for (auto& [raw, weak] : connections) {
      if (auto c = weak.lock()) live.push_back(std::move(c));
    }
  }
  for (auto& c : live) fn(c);
}

void HttpTransport::Impl::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu);
    if (shut_down) return;
    shut_down = true;
  }
  stopping.store(true);
  io[0]->loop->Post([self = shared_from_this()] {
    if (self->listen_fd >= 0) close(self->listen_fd);  // which takes it out of the epoll set
    self->listen_fd = -1;
  });
  ForEachConnection([](const std::shared_ptr<HttpConnection>& c) {
    c->io().loop->Post([c] { c->CloseWhenIdle(); });
  });
  auto none_left = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return connections.empty(); };
  bool drained;
  {
    absl::MutexLock lock(&mu);
    drained = mu.AwaitWithTimeout(absl::Condition(&none_left), grace);
  }
  if (!drained) {
    ForEachConnection(
        [](const std::shared_ptr<HttpConnection>& c) { c->io().loop->Post([c] { c->Close(); }); });
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(&none_left), absl::Seconds(2));
  }
  for (const auto& t : io) t->Stop();
  if (listen_fd >= 0) close(listen_fd);  // when io[0] stopped before its turn came
  listen_fd = -1;
}

// ---- HttpTransport.

HttpTransport::HttpTransport(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpTransport::~HttpTransport() { Shutdown(absl::Seconds(10)); }

int HttpTransport::port() const { return impl_->port; }

void HttpTransport::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

absl::StatusOr<std::unique_ptr<HttpTransport>> HttpTransport::Start(
    const HttpTransportOptions& options, HttpHandler& handler, providers::HttpClient* engine) {
  auto impl =
      std::make_shared<Impl>(handler, options.max_body_bytes, std::max(1u, options.io_threads));
  absl::StatusOr<int> listening = Listen(options.host, options.port);
  if (!listening.ok()) return listening.status();
  impl->listen_fd = *listening;
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof(bound);
  if (getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&bound), &bound_size) == 0) {
    impl->port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  }

  auto transport = std::unique_ptr<HttpTransport>(new HttpTransport(impl));
  for (size_t i = 0; i < impl->io.size(); ++i) {
    absl::Status started = impl->io[i]->Start(engine, static_cast<int>(i),
                                              i == 0 ? impl.get() : nullptr, impl->listen_fd);
    if (!started.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot start the HTTP I/O threads: ", started.message()));
    }  // `transport` shuts down the threads started so far
  }
  return transport;
}

}  // namespace terse::proxy
