// An open-loop HTTP/1.1 load generator: POSTs one body at a fixed mean rate, each request sent at
// a time drawn in advance from a Poisson process (exponential gaps), on a pool of keep-alive
// connections, and prints the latency percentiles of the requests sent in the measured window.
//
//   paced_load --port N --rate R [--host 127.0.0.1] [--path /v1/chat/completions]
//              [--body-file F] [--duration 5] [--warmup 0.5] [--connections 256] [--seed 1]
//              [--header "name: value"]... [--timeline FILE]
//
// Why not wrk with pauses (bench/gateway/post.lua): wrk's timers have a resolution of 1 ms, so a
// paced wrk sends each millisecond's requests together, and the last request of each burst waits
// for the burst's others: its added latency then grows with the rate's share of a millisecond
// whatever the proxy's speed. And wrk is a closed loop: while a target stalls, wrk sends it
// nothing, so the stall delays only the requests already sent. Here each send is due at its own
// microsecond (a timerfd armed for it, the timer slack set to 1 ns), so requests meet in the
// proxy only as often as independent clients' do, and a stall delays every request due during
// it, as it would delay real clients'.
//
// A request's latency runs from the time it was due, not from when it was written: when every
// connection is busy a due request waits for one, and that wait counts (no coordinated omission).
// Responses may have a Content-Length or the chunked coding.
//
// Output, one "name value" per line: requests, seconds, rate, errors, late (requests written
// over 1 ms after they were due: this process was kept from running, or every connection was
// busy), starved (requests that found every connection busy), p50_ms, p90_ms, p99_ms, p999_ms,
// max_ms. --timeline FILE writes each measured request's due time (CLOCK_MONOTONIC seconds) and
// latency, to find when the slow ones came. Exit code 1 when the target cannot be reached.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "paced_load: %s\n", what.c_str());
  std::exit(1);
}

struct Args {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/v1/chat/completions";
  std::string body;
  std::vector<std::string> headers;
  double rate = 0;        // requests per second
  double duration = 5;    // seconds measured
  double warmup = 0.5;    // seconds sent before the measured ones, not counted
  int connections = 256;  // the pool's size
  uint64_t seed = 1;
  std::string timeline;  // a file for each measured request's due time and latency, when given
};

Args ParseArgs(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) Fail("flag " + std::string(flag) + " needs a value");
    const char* value = argv[++i];
    if (flag == "--host") {
      args.host = value;
    } else if (flag == "--port") {
      args.port = std::atoi(value);
    } else if (flag == "--path") {
      args.path = value;
    } else if (flag == "--body-file") {
      std::ifstream in(value, std::ios::binary);
      if (!in) Fail(std::string("cannot read ") + value);
      args.body.assign(std::istreambuf_iterator<char>(in), {});
    } else if (flag == "--header") {
      args.headers.emplace_back(value);
    } else if (flag == "--rate") {
      args.rate = std::atof(value);
    } else if (flag == "--duration") {
      args.duration = std::atof(value);
    } else if (flag == "--warmup") {
      args.warmup = std::atof(value);
    } else if (flag == "--connections") {
      args.connections = std::atoi(value);
    } else if (flag == "--timeline") {
      args.timeline = value;
    } else if (flag == "--seed") {
      args.seed = std::strtoull(value, nullptr, 10);
    } else {
      Fail("unknown flag " + std::string(flag));
    }
  }
  if (args.port <= 0 || args.port > 65535) Fail("--port N is required");
  if (!(args.rate > 0)) Fail("--rate R (requests per second, > 0) is required");
  if (!(args.duration > 0) || args.warmup < 0) Fail("--duration must be > 0, --warmup >= 0");
  if (args.connections < 1) Fail("--connections must be >= 1");
  return args;
}

// Where a connection's current response stands. Only what finding its end needs is parsed.
class ResponseParser {
 public:
  enum class State { kIncomplete, kComplete, kMalformed };

  // Consumes `in` from the front as far as it can; kComplete leaves what follows in `in`.
  State Feed(std::string& in) {
    for (;;) {
      switch (phase_) {
        case Phase::kHead: {
          const size_t end = in.find("\r\n\r\n");
          if (end == std::string::npos)
            return in.size() > 65536 ? State::kMalformed : State::kIncomplete;
          if (!ParseHead(std::string_view(in).substr(0, end + 2))) return State::kMalformed;
          in.erase(0, end + 4);
          phase_ = chunked_ ? Phase::kChunkSize : Phase::kBody;
          break;
        }
        case Phase::kBody: {
          const size_t take = std::min<size_t>(remaining_, in.size());
          in.erase(0, take);
          remaining_ -= take;
          if (remaining_ > 0) return State::kIncomplete;
          Reset();
          return State::kComplete;
        }
        case Phase::kChunkSize: {
          const size_t eol = in.find("\r\n");
          if (eol == std::string::npos)
            return in.size() > 1024 ? State::kMalformed : State::kIncomplete;
          char* end = nullptr;
          const std::string line = in.substr(0, eol);
          remaining_ = std::strtoull(line.c_str(), &end, 16);
          if (end == line.c_str()) return State::kMalformed;
          in.erase(0, eol + 2);
          phase_ = remaining_ == 0 ? Phase::kTrailer : Phase::kChunkData;
          break;
        }
        case Phase::kChunkData: {
          // The chunk's bytes and the line break after them.
          const size_t take = std::min<size_t>(remaining_ + 2, in.size());
          in.erase(0, take);
          remaining_ = remaining_ + 2 - take;
          if (remaining_ > 0) return State::kIncomplete;
          phase_ = Phase::kChunkSize;
          break;
        }
        case Phase::kTrailer: {
          const size_t eol = in.find("\r\n");
          if (eol == std::string::npos) return State::kIncomplete;
          in.erase(0, eol + 2);
          if (eol > 0) break;  // a trailer field; the empty line ends the message
          Reset();
          return State::kComplete;
        }
      }
    }
  }

  int status() const { return status_; }

 private:
  enum class Phase { kHead, kBody, kChunkSize, kChunkData, kTrailer };

  static bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    }
    return true;
  }

  bool ParseHead(std::string_view head) {
    if (head.size() < 12 || head.substr(0, 5) != "HTTP/") return false;
    status_ = std::atoi(std::string(head.substr(9, 3)).c_str());
    chunked_ = false;
    remaining_ = 0;
    size_t at = head.find("\r\n") + 2;
    while (at < head.size()) {
      const size_t eol = head.find("\r\n", at);
      const std::string_view line = head.substr(at, eol - at);
      at = eol + 2;
      if (StartsWithNoCase(line, "content-length:")) {
        remaining_ = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
      } else if (StartsWithNoCase(line, "transfer-encoding:") &&
                 line.find("chunked") != std::string_view::npos) {
        chunked_ = true;
      }
    }
    return status_ > 0;
  }

  void Reset() {
    phase_ = Phase::kHead;
    remaining_ = 0;
  }

  Phase phase_ = Phase::kHead;
  bool chunked_ = false;
  uint64_t remaining_ = 0;
  int status_ = 0;
};

struct Connection {
  int fd = -1;
  bool busy = false;
  int64_t due_ns = 0;    // the due time of the request in flight
  size_t written = 0;    // of the request text, for a write the socket took in parts
  bool counted = false;  // the request in flight is in the measured window
  std::string in;
  ResponseParser parser;
};

class PacedLoad {
 public:
  explicit PacedLoad(Args args) : args_(std::move(args)) {
    std::ostringstream request;
    request << "POST " << args_.path << " HTTP/1.1\r\nHost: " << args_.host << ":" << args_.port
            << "\r\nContent-Type: application/json\r\nContent-Length: " << args_.body.size()
            << "\r\n";
    for (const std::string& h : args_.headers) request << h << "\r\n";
    request << "\r\n" << args_.body;
    request_ = request.str();
  }

  int Run() {
    prctl(PR_SET_TIMERSLACK, 1UL);  // the due times are microseconds apart
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epoll_fd_ < 0 || timer_fd_ < 0) Fail(std::string("epoll/timerfd: ") + std::strerror(errno));
    Watch(timer_fd_, kTimerTag, EPOLLIN, EPOLL_CTL_ADD);
    connections_.resize(args_.connections);
    for (size_t i = 0; i < connections_.size(); ++i) {
      Open(i);
      idle_.push_back(i);
    }

    std::mt19937_64 random(args_.seed);
    std::exponential_distribution<double> gap_s(args_.rate);
    const int64_t start = NowNs() + 1'000'000;  // the first send 1 ms from now
    const int64_t measured_from = start + static_cast<int64_t>(args_.warmup * 1e9);
    const int64_t stop = measured_from + static_cast<int64_t>(args_.duration * 1e9);
    int64_t next_due = start;
    // After the last send, answers are waited for this long at most.
    const int64_t drain_deadline = stop + 5'000'000'000;

    epoll_event events[256];
    while (true) {
      const int64_t now = NowNs();
      // Every due request goes out now, on an idle connection, or waits for one.
      while (next_due <= now && next_due < stop) {
        waiting_.push_back({next_due, next_due >= measured_from});
        next_due += static_cast<int64_t>(gap_s(random) * 1e9);
      }
      SendWaiting();
      const bool sending = next_due < stop;
      if (!sending && (in_flight_ == 0 || now > drain_deadline)) break;
      ArmTimer(sending ? next_due : drain_deadline);
      const int n = epoll_wait(epoll_fd_, events, std::size(events), -1);
      if (n < 0 && errno != EINTR) Fail(std::string("epoll_wait: ") + std::strerror(errno));
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kTimerTag) {
          uint64_t expirations;
          (void)!read(timer_fd_, &expirations, sizeof expirations);
        } else {
          OnReady(events[i].data.u64, events[i].events);
        }
      }
    }
    errors_ += unanswered_counted();
    Report();
    return 0;
  }

 private:
  static constexpr uint64_t kTimerTag = ~uint64_t{0};

  struct Waiting {
    int64_t due_ns;
    bool counted;
    bool starved = false;  // it found every connection busy
  };

  void Watch(int fd, uint64_t tag, uint32_t events, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_fd_, op, fd, &ev) != 0)
      Fail(std::string("epoll_ctl: ") + std::strerror(errno));
  }

  void ArmTimer(int64_t at_ns) {
    itimerspec spec{};
    spec.it_value.tv_sec = at_ns / 1'000'000'000;
    spec.it_value.tv_nsec = at_ns % 1'000'000'000;
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void Open(size_t index) {
    Connection& c = connections_[index];
    c = Connection{};
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(args_.port));
    if (inet_pton(AF_INET, args_.host.c_str(), &addr.sin_addr) != 1)
      Fail("--host must be an IPv4 address");
    if (c.fd < 0 || connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      Fail("cannot connect to " + args_.host + ":" + std::to_string(args_.port) + ": " +
           std::strerror(errno));
    }
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    Watch(c.fd, index, EPOLLIN, EPOLL_CTL_ADD);
  }

  void SendWaiting() {
    while (!waiting_.empty() && !idle_.empty()) {
      const Waiting w = waiting_.front();
      waiting_.pop_front();
      const size_t index = idle_.front();
      idle_.pop_front();
      Connection& c = connections_[index];
      c.busy = true;
      c.due_ns = w.due_ns;
      c.counted = w.counted;
      c.written = 0;
      ++in_flight_;
      if (w.counted && NowNs() - w.due_ns > 1'000'000) ++late_;
      if (w.counted && w.starved) ++starved_;
      Write(index);
    }
    for (Waiting& w : waiting_) w.starved = true;
  }

  void Write(size_t index) {
    Connection& c = connections_[index];
    while (c.written < request_.size()) {
      const ssize_t n =
          send(c.fd, request_.data() + c.written, request_.size() - c.written, MSG_NOSIGNAL);
      if (n > 0) {
        c.written += static_cast<size_t>(n);
      } else if (n < 0 && errno == EAGAIN) {
        Watch(c.fd, index, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);  // the rest when there is room
        return;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        Broken(index);
        return;
      }
    }
  }

  void OnReady(uint64_t index, uint32_t events) {
    Connection& c = connections_[index];
    if (events & EPOLLOUT) {
      Write(index);
      if (c.written == request_.size()) Watch(c.fd, index, EPOLLIN, EPOLL_CTL_MOD);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    char buffer[65536];
    const ssize_t n = recv(c.fd, buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0 || !c.busy) {  // closed, failed, or bytes nobody asked for
      Broken(index);
      return;
    }
    c.in.append(buffer, static_cast<size_t>(n));
    switch (c.parser.Feed(c.in)) {
      case ResponseParser::State::kIncomplete:
        return;
      case ResponseParser::State::kMalformed:
        Broken(index);
        return;
      case ResponseParser::State::kComplete:
        break;
    }
    if (c.counted) {
      latencies_ns_.push_back(NowNs() - c.due_ns);
      if (!args_.timeline.empty()) timeline_.push_back({c.due_ns, latencies_ns_.back()});
      if (c.parser.status() < 200 || c.parser.status() > 299) ++errors_;
    }
    if (!c.in.empty()) {  // more than one answer to one request
      Broken(index);
      return;
    }
    c.busy = false;
    --in_flight_;
    idle_.push_back(index);
    SendWaiting();
  }

  // A connection that failed or that the target closed: its request, if one was in flight,
  // counts as an error, and a new connection takes its place in the pool.
  void Broken(size_t index) {
    Connection& c = connections_[index];
    const bool was_busy = c.busy;  // an idle one is in idle_ already
    if (was_busy) {
      --in_flight_;
      if (c.counted) ++errors_;
    }
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    Open(index);
    if (was_busy) idle_.push_back(index);
  }

  size_t unanswered_counted() const {
    size_t n = 0;
    for (const Connection& c : connections_) n += c.busy && c.counted;
    for (const Waiting& w : waiting_) n += w.counted;
    return n;
  }

  void Report() {
    if (!args_.timeline.empty()) {
      std::sort(timeline_.begin(), timeline_.end());
      FILE* out = std::fopen(args_.timeline.c_str(), "w");
      if (out == nullptr) Fail("cannot write " + args_.timeline);
      std::fprintf(out, "# due (CLOCK_MONOTONIC, s) latency_ms\n");
      for (const auto& [due, latency] : timeline_) {
        std::fprintf(out, "%.6f %.3f\n", static_cast<double>(due) / 1e9,
                     static_cast<double>(latency) / 1e6);
      }
      std::fclose(out);
    }
    std::sort(latencies_ns_.begin(), latencies_ns_.end());
    auto ms = [&](double q) {
      if (latencies_ns_.empty()) return 0.0;
      const size_t at =
          std::min(latencies_ns_.size() - 1,
                   static_cast<size_t>(q * static_cast<double>(latencies_ns_.size())));
      return static_cast<double>(latencies_ns_[at]) / 1e6;
    };
    std::printf("requests %zu\nseconds %.3f\nrate %.1f\nerrors %zu\nlate %zu\nstarved %zu\n",
                latencies_ns_.size(), args_.duration,
                static_cast<double>(latencies_ns_.size()) / args_.duration, errors_, late_,
                starved_);
    std::printf("p50_ms %.3f\np90_ms %.3f\np99_ms %.3f\np999_ms %.3f\nmax_ms %.3f\n", ms(0.5),
                ms(0.9), ms(0.99), ms(0.999), ms(1.0));
  }

  const Args args_;
  std::string request_;
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  std::vector<Connection> connections_;
  std::deque<size_t> idle_;      // connections with no request in flight, longest idle first
  std::deque<Waiting> waiting_;  // due requests that found no idle connection yet
  size_t in_flight_ = 0;
  size_t errors_ = 0;
  size_t late_ = 0;     // measured requests written over 1 ms after they were due
  size_t starved_ = 0;  // measured requests that waited for a connection
  std::vector<int64_t> latencies_ns_;
  std::vector<std::pair<int64_t, int64_t>> timeline_;  // due time, latency: of measured requests
};

}  // namespace

int main(int argc, char** argv) { return PacedLoad(ParseArgs(argc, argv)).Run(); }
