// The HTTP face on Boost.Beast's parser, over an event loop of terse's own (event_loop.h). Each
// I/O thread runs one loop and hosts one lane of the upstream HTTP engine in the same epoll set,
// so a pass-through request is read, forwarded, answered and written on one thread, with one
// wait for all of it. Connections are dealt to the I/O threads in turn. One Session per
// connection, every event of a connection on its I/O thread, which only that thread runs: the
// handlers of a connection never run concurrently. Each socket is registered once, edge-triggered
// for reading, writing and the peer's close, so the loop always hears of a client that leaves,
// and a read or write is tried only when the socket has said it may succeed. The pipeline
// reports (from the lane's work, or a compression worker's thread) through HttpResponder, which
// hands the events to the session on its thread; the session sends the bytes at once and keeps
// what the socket does not take for its next writable event.
#include "proxy/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "json/scan.h"
#include "json/codec.h"
#include "proxy/event_loop.h"
#include "proxy/log.h"

namespace terse::proxy {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

// A keep-alive connection with no request for this long is closed.
constexpr absl::Duration kIdleTimeout = absl::Seconds(75);
// A request whose header and body take longer than this to arrive is dropped.
constexpr absl::Duration kReadTimeout = absl::Seconds(60);
// After an error response that ends the connection, unread request bytes are drained this long
// so the client sees the response instead of a reset.
constexpr absl::Duration kLingerTimeout = absl::Seconds(2);
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr uint64_t kDefaultBodyLimit = 8 * 1024 * 1024;
// Bytes a slow reader may leave unsent before its connection is dropped: the pipeline never
// waits for a client, so the queue is the only thing that grows.
constexpr size_t kMaxQueuedBytes = 32 * 1024 * 1024;
// A read of a request's header takes up to kHeaderReadRoom bytes into the connection's buffer; a
// body of announced length is read into its string directly (ReadBodyOfLength); before a chunked
// one is read the buffer gets kChunkedBodyRoom. A buffer grown beyond kKeptBufferRoom is given
// back once it is empty, as is an output string grown beyond it once it is sent.
constexpr size_t kHeaderReadRoom = 8 * 1024;
// The room a body's last read has past its end (ContinueBodyOfLength).
constexpr size_t kReadPastBody = 8 * 1024;
constexpr size_t kChunkedBodyRoom = 64 * 1024;
constexpr size_t kKeptBufferRoom = 64 * 1024;
// The reads (or accepts) one event gets before the other sockets' events get a turn.
constexpr int kReadsPerTurn = 16;
// A body of announced length gets room for this much of it before it is read; room for more
// grows as it arrives (ReadMoreBody).
constexpr size_t kBodyRoomAhead = 1024 * 1024;
// The most of such a body one read takes into its string.
constexpr size_t kBodyPartBytes = 256 * 1024;

// A request body as one string. A body of announced length is read into it by the session
// (ReadBodyOfLength), with kEditRoom to spare for the members terse adds (`stream_options`), so
// that adding them moves no long prompt; Beast fills it only with a chunked body, appending
// each decoded piece.
struct RequestBody {
  using value_type = std::string;
  static constexpr size_t kEditRoom = 128;

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    // Only chunked bodies, of no announced length, are read through Beast; the body limit
    // bounds them.
    void init(const boost::optional<uint64_t>&, beast::error_code& ec) { ec = {}; }

    template <class ConstBufferSequence>
    size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      size_t added = 0;
      for (const auto buffer : beast::buffers_range_ref(buffers)) {
        body_.append(static_cast<const char*>(buffer.data()), buffer.size());
        added += buffer.size();
      }
      ec = {};
      return added;
    }

    void finish(beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};
using ClientRequest = http::request<RequestBody>;  // a request as a client sent it

std::string_view ToStd(beast::string_view s) { return std::string_view(s.data(), s.size()); }
// Debian's abseil has its own string_view; StrCat takes only that one.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
absl::string_view Av(beast::string_view s) { return absl::string_view(s.data(), s.size()); }

// Header values that came from elsewhere must not be able to split the response.
std::string CleanHeaderValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c != '\r' && c != '\n') out += c;
  }
  return out;
}

std::string FormatNumber(double v, const char* format) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

// x-terse-* headers of a compression that was applied.
void AppendCompressionHeaders(std::string& out, const v1::CompressionReport& report) {
  if (!report.applied()) return;
  absl::StrAppend(&out, "x-terse-original-tokens: ", report.original_tokens(), "\r\n",
                  "x-terse-compressed-tokens: ", report.compressed_tokens(), "\r\n",
                  "x-terse-rate: ", FormatNumber(report.rate(), "%.4g"), "\r\n",
                  "x-terse-compress-ms: ", FormatNumber(report.compress_ms(), "%.2f"), "\r\n",
                  "x-terse-cache: ", report.cache_hit() ? "hit" : "miss", "\r\n");
}

// Appends one chunk of the chunked transfer coding.
void AppendChunk(std::string& out, std::string_view data) {
  char size[20];
  char* end = std::to_chars(size, size + 16, data.size(), 16).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(size, static_cast<size_t>(end - size));
  out.append(data);
  out += "\r\n";
}

enum class Route {
  kChatCompletions,
  kCompletions,
  kEmbeddings,
  kModels,
  kHealth,
  kReady,
  kMetrics,
  kCompress,
};

struct RouteEntry {
  std::string_view path;  // without the optional /v1 prefix
  http::verb method;
  Route route;
};

constexpr RouteEntry kRoutes[] = {
    {"/chat/completions", http::verb::post, Route::kChatCompletions},
    {"/completions", http::verb::post, Route::kCompletions},
    {"/embeddings", http::verb::post, Route::kEmbeddings},
    {"/models", http::verb::get, Route::kModels},
    {"/healthz", http::verb::get, Route::kHealth},
    {"/readyz", http::verb::get, Route::kReady},
    {"/metrics", http::verb::get, Route::kMetrics},
    {"/terse/compress", http::verb::post, Route::kCompress},
};

std::string_view OperationLabel(Route route) {
  switch (route) {
    case Route::kChatCompletions:
      return "chat_completions";
    case Route::kCompletions:
      return "completions";
    case Route::kEmbeddings:
      return "embeddings";
    case Route::kCompress:
      return "compress";
    default:
      return "other";
  }
}

class Session;
class HttpResponder;

}  // namespace

// One I/O thread: its event loop, the upstream engine's lane it hosts (none when the server has no
// engine or the engine has fewer lanes than I/O threads), and the connections it serves.
struct IoThread {
  // Starts the thread, which hosts the lane and attaches the loop to its epoll set (with the
  // listening socket, for the thread that accepts), and returns once that is done.
  absl::Status Start(providers::HttpClient* engine, int lane_index, EventLoop::Watcher* listener,
                     int listen_fd);
  // Ends the loop and joins the thread; then closes the connections left and hands the lane back.
  void Stop();
  // A responder that heard from the pipeline on this thread: delivered after the work of the
  // socket its event came from, or at the latest before the loop waits again.
  void Ready(std::shared_ptr<HttpResponder> responder);
  void DeliverReady();
  // The I/O thread the caller runs on, or null.
  static IoThread* Current();

  // Made before the thread starts, so that other threads may post to it from the first moment.
  const std::unique_ptr<EventLoop> loop = std::make_unique<EventLoop>();
  std::thread thread;
  std::unique_ptr<providers::HostedLane> lane;  // on the thread only, after Start set it up

  // The thread's only, while it runs.
  std::vector<std::shared_ptr<HttpResponder>> ready;
  std::vector<std::shared_ptr<HttpResponder>> delivering;  // DeliverReady's, kept for its capacity
  // The connections this thread serves, open or closed in the turn in progress.
  absl::flat_hash_map<Session*, std::shared_ptr<Session>> open;
};

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl>, EventLoop::Watcher {
  Impl(Pipeline& pipeline, Metrics& metrics, uint64_t max_body_bytes, unsigned io_threads)
      : pipeline(pipeline),
        metrics(metrics),
        max_body_bytes(max_body_bytes),
        io(MakeIoThreads(io_threads)) {}
  ~Impl() {
    if (listen_fd >= 0) close(listen_fd);
  }

  static std::vector<std::unique_ptr<IoThread>> MakeIoThreads(unsigned n) {
    std::vector<std::unique_ptr<IoThread>> out;
    for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<IoThread>());
    return out;
  }

  // The listening socket's events, on io[0].
  void OnEvents(uint32_t) override { Accept(); }
  // Takes the connections waiting to be accepted and deals them to the I/O threads.
  void Accept();
  void Shutdown(absl::Duration grace);
  template <typename Fn>
  void ForEachSession(Fn fn);

  // Constant after Start.
  Pipeline& pipeline;
  Metrics& metrics;
  const uint64_t max_body_bytes;
  const std::vector<std::unique_ptr<IoThread>> io;
  int port = 0;

  int listen_fd = -1;          // io[0]'s once Start is done; -1 once closed
  bool accept_paused = false;  // io[0]'s: after an error such as EMFILE, until a timer resumes
  size_t next_io = 0;          // io[0]'s: the I/O thread of the next connection

  std::atomic<bool> stopping{false};

  absl::Mutex mu;
  // Live sessions, so that Shutdown can reach them.
  absl::flat_hash_map<Session*, std::weak_ptr<Session>> sessions ABSL_GUARDED_BY(mu);
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

namespace {

class Session : public std::enable_shared_from_this<Session>, public EventLoop::Watcher {
 public:
  // `fd`: the accepted socket, non-blocking, which the session owns from here on.
  Session(std::shared_ptr<HttpServer::Impl> server, IoThread& io, int fd)
      : server_(std::move(server)), io_(io), fd_(fd) {}

  ~Session() {
    if (fd_ >= 0) close(fd_);
    absl::MutexLock lock(&server_->mu);
    server_->sessions.erase(this);
  }

  // On the session's I/O thread.
  void Start() {
    {
      absl::MutexLock lock(&server_->mu);
      server_->sessions[this] = weak_from_this();
    }
    io_.open[this] = shared_from_this();
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (absl::Status watched = io_.loop->Watch(fd_, this); !watched.ok()) {
      LogJson(LogLevel::kWarn, Json{{"msg", "cannot watch a connection"},
                                    {"error", std::string(watched.message())}});
      return Close();
    }
    ReadHeader();
  }

  template <typename Fn>
  void Post(Fn fn) {
    io_.loop->Post(std::move(fn));
  }

  IoThread& io() const { return io_; }

  // The socket's events: what it may do now is tried.
  void OnEvents(uint32_t events) override {
    if (closed_) return;                    // closed earlier in this turn
    if (events & EPOLLERR) return Close();  // reset: the client is gone
    if (events & (EPOLLRDHUP | EPOLLHUP)) peer_closed_ = true;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) readable_ = true;
    if (events & EPOLLOUT) writable_ = true;
    if (writable_ && sent_ < out_.size()) Flush();
    if (readable_) ContinueReading();
  }

  // ---- Responder events, on the connection's thread. `seq` names the exchange they belong to.
  void OnReply(uint64_t seq, const ResponseHead& head, const json::WireJson& body) {
    if (!Current(seq)) return;
    const std::string& payload = body.text();
    std::string out = ResponseStart(200);
    absl::StrAppend(&out, "content-type: application/json\r\ncontent-length: ", payload.size(),
                    "\r\n");
    AppendCompressionHeaders(out, head.compression);
    AppendExtraHeaders(out, head);
    out += "\r\n";
    out += payload;
    MarkDone();
    Queue(std::move(out));
  }

  void OnStartStream(uint64_t seq, const ResponseHead& head) {
    if (!Current(seq) || exchange_->streaming) return;
    exchange_->streaming = true;
    if (!exchange_->http11) exchange_->keep_alive = false;  // no chunked coding: the close ends it
    std::string out = ResponseStart(200);
    out +=
        "content-type: text/event-stream\r\ncache-control: no-cache\r\nx-accel-buffering: no\r\n";
    if (exchange_->http11) out += "transfer-encoding: chunked\r\n";
    AppendCompressionHeaders(out, head.compression);
    AppendExtraHeaders(out, head);
    out += "\r\n";
    Queue(std::move(out));
  }

  // `events`: one or more whole SSE events.
  void OnStreamEvents(uint64_t seq, std::string events) {
    if (!Current(seq) || !exchange_->streaming) return;
    QueueEvent(std::move(events));
  }

  void OnEndStream(uint64_t seq, const absl::Status& status) {
    if (!Current(seq)) return;
    if (!exchange_->streaming) return OnFail(seq, status);
    if (status.code() == absl::StatusCode::kCancelled) return Close();  // the client is gone
    if (status.ok()) {
      QueueEvent("data: [DONE]\n\n");
    } else {
      // After the 200 the only way to report a failure is in band; clients raise it as an error.
      QueueEvent(absl::StrCat("data: ", json::DumpJson(OpenAiErrorBody(status)), "\n\n"));
    }
    MarkDone();
    Queue(exchange_->http11 ? std::string("0\r\n\r\n") : std::string());
  }

  void OnFail(uint64_t seq, const absl::Status& status) {
    if (!Current(seq)) return;
    if (status.code() == absl::StatusCode::kCancelled) return Close();
    SendError(status);
  }

  // Bytes queued between these two calls go out in one write (a stream's head, events and end
  // in one segment instead of one each). On the connection's thread.
  void HoldWrites() { ++writes_held_; }
  void ReleaseWrites() {
    if (--writes_held_ == 0) Flush();
  }

  // ---- Server events, on the connection's thread (or on the shutting-down thread once the I/O
  // threads are joined).
  // Graceful shutdown: an idle connection closes now, a busy one after its response.
  void CloseWhenIdle() {
    if (closed_) return;
    if (!exchange_) return Close();
    exchange_->keep_alive = false;
  }

  // Ends the connection now; a call in progress is cancelled. The session is released at the end
  // of the turn, as the turn's other events may still name it.
  void Close() {
    if (closed_) return;
    closed_ = true;
    reading_ = Reading::kNothing;
    DisarmTimer();
    if (exchange_ && exchange_->call) {
      exchange_->call->Cancel();
      exchange_->call.reset();
    }
    close(fd_);  // which takes it out of the epoll set
    fd_ = -1;
    out_.clear();
    sent_ = 0;
    io_.loop->Defer([self = shared_from_this()] { self->io_.open.erase(self.get()); });
  }

 private:
  // The request/response in progress.
  struct Exchange {
    uint64_t seq = 0;
    std::string request_id;
    bool keep_alive = true;
    bool http11 = true;
    bool streaming = false;  // the stream's head went out
    bool done = false;       // the response's last bytes are queued
    absl::Time start;
    std::unique_ptr<PipelineCall> call;
  };

  // What the connection's incoming bytes are for.
  enum class Reading {
    kNothing,       // none are wanted now (a pipelined request waits, or the socket is closed)
    kHeader,        // a request's header (during a response: the next, pipelined one)
    kBodyOfLength,  // the body of announced length, into its string
    kChunkedBody,   // a chunked body, through Beast
    kDrain,         // discarded until the client closes, after a response that ends the connection
  };

  // What one read from the socket gave.
  enum class Got { kBytes, kNothingNow, kEnd, kError };

  bool Current(uint64_t seq) const {
    return !closed_ && exchange_ && exchange_->seq == seq && !exchange_->done;
  }

  // Reads up to `room` bytes into `into`, setting `n`. A read that fills less than its room has
  // taken all the socket had (an edge-triggered socket reports what comes later as a new event),
  // unless the peer has closed: then the next read finds the end, which no event will report.
  Got Receive(char* into, size_t room, size_t& n) {
    while (true) {
      const ssize_t got = recv(fd_, into, room, 0);
      if (got > 0) {
        n = static_cast<size_t>(got);
        if (n < room && !peer_closed_) readable_ = false;
        return Got::kBytes;
      }
      n = 0;
      if (got == 0) return Got::kEnd;
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        readable_ = false;
        return Got::kNothingNow;
      }
      return Got::kError;
    }
  }

  void ContinueReading() {
    switch (reading_) {
      case Reading::kNothing:
        return;
      case Reading::kHeader:
        return ContinueHeader();
      case Reading::kBodyOfLength:
        return ContinueBodyOfLength();
      case Reading::kChunkedBody:
        return ContinueChunkedBody();
      case Reading::kDrain:
        return ContinueDrain();
    }
  }

  // The reads of one event ran out with the socket still readable: the rest after the other
  // sockets' events of this turn.
  void ReadLater() {
    io_.loop->Defer([self = shared_from_this()] {
      if (!self->closed_ && self->readable_) self->ContinueReading();
    });
  }

  // ---- Reading requests.
  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    // No limit while the header is read: an announced oversized body is answered with 413 in
    // ProcessHeader, which needs the parsed header; the limit is set before the body is read.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    reading_ = Reading::kHeader;
    if (!exchange_) ArmTimer(kIdleTimeout);
    ContinueHeader();
  }

  // Parses what the buffer holds, and reads more while the header is incomplete and the socket
  // has bytes.
  void ContinueHeader() {
    for (int reads = 0;;) {
      if (buffer_.size() != 0) {
        beast::error_code ec;
        buffer_.consume(parser_->put(buffer_.data(), ec));
        if (ec != http::error::need_more && (ec || parser_->is_header_done())) {
          reading_ = Reading::kNothing;
          return OnHeader(ec);
        }
      }
      if (!readable_) return;  // the next event brings more
      if (reads++ == kReadsPerTurn) return ReadLater();
      size_t n = 0;
      auto room = buffer_.prepare(kHeaderReadRoom);
      const Got got = Receive(static_cast<char*>(room.data()), room.size(), n);
      buffer_.commit(n);
      if (got == Got::kNothingNow) return;
      if (got == Got::kBytes) continue;
      reading_ = Reading::kNothing;
      if (got == Got::kError) return OnHeader(http::error::end_of_stream);
      // The end of the connection: between requests it is how a client leaves; inside one, the
      // request is cut short.
      const bool started = buffer_.size() != 0 || parser_->got_some();
      return OnHeader(started ? http::error::partial_message : http::error::end_of_stream);
    }
  }

  void OnHeader(beast::error_code ec) {
    if (closed_) return;
    if (ec) {
      // During a response any read failure means the client went away: cancel the call.
      if (exchange_) return Close();
      if (ec == http::error::header_limit) return SendBareError(431, "Request header too large.");
      if (ec == http::error::end_of_stream) return Close();
      return SendBareError(400, "Malformed HTTP request.");
    }
    // A pipelined request: it waits until the response in progress is written.
    if (exchange_) {
      header_waiting_ = true;
      return;
    }
    ProcessHeader();
  }

  void ProcessHeader() {
    auto& req = parser_->get();
    exchange_.emplace();
    exchange_->seq = ++seq_;
    exchange_->start = absl::Now();
    exchange_->http11 = req.version() >= 11;
    exchange_->keep_alive = req.keep_alive() && !server_->stopping.load();
    auto id = req.find("x-request-id");
    exchange_->request_id = id != req.end() && AcceptableRequestId(ToStd(id->value()))
                                ? std::string(ToStd(id->value()))
                                : NewRequestId();
    ArmTimer(kReadTimeout);

    if (auto length = parser_->content_length(); length && *length > server_->max_body_bytes) {
      exchange_->keep_alive = false;  // the body stays unread
      return SendError(TooLarge(), OperationOf(req));
    }
    if (AsciiEqualsIgnoreCase(ToStd(req[http::field::expect]), "100-continue") &&
        !parser_->is_done()) {
      Queue("HTTP/1.1 100 Continue\r\n\r\n");
    }
    if (parser_->is_done()) return Dispatch();
    parser_->body_limit(server_->max_body_bytes);
    const boost::optional<uint64_t> length = parser_->content_length();
    if (length.has_value()) return ReadBodyOfLength(static_cast<size_t>(*length));
    // Chunked: Beast decodes it, through the connection's buffer.
    buffer_.reserve(buffer_.size() + kChunkedBodyRoom);
    parser_->eager(true);
    reading_ = Reading::kChunkedBody;
    ContinueChunkedBody();
  }

  // A body of announced length (at most the limit, which ProcessHeader checked) goes straight
  // into the request's string: what the header's read brought along is taken from the buffer,
  // and the rest is read from the socket into its place. Through Beast, each byte would be read
  // into the buffer, moved to its front as the buffer made room, and copied into the string.
  void ReadBodyOfLength(size_t length) {
    std::string& body = parser_->get().body();
    body.reserve(std::min(length, kBodyRoomAhead) + kReadPastBody + RequestBody::kEditRoom);
    const size_t buffered = std::min(buffer_.size(), length);
    body.append(static_cast<const char*>(buffer_.data().data()), buffered);
    buffer_.consume(buffered);
    body_length_ = length;
    body_have_ = body.size();
    reading_ = Reading::kBodyOfLength;
    ContinueBodyOfLength();
  }

  // Reads the rest of the body, a part at a time. The string is sized, which zero-fills it, just
  // before a read fills it, and the room grows by doubling: a client that announces a large body
  // and sends little of it holds about what it sent, not the announced length. A short read
  // leaves the string's size where it was, so that each byte is zero-filled once however many
  // reads it fills (`body_have_` says how much is real); a body that ends short is cut to what
  // arrived.
  void ContinueBodyOfLength() {
    std::string& body = parser_->get().body();
    for (int reads = 0;;) {
      if (body_have_ == body_length_) {
        body.resize(body_length_);
        reading_ = Reading::kNothing;
        return Dispatch();
      }
      if (!readable_) return;
      if (reads++ == kReadsPerTurn) return ReadLater();
      const size_t left = body_length_ - body_have_;
      const size_t part = std::min(left, kBodyPartBytes);
      // A read that fills its room cannot tell whether it drained the socket, so the body's last
      // read has room for the start of a next request too: it comes up short, and the socket's
      // next event is awaited instead of a read that finds nothing. What of a next request it
      // took goes to the buffer.
      const size_t room = part == left ? part + kReadPastBody : part;
      const size_t end = body_have_ + room;
      if (body.size() < end) {
        if (body.capacity() < end + RequestBody::kEditRoom) {  // grown reaches past `end`
          const size_t grown =
              std::min(body_length_, std::max(2 * body.capacity(), body_have_ + part));
          body.reserve(grown + kReadPastBody + RequestBody::kEditRoom);
        }
        body.resize(end);
      }
      size_t n = 0;
      const Got got = Receive(body.data() + body_have_, room, n);
      body_have_ += n;
      if (body_have_ > body_length_) {  // the start of a pipelined request
        const size_t next = body_have_ - body_length_;
        auto into = buffer_.prepare(next);
        std::memcpy(into.data(), body.data() + body_length_, next);
        buffer_.commit(next);
        body_have_ = body_length_;
      }
      if (got == Got::kNothingNow) return;
      if (got == Got::kBytes) continue;
      // A truncated request: the client left before sending it all; there is no one to answer.
      reading_ = Reading::kNothing;
      return Close();
    }
  }

  void ContinueChunkedBody() {
    for (int reads = 0;;) {
      if (buffer_.size() != 0) {
        beast::error_code ec;
        buffer_.consume(parser_->put(buffer_.data(), ec));
        if (ec == http::error::body_limit) {
          reading_ = Reading::kNothing;
          exchange_->keep_alive = false;
          return SendError(TooLarge(), OperationOf(parser_->get()));
        }
        if (ec && ec != http::error::need_more) {
          reading_ = Reading::kNothing;
          exchange_->keep_alive = false;
          return SendError(InvalidRequest("The request's chunked body is malformed."),
                           OperationOf(parser_->get()));
        }
        if (parser_->is_done()) {
          reading_ = Reading::kNothing;
          return Dispatch();
        }
      }
      if (!readable_) return;
      if (reads++ == kReadsPerTurn) return ReadLater();
      size_t n = 0;
      auto room =
          buffer_.prepare(std::max<size_t>(kHeaderReadRoom, buffer_.capacity() - buffer_.size()));
      const Got got = Receive(static_cast<char*>(room.data()), room.size(), n);
      buffer_.commit(n);
      if (got == Got::kNothingNow) return;
      if (got == Got::kBytes) continue;
      reading_ = Reading::kNothing;  // truncated: no one to answer
      return Close();
    }
  }

  absl::Status TooLarge() const {
    return PayloadTooLarge(absl::StrCat("The request body is larger than the limit of ",
                                        server_->max_body_bytes, " bytes."));
  }

  std::string_view OperationOf(const ClientRequest& req) const {
    const RouteEntry* entry = FindRoute(Path(req));
    return entry != nullptr ? OperationLabel(entry->route) : "other";
  }
  // The path terse routes on: the target without its query and the optional /v1 prefix. Azure
  // OpenAI's form, `[/openai]/deployments/{deployment}/chat/completions?api-version=...` (what the
  // AzureOpenAI SDK clients send), maps to the same routes; `deployment` then receives the
  // deployment name, which names the model as it does on Azure.
  static std::string_view Path(const ClientRequest& req, std::string_view* deployment = nullptr) {
    std::string_view target = ToStd(req.target());
    target = target.substr(0, target.find('?'));
    auto strip = [&target](std::string_view prefix) {
      if (target.size() > prefix.size() && target.substr(0, prefix.size()) == prefix &&
          target[prefix.size()] == '/') {
        target.remove_prefix(prefix.size());
      }
    };
    strip("/v1");
    strip("/openai");
    constexpr std::string_view kDeployments = "/deployments/";
    if (target.substr(0, kDeployments.size()) == kDeployments) {
      const size_t end = target.find('/', kDeployments.size());
      if (end != std::string_view::npos && end > kDeployments.size()) {
        if (deployment != nullptr) {
          *deployment = target.substr(kDeployments.size(), end - kDeployments.size());
        }
        target.remove_prefix(end);
      }
    }
    return target;
  }

  static const RouteEntry* FindRoute(std::string_view path) {
    for (const RouteEntry& entry : kRoutes) {
      if (entry.path == path) return &entry;
    }
    return nullptr;
  }

  void Dispatch() {
    DisarmTimer();
    ClientRequest req = parser_->release();
    parser_.reset();
    if (buffer_.size() == 0 && buffer_.capacity() > kKeptBufferRoom) buffer_.shrink_to_fit();
    const RouteEntry* entry = FindRoute(Path(req));
    if (entry == nullptr) {
      return SendError(
          MakeError(absl::StatusCode::kNotFound,
                    absl::StrCat("Unknown request URL: ", Av(req.method_string()), " ",
                                 Av(req.target()), ". Please check the URL for typos."),
                    {.http_status = 404, .code = "unknown_url"}),
          "other");
    }
    if (req.method() != entry->method) {
      extra_allow_ = entry->method == http::verb::post ? "POST" : "GET";
      return SendError(
          MakeError(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("Method ", Av(req.method_string()), " is not allowed on ",
                                 Av(entry->path), "; use ", extra_allow_, "."),
                    {.http_status = 405, .code = "method_not_allowed"}),
          OperationLabel(entry->route));
    }
    switch (entry->route) {
      case Route::kHealth:
        return SendJson(200, Json{{"status", "ok"}});
      case Route::kReady:
        if (server_->stopping.load()) return SendJson(503, Json{{"status", "shutting down"}});
        return SendJson(200, Json{{"status", "ready"}});
      case Route::kModels:
        return SendJson(200, server_->pipeline.ListModels());
      case Route::kMetrics:
        return SendText(200, "text/plain; version=0.0.4; charset=utf-8",
                        server_->metrics.RenderPrometheus());
      case Route::kChatCompletions:
        return StartCall(std::move(req), Operation::kChatCompletions, entry->route);
      case Route::kCompletions:
        return StartCall(std::move(req), Operation::kCompletions, entry->route);
      case Route::kEmbeddings:
        return StartCall(std::move(req), Operation::kEmbeddings, entry->route);
      case Route::kCompress:
        return StartCall(std::move(req), Operation::kCompress, entry->route);
    }
  }

  void StartCall(ClientRequest req, Operation operation, Route route);

  // ---- Writing responses.
  std::string ResponseStart(int status) const {
    std::string out;
    out.reserve(512);
    absl::StrAppend(&out, exchange_->http11 ? "HTTP/1.1 " : "HTTP/1.0 ", status, " ",
                    Av(http::obsolete_reason(static_cast<http::status>(status))), "\r\n",
                    "x-request-id: ", exchange_->request_id, "\r\n");
    if (!exchange_->keep_alive || server_->stopping.load()) {
      out += "connection: close\r\n";
    } else if (!exchange_->http11) {
      out += "connection: keep-alive\r\n";
    }
    return out;
  }

  void AppendExtraHeaders(std::string& out, const ResponseHead& head) const {
    for (const auto& [name, value] : head.headers) {
      absl::StrAppend(&out, CleanHeaderValue(name), ": ", CleanHeaderValue(value), "\r\n");
    }
  }

  void SendText(int status, std::string_view content_type, std::string body) {
    std::string out = ResponseStart(status);
    absl::StrAppend(&out, "content-type: ", Av(content_type), "\r\ncontent-length: ", body.size(),
                    "\r\n");
    if (!extra_allow_.empty()) {
      absl::StrAppend(&out, "allow: ", extra_allow_, "\r\n");
      extra_allow_.clear();
    }
    out += "\r\n";
    out += body;
    MarkDone();
    Queue(std::move(out));
  }

  void SendJson(int status, const Json& body) {
    SendText(status, "application/json", json::DumpJson(body));
  }

  // An error response for a failure of the pipeline (already counted there).
  void SendError(const absl::Status& status) {
    ErrorDetail detail = DetailOf(status);
    std::string body = json::DumpJson(OpenAiErrorBody(status));
    std::string out = ResponseStart(detail.http_status);
    absl::StrAppend(&out, "content-type: application/json\r\ncontent-length: ", body.size(),
                    "\r\n");
    if (!detail.retryable) out += "x-should-retry: false\r\n";
    // The upstream's own word on when to try again, for the client's SDK to honour.
    if (const std::optional<int64_t> ms = detail.retry_after_ms) {
      absl::StrAppend(&out, "retry-after-ms: ", *ms, "\r\nretry-after: ", (*ms + 999) / 1000,
                      "\r\n");
    }
    if (!extra_allow_.empty()) {
      absl::StrAppend(&out, "allow: ", extra_allow_, "\r\n");
      extra_allow_.clear();
    }
    out += "\r\n";
    out += body;
    MarkDone();
    Queue(std::move(out));
  }

  // An error the face itself answers (never reached the pipeline): counted here.
  void SendError(const absl::Status& status, std::string_view operation) {
    ErrorDetail detail = DetailOf(status);
    server_->metrics.RecordRequest("", operation, detail.http_status,
                                   absl::Now() - exchange_->start);
    server_->metrics.RecordError("", operation, detail.type);
    if (LogEnabled(LogLevel::kInfo)) {
      LogJson(LogLevel::kInfo,
              Json{{"msg", "request"},
                   {"request_id", exchange_->request_id},
                   {"face", "http"},
                   {"operation", operation},
                   {"status", detail.http_status},
                   {"latency_ms", absl::ToDoubleMilliseconds(absl::Now() - exchange_->start)},
                   {"error_type", detail.type},
                   {"error", std::string(status.message())}});
    }
    SendError(status);
  }

  // For a request that could not even be parsed: answer and close.
  void SendBareError(int http_status, std::string_view message) {
    exchange_.emplace();
    exchange_->seq = ++seq_;
    exchange_->start = absl::Now();
    exchange_->request_id = NewRequestId();
    exchange_->keep_alive = false;
    SendError(MakeError(absl::StatusCode::kInvalidArgument, message, {.http_status = http_status}),
              "other");
  }

  void MarkDone() {
    exchange_->done = true;
    exchange_->call.reset();
  }

  // One or more whole SSE events, framed as a chunk on HTTP/1.1 (appended where they go).
  void QueueEvent(std::string events) {
    if (!exchange_->http11) return Queue(std::move(events));
    if (closed_) return;
    AppendChunk(out_, events);
    Queued();
  }

  void Queue(std::string bytes) {
    if (closed_) return;
    if (out_.empty()) {
      out_ = std::move(bytes);
    } else {
      if (sent_ > out_.size() / 2) {  // what a slow client took is dropped once it is most
        out_.erase(0, sent_);
        sent_ = 0;
      }
      out_ += bytes;
    }
    Queued();
  }

  // After bytes joined `out_`: sent now, unless held or the client is too slow.
  void Queued() {
    if (out_.size() - sent_ > kMaxQueuedBytes) {
      LogJson(LogLevel::kWarn, Json{{"msg", "client reads too slowly; dropping the connection"},
                                    {"request_id", exchange_ ? exchange_->request_id : ""}});
      return Close();
    }
    Flush();  // which waits while writes are held
  }

  // Sends what is queued, as far as the socket takes it; the rest goes at its next writable
  // event. A response whose last bytes are sent ends its exchange.
  void Flush() {
    if (closed_ || writes_held_ != 0) return;
    while (sent_ < out_.size()) {
      if (!writable_) return;
      const ssize_t n = send(fd_, out_.data() + sent_, out_.size() - sent_, MSG_NOSIGNAL);
      if (n > 0) {
        sent_ += static_cast<size_t>(n);
        if (sent_ < out_.size()) writable_ = false;  // full: an event tells when it has room
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        writable_ = false;
        return;
      }
      return Close();  // the client is gone
    }
    if (out_.capacity() > kKeptBufferRoom) {
      std::string().swap(out_);
    } else {
      out_.clear();
    }
    sent_ = 0;
    if (exchange_ && exchange_->done) AfterResponse();
  }

  // The response is fully sent: next request, or the end of the connection. The next request is
  // taken up after the current handler, so that pipelined requests answered at once do not nest.
  void AfterResponse() {
    const bool keep = exchange_->keep_alive && !server_->stopping.load();
    exchange_.reset();
    if (!keep) return LingeringClose();
    io_.loop->Defer([self = shared_from_this()] { self->NextRequest(); });
  }

  void NextRequest() {
    if (closed_ || exchange_) return;
    if (header_waiting_) {
      header_waiting_ = false;
      return ProcessHeader();
    }
    if (reading_ == Reading::kHeader) return ArmTimer(kIdleTimeout);  // read on since the request
    ReadHeader();
  }

  // Half-closes and discards what the client still sends, so it reads the response, not a reset.
  void LingeringClose() {
    shutdown(fd_, SHUT_WR);
    header_waiting_ = false;
    parser_.reset();
    buffer_.clear();
    reading_ = Reading::kDrain;
    ArmTimer(kLingerTimeout);
    ContinueDrain();
  }

  void ContinueDrain() {
    for (int reads = 0; readable_;) {
      if (reads++ == kReadsPerTurn) return ReadLater();
      size_t n = 0;
      const Got got = Receive(drain_.data(), drain_.size(), n);
      if (got == Got::kEnd || got == Got::kError) return Close();
    }
  }

  // ---- The one timer: idle, request read and lingering timeouts. Arming and disarming only move
  // `deadline_`; the one timer set never lasts longer than kReadTimeout and, when it fires before
  // the deadline, is set again for the rest. So the requests of a keep-alive connection set no
  // timer of their own.
  void ArmTimer(absl::Duration d) {
    deadline_ = absl::Now() + d;
    if (timer_at_ <= deadline_) return;  // the timer set fires first, and sets itself again
    SetTimer();
  }

  void DisarmTimer() { deadline_ = absl::InfiniteFuture(); }

  void SetTimer() {
    timer_at_ = std::min(deadline_, absl::Now() + kReadTimeout);
    io_.loop->RunAt(timer_at_, [weak = weak_from_this(), at = timer_at_] {
      std::shared_ptr<Session> self = weak.lock();
      if (!self || at != self->timer_at_) return;  // gone, or superseded by an earlier one
      self->timer_at_ = absl::InfiniteFuture();
      if (self->closed_ || self->deadline_ == absl::InfiniteFuture()) return;
      if (absl::Now() < self->deadline_) return self->SetTimer();
      self->Close();
    });
  }

  // Constant after construction.
  const std::shared_ptr<HttpServer::Impl> server_;
  IoThread& io_;
  int fd_;  // -1 once closed

  // State of the connection's thread only.
  bool readable_ = false;     // the socket may have bytes: its last event said so, no read since
                              // found it empty
  bool writable_ = true;      // the socket may take bytes: no send since found it full
  bool peer_closed_ = false;  // the client has closed its side (its last bytes may be unread)
  Reading reading_ = Reading::kNothing;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<RequestBody>> parser_;
  size_t body_length_ = 0;  // kBodyOfLength: the announced length, and what has arrived
  size_t body_have_ = 0;
  std::optional<Exchange> exchange_;
  uint64_t seq_ = 0;
  absl::Time deadline_ = absl::InfiniteFuture();  // when the connection times out
  absl::Time timer_at_ = absl::InfiniteFuture();  // when the timer set fires; never: none is set
  bool header_waiting_ = false;
  bool closed_ = false;
  int writes_held_ = 0;  // HoldWrites without ReleaseWrites yet: Queue does not send
  std::string out_;      // queued for the client; the first sent_ bytes are sent
  size_t sent_ = 0;
  std::string extra_allow_;  // the Allow header of a 405
  std::array<char, 4096> drain_;
};

// The pipeline's view of one exchange. Its events reach the session on the session's thread:
// heard while that thread runs its upstream lane (the usual case, as a request's upstream exchange
// runs on the lane of its own I/O thread), they are delivered as soon as the lane has done the
// work of the socket they came from; heard anywhere else, they are posted. Events gather until they
// are delivered, so the chunks of one upstream read (often the whole answer) reach the client in
// one write.
class HttpResponder : public Responder, public std::enable_shared_from_this<HttpResponder> {
 public:
  HttpResponder(std::shared_ptr<Session> session, uint64_t seq)
      : session_(std::move(session)), seq_(seq) {}

  void Reply(const ResponseHead& head, json::WireJson body) override {
    Gather([&](Batch& b) { b.reply.emplace(head, std::move(body)); });
  }
  void StartStream(const ResponseHead& head) override {
    Gather([&](Batch& b) { b.head = head; });
  }
  void Chunks(std::span<json::WireJson> chunks) override {
    constexpr std::string_view kData = "data: ", kEnd = "\n\n";
    size_t size = 0;
    for (const json::WireJson& chunk : chunks) {
      size += kData.size() + chunk.text().size() + kEnd.size();
    }
    Gather([&](Batch& b) {
      // Exactly once per batch: reserving at each later call would copy it each time.
      if (b.events.empty()) b.events.reserve(size);
      for (const json::WireJson& chunk : chunks) {
        b.events.append(kData).append(chunk.text()).append(kEnd);
      }
    });
  }
  void EndStream(absl::Status status) override {
    Gather([&](Batch& b) { b.end = std::move(status); });
  }
  void Fail(absl::Status status) override {
    Gather([&](Batch& b) { b.fail = std::move(status); });
  }

  // On the session's thread: hands what gathered to the session.
  void Deliver() {
    Batch batch;
    {
      absl::MutexLock lock(&mu_);
      batch = std::move(batch_);
      batch_ = Batch();
      pending_ = false;
    }
    if (batch.reply.has_value()) {
      return session_->OnReply(seq_, batch.reply->first, batch.reply->second);
    }
    if (batch.fail.has_value()) return session_->OnFail(seq_, *batch.fail);
    session_->HoldWrites();
    if (batch.head.has_value()) session_->OnStartStream(seq_, *batch.head);
    if (!batch.events.empty()) session_->OnStreamEvents(seq_, std::move(batch.events));
    if (batch.end.has_value()) session_->OnEndStream(seq_, *batch.end);
    session_->ReleaseWrites();
  }

 private:
  // What the pipeline said since the last delivery: a reply or a failure alone, or a stream's
  // events in this order.
  struct Batch {
    std::optional<std::pair<ResponseHead, json::WireJson>> reply;  // Reply
    std::optional<absl::Status> fail;                                   // Fail
    std::optional<ResponseHead> head;                                   // StartStream
    std::string events;                                                 // Chunk: SSE events
    std::optional<absl::Status> end;                                    // EndStream
  };

  template <typename Fn>
  void Gather(Fn add) {
    {
      absl::MutexLock lock(&mu_);
      add(batch_);
      if (pending_) return;  // a delivery is on its way and takes this too
      pending_ = true;
    }
    IoThread* io = IoThread::Current();
    if (io == &session_->io()) {
      io->Ready(shared_from_this());
    } else {
      session_->Post([self = shared_from_this()] { self->Deliver(); });
    }
  }

  // Constant after construction.
  const std::shared_ptr<Session> session_;
  const uint64_t seq_;

  absl::Mutex mu_;
  Batch batch_ ABSL_GUARDED_BY(mu_);
  bool pending_ ABSL_GUARDED_BY(mu_) = false;  // a Deliver is due: queued or posted
};

void Session::StartCall(ClientRequest req, Operation operation, Route route) {
  std::optional<Json> parsed = json::ParseJson(req.body());
  if (!parsed.has_value()) {
    if (json::NestsTooDeep(req.body())) {
      return SendError(
          InvalidRequest(absl::StrCat("The JSON body of your request nests arrays and objects more "
                                      "than ",
                                      json::kMaxJsonDepth, " levels deep.")),
          OperationLabel(route));
    }
    return SendError(InvalidRequest("We could not parse the JSON body of your request. The "
                                    "OpenAI API expects a JSON payload."),
                     OperationLabel(route));
  }
  // The text goes along with its value: relayed as the client wrote it, but for terse's edits.
  auto body = json::WireJson::FromParsedText(std::move(req.body()), *std::move(parsed));
  std::string_view deployment;
  Path(req, &deployment);
  if (!deployment.empty() && body.json().is_object()) {
    body.SetMember("model", std::string(deployment));
  }

  CallInfo info;
  info.face = Face::kHttp;
  info.operation = operation;
  info.request_id = exchange_->request_id;
  info.headers.reserve(16);  // a usual request's, at once rather than by doubling
  for (const auto& field : req) {
    std::string name = AsciiLower(ToStd(field.name_string()));
    std::string_view value = ToStd(field.value());
    if (name == "authorization") {
      std::string_view v = AsciiTrim(value);
      if (v.size() > 7 && AsciiEqualsIgnoreCase(v.substr(0, 7), "bearer ")) {
        info.api_key = std::string(AsciiTrim(v.substr(7)));
      }
    } else if (name == "api-key" && info.api_key.empty()) {
      info.api_key = std::string(AsciiTrim(value));
    }
    info.headers.emplace_back(std::move(name), std::string(value));
  }

  auto responder = std::make_shared<HttpResponder>(shared_from_this(), exchange_->seq);
  exchange_->call = server_->pipeline.Handle(std::move(info), std::move(body), responder);
  // Reading on during the answer takes a pipelined request's header, and hears of a client that
  // leaves (the call is then cancelled); an event brings either.
  if (!closed_ && exchange_ && !exchange_->done && reading_ == Reading::kNothing) ReadHeader();
}

}  // namespace

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
}  // namespace

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
  // What is still open is closed from here, the thread being gone: each call in progress is
  // cancelled, and the sockets leave the lane's epoll set before the lane goes back.
  for (auto& [raw, session] : open) session->Close();
  open.clear();
  ready.clear();
  loop->Close();
  lane.reset();  // back to a thread of its own, with whatever is still in flight
}

void IoThread::Ready(std::shared_ptr<HttpResponder> responder) {
  if (ready.empty()) loop->Defer([this] { DeliverReady(); });
  ready.push_back(std::move(responder));
}

void IoThread::DeliverReady() {
  if (ready.empty()) return;
  // A delivery may start the connection's next call, whose responder may join `ready`: it is
  // delivered on the next turn.
  delivering.swap(ready);
  for (const std::shared_ptr<HttpResponder>& responder : delivering) responder->Deliver();
  delivering.clear();
}

void HttpServer::Impl::Accept() {
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
    auto session = std::make_shared<Session>(shared_from_this(), target, fd);
    target.loop->Post([session] { session->Start(); });  // on its own I/O thread
  }
}

template <typename Fn>
void HttpServer::Impl::ForEachSession(Fn fn) {
  std::vector<std::shared_ptr<Session>> live;
  {
    absl::MutexLock lock(&mu);
    for (auto& [raw, weak] : sessions) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) fn(s);
}

void HttpServer::Impl::Shutdown(absl::Duration grace) {
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
  ForEachSession([](const std::shared_ptr<Session>& s) { s->Post([s] { s->CloseWhenIdle(); }); });
  auto none_left = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return sessions.empty(); };
  bool drained;
  {
    absl::MutexLock lock(&mu);
    drained = mu.AwaitWithTimeout(absl::Condition(&none_left), grace);
  }
  if (!drained) {
    ForEachSession([](const std::shared_ptr<Session>& s) { s->Post([s] { s->Close(); }); });
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(&none_left), absl::Seconds(2));
  }
  for (const auto& t : io) t->Stop();
  if (listen_fd >= 0) close(listen_fd);  // when io[0] stopped before its turn came
  listen_fd = -1;
}

HttpServer::HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(); }

int HttpServer::port() const { return impl_->port; }

void HttpServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

unsigned HttpServer::IoThreads(const v1::Config& config) {
  if (config.listeners().io_threads() > 0) return config.listeners().io_threads();
  return std::max(1u, std::thread::hardware_concurrency());
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const v1::Config& config,
                                                              Pipeline& pipeline, Metrics& metrics,
                                                              providers::HttpClient* engine) {
  const uint64_t body_limit =
      config.limits().max_body_bytes() > 0 ? config.limits().max_body_bytes() : kDefaultBodyLimit;
  auto impl = std::make_shared<Impl>(pipeline, metrics, body_limit, IoThreads(config));
  const std::string host =
      config.listeners().http().host().empty() ? "127.0.0.1" : config.listeners().http().host();
  const uint16_t port = static_cast<uint16_t>(config.listeners().http().port());

  absl::StatusOr<int> listening = Listen(host, port);
  if (!listening.ok()) return listening.status();
  impl->listen_fd = *listening;
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof(bound);
  if (getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&bound), &bound_size) == 0) {
    impl->port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  }

  auto server = std::unique_ptr<HttpServer>(new HttpServer(impl));
  for (size_t i = 0; i < impl->io.size(); ++i) {
    absl::Status started = impl->io[i]->Start(engine, static_cast<int>(i),
                                              i == 0 ? impl.get() : nullptr, impl->listen_fd);
    if (!started.ok()) {
      return absl::UnavailableError(
          absl::StrCat("cannot start the HTTP I/O threads: ", started.message()));
    }  // `server` shuts down the threads started so far
  }
  return server;
}

}  // namespace terse::proxy
