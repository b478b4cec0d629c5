// The HTTP face on Boost.Beast. Each I/O thread runs an io_context of its own and hosts one lane
// of the upstream HTTP engine, so a pass-through request is read, forwarded, answered and written
// on one thread with no hand-off. Connections are dealt to the I/O threads in turn. One Session
// per connection, every handler of a connection on its I/O thread's io_context, which only that
// thread runs: the handlers of a connection never run concurrently, with no strand to pay for.
// The pipeline reports (from the lane's thread, or a compression worker's) through HttpResponder,
// which only posts to the connection's executor; the session queues the bytes and writes them as
// the socket accepts them.
#include "proxy/http_server.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
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
#include "providers/json_scan.h"
#include "providers/json_text.h"
#include "providers/upstream_errors.h"
#include "proxy/log.h"

namespace terse::proxy {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// A keep-alive connection with no request for this long is closed.
constexpr auto kIdleTimeout = std::chrono::seconds(75);
// A request whose header and body take longer than this to arrive is dropped.
constexpr auto kReadTimeout = std::chrono::seconds(60);
// After an error response that ends the connection, unread request bytes are drained this long
// so the client sees the response instead of a reset.
constexpr auto kLingerTimeout = std::chrono::seconds(2);
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr uint64_t kDefaultBodyLimit = 8 * 1024 * 1024;
// Bytes a slow reader may leave unsent before its connection is dropped: the pipeline never
// waits for a client, so the queue is the only thing that grows.
constexpr size_t kMaxQueuedBytes = 32 * 1024 * 1024;
// A read takes at most the free room of the connection's buffer, which an empty buffer has 512
// bytes of: a 32 KiB prompt came in 66 reads. A body of announced length is read into its string
// directly (ReadBodyOfLength); before a chunked one is read the buffer gets kChunkedBodyRoom. A
// buffer grown beyond kKeptBufferRoom is given back once it is empty.
constexpr size_t kChunkedBodyRoom = 64 * 1024;
constexpr size_t kKeptBufferRoom = 64 * 1024;
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

// One I/O thread: an io_context that only this thread runs, and the upstream engine's lane it
// hosts (none when the server has no engine or the engine has fewer lanes than I/O threads).
struct IoThread {
  // Runs on the thread: hosts the lane, then runs the io_context until it is stopped.
  void Run(providers::HttpClient* engine, int lane_index);
  // Runs the lane's ready work, then watches its descriptor and its next deadline again. Only
  // when the descriptor's event brought the thread here (`readable`), or no watch is armed, does
  // the lane look at its sockets: otherwise whatever they have comes as that event.
  void RunLane(bool readable);
  // Hands the responders in `ready` what they gathered.
  void DeliverReady();
  // Has `session`'s client watched (Session::WatchClient) if its answer is still in progress
  // 20-40 ms from now. Most answers through a nearby upstream are done by then, and a watch costs
  // a system call per request (Asio re-arms the socket for it); a slow answer's watch comes soon
  // enough to cancel the upstream call of a client that left.
  void WatchClientLater(std::weak_ptr<Session> session);
  void ArmWatchTick();
  // The I/O thread the caller runs on, or null.
  static IoThread* Current();

  // While the lane runs, the responders of this thread's connections that heard from the
  // pipeline. Each delivers its events as soon as the lane has done the work of the socket they
  // came from, so an answer neither waits for the rest of the run nor goes through the
  // io_context's queue.
  bool running_lane = false;
  std::vector<std::shared_ptr<HttpResponder>> ready;
  std::vector<std::shared_ptr<HttpResponder>> delivering;  // DeliverReady's, kept for its capacity

  // Run by this thread alone (the hint lets asio queue what this thread posts to itself without
  // waking anyone); other threads may still post to it.
  net::io_context ioc{1};
  net::executor_work_guard<net::io_context::executor_type> work{net::make_work_guard(ioc)};
  std::thread thread;

  // The hosted lane; on the thread only, after Run set it up.
  std::unique_ptr<providers::HostedLane> lane;
  std::optional<net::posix::stream_descriptor> lane_watch;  // a copy of the lane's descriptor
  bool watching = false;
  std::optional<net::steady_timer> lane_timer;
  absl::Time lane_timer_at = absl::InfiniteFuture();  // when lane_timer fires; never: idle

  // WatchClientLater's: the connections since the last tick, those of the tick before (watched
  // at the next), and the tick, armed while either has any.
  std::vector<std::weak_ptr<Session>> watch_soon;
  std::vector<std::weak_ptr<Session>> watch_next;
  net::steady_timer watch_tick{ioc};
  bool watch_tick_armed = false;
};

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(Pipeline& pipeline, Metrics& metrics, uint64_t max_body_bytes, unsigned io_threads)
      : pipeline(pipeline),
        metrics(metrics),
        max_body_bytes(max_body_bytes),
        io(MakeIoThreads(io_threads)),
        acceptor(io[0]->ioc),
        accept_backoff(acceptor.get_executor()) {}

  static std::vector<std::unique_ptr<IoThread>> MakeIoThreads(unsigned n) {
    std::vector<std::unique_ptr<IoThread>> out;
    for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<IoThread>());
    return out;
  }

  void Accept();
  void Shutdown(absl::Duration grace);
  template <typename Fn>
  void ForEachSession(Fn fn);

  // Constant after Start.
  Pipeline& pipeline;
  Metrics& metrics;
  const uint64_t max_body_bytes;
  const std::vector<std::unique_ptr<IoThread>> io;
  tcp::acceptor acceptor;            // on io[0]
  net::steady_timer accept_backoff;  // pauses accepting after an error such as EMFILE
  size_t next_io = 0;                // the I/O thread of the next connection; on the acceptor
  int port = 0;

  std::atomic<bool> stopping{false};

  absl::Mutex mu;
  // Live sessions, so that Shutdown can reach them.
  absl::flat_hash_map<Session*, std::weak_ptr<Session>> sessions ABSL_GUARDED_BY(mu);
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `io` runs the socket's io_context.
  Session(std::shared_ptr<HttpServer::Impl> server, IoThread& io, tcp::socket socket)
      : server_(std::move(server)),
        io_(io),
        socket_(std::move(socket)),
        executor_(socket_.get_executor()),
        timer_(executor_) {}

  ~Session() {
    absl::MutexLock lock(&server_->mu);
    server_->sessions.erase(this);
  }

  void Start() {
    {
      absl::MutexLock lock(&server_->mu);
      server_->sessions[this] = weak_from_this();
    }
    beast::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    ReadHeader();
  }

  template <typename Fn>
  void Post(Fn fn) {
    net::post(executor_, std::move(fn));
  }

  IoThread& io() const { return io_; }

  // The watch IoThread::WatchClientLater asked for, if the answer is still in progress.
  void WatchIfAnswering() {
    if (AnsweringUnwatched()) WatchClient();
  }

  // ---- Responder events, on the connection's thread. `seq` names the exchange they belong to.
  void OnReply(uint64_t seq, const ResponseHead& head, const providers::WireJson& body) {
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
  void OnEvents(uint64_t seq, std::string events) {
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
      QueueEvent(absl::StrCat("data: ", providers::DumpJson(OpenAiErrorBody(status)), "\n\n"));
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

  // ---- Server events, on the connection's thread.
  // Graceful shutdown: an idle connection closes now, a busy one after its response.
  void CloseWhenIdle() {
    if (closed_) return;
    if (!exchange_) return Close();
    exchange_->keep_alive = false;
  }

  // Ends the connection now; a call in progress is cancelled.
  void Close() {
    if (closed_) return;
    closed_ = true;
    StopTimer();
    if (exchange_ && exchange_->call) {
      exchange_->call->Cancel();
      exchange_->call.reset();
    }
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
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

  bool Current(uint64_t seq) const {
    return !closed_ && exchange_ && exchange_->seq == seq && !exchange_->done;
  }

  // ---- Reading requests.
  void ReadHeader() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    // No limit while the header is read: an announced oversized body is answered with 413 in
    // ProcessHeader, which needs the parsed header; the limit is set before the body is read.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    read_pending_ = true;
    if (!exchange_) ArmTimer(kIdleTimeout);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  // An answer is in progress and nothing reads from or watches the client meanwhile.
  bool AnsweringUnwatched() const {
    return !closed_ && !read_pending_ && exchange_ && !exchange_->done;
  }

  // While an answer is prepared: waits for the client to send more (a pipelined request) or to
  // leave, without reading. A read now, the speculative one Asio starts with, would find nothing
  // and cost a system call per request; the read starts when there is something to read. (Bytes
  // already in buffer_ are read at StartCall, and nothing adds to buffer_ without a read.)
  void WatchClient() {
    read_pending_ = true;
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
      self->read_pending_ = false;
      if (self->closed_) return;
      if (ec) return self->Close();
      if (self->lingering_) return self->Drain();
      self->ReadHeader();
    });
  }

  void OnHeader(beast::error_code ec) {
    read_pending_ = false;
    if (closed_) return;
    if (lingering_) return ec ? Close() : Drain();
    if (ec) {
      // During a response any read failure means the client went away: cancel the call.
      if (exchange_) return Close();
      if (ec == http::error::header_limit) return SendBareError(431, "Request header too large.");
      if (ec == http::error::end_of_stream || ec == net::error::eof ||
          ec == net::error::operation_aborted || ec == net::error::connection_reset) {
        return Close();
      }
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
    read_pending_ = true;
    http::async_read(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  // A body of announced length (at most the limit, which ProcessHeader checked) goes straight
  // into the request's string: what the header's read brought along is taken from the buffer,
  // and the rest is read from the socket into its place. Through Beast, each byte would be read
  // into the buffer, moved to its front as the buffer made room, and copied into the string.
  void ReadBodyOfLength(size_t length) {
    std::string& body = parser_->get().body();
    body.reserve(std::min(length, kBodyRoomAhead) + RequestBody::kEditRoom);
    const size_t buffered = std::min(buffer_.size(), length);
    body.append(static_cast<const char*>(buffer_.data().data()), buffered);
    buffer_.consume(buffered);
    ReadMoreBody(length, body.size());
  }

  // Reads the rest of a body of `length` bytes, of which `have` are in, a part at a time. The
  // string is sized, which zero-fills it, just before a read fills it, and the room grows by
  // doubling: a client that announces a large body and sends little of it holds about what it
  // sent, not the announced length. A short read leaves the string's size where it was, so that
  // each byte is zero-filled once however many reads it fills (`have` says how much is real); a
  // body that ends short is cut to what arrived.
  void ReadMoreBody(size_t length, size_t have) {
    std::string& body = parser_->get().body();
    if (have == length) return Dispatch();  // the string is never sized past `length`
    const size_t part = std::min(length - have, kBodyPartBytes);
    if (body.size() < have + part) {
      if (body.capacity() < have + part + RequestBody::kEditRoom) {
        body.reserve(std::min(length, std::max(2 * body.capacity(), have + part)) +
                     RequestBody::kEditRoom);
      }
      body.resize(have + part);
    }
    read_pending_ = true;
    socket_.async_read_some(
        net::buffer(body.data() + have, part),
        [self = shared_from_this(), have, length](beast::error_code ec, size_t n) {
          // The parser lives until Dispatch, which only this read leads to.
          if (ec || self->closed_) {
            self->parser_->get().body().resize(have + n);
            return self->OnBody(ec);  // a short body: truncated
          }
          self->read_pending_ = false;
          self->ReadMoreBody(length, have + n);
        });
  }

  void OnBody(beast::error_code ec) {
    read_pending_ = false;
    if (closed_) return;
    if (lingering_) return ec ? Close() : Drain();
    if (ec == http::error::body_limit) {
      exchange_->keep_alive = false;
      return SendError(TooLarge(), OperationOf(parser_->get()));
    }
    // A truncated request: the client left before sending it all; there is no one to answer.
    if (ec) return Close();
    Dispatch();
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
    SendText(status, "application/json", providers::DumpJson(body));
  }

  // An error response for a failure of the pipeline (already counted there).
  void SendError(const absl::Status& status) {
    ErrorDetail detail = DetailOf(status);
    std::string body = providers::DumpJson(OpenAiErrorBody(status));
    std::string out = ResponseStart(detail.http_status);
    absl::StrAppend(&out, "content-type: application/json\r\ncontent-length: ", body.size(),
                    "\r\n");
    if (!detail.retryable) out += "x-should-retry: false\r\n";
    // The upstream's own word on when to try again, for the client's SDK to honour.
    if (std::optional<int64_t> ms = providers::RetryAfterMsOf(status)) {
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
    AppendChunk(pending_, events);
    Queued();
  }

  void Queue(std::string bytes) {
    if (closed_) return;
    if (pending_.empty()) {
      pending_ = std::move(bytes);
    } else {
      pending_ += bytes;
    }
    Queued();
  }

  // After bytes joined `pending_`: written now, unless held or the client is too slow.
  void Queued() {
    if (pending_.size() + writing_bytes_.size() > kMaxQueuedBytes) {
      LogJson(LogLevel::kWarn, Json{{"msg", "client reads too slowly; dropping the connection"},
                                    {"request_id", exchange_ ? exchange_->request_id : ""}});
      return Close();
    }
    if (writes_held_ == 0) Flush();
  }

  // Writes what is queued; while a write is in flight, new bytes gather for the next one.
  void Flush() {
    if (writing_ || closed_) return;
    if (pending_.empty()) {
      if (exchange_ && exchange_->done) AfterResponse();
      return;
    }
    writing_ = true;
    writing_bytes_.swap(pending_);
    pending_.clear();
    net::async_write(
        socket_, net::buffer(writing_bytes_),
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnWrite(ec); });
  }

  void OnWrite(beast::error_code ec) {
    writing_ = false;
    writing_bytes_.clear();
    if (closed_) return;
    if (ec) return Close();
    Flush();
  }

  // The response is fully written: next request, or the end of the connection.
  void AfterResponse() {
    const bool keep = exchange_->keep_alive && !server_->stopping.load();
    exchange_.reset();
    if (!keep) return LingeringClose();
    if (header_waiting_) {
      header_waiting_ = false;
      return ProcessHeader();
    }
    if (read_pending_) {
      ArmTimer(kIdleTimeout);
    } else {
      ReadHeader();
    }
  }

  // Half-closes and discards what the client still sends, so it reads the response, not a reset.
  void LingeringClose() {
    lingering_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    ArmTimer(kLingerTimeout);
    if (!read_pending_) Drain();
  }

  void Drain() {
    read_pending_ = true;
    socket_.async_read_some(net::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->read_pending_ = false;
                              if (self->closed_) return;
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  // ---- The one timer: idle, request read and lingering timeouts. Arming and disarming only move
  // `deadline_`; the one pending wait never lasts longer than kReadTimeout and, when it fires
  // before the deadline, waits again for the rest. So the requests of a keep-alive connection
  // cost no timer cancellation (each was a completion handler and a timer-queue update).
  void ArmTimer(std::chrono::steady_clock::duration d) {
    deadline_ = std::chrono::steady_clock::now() + d;
    if (timer_waiting_ && timer_.expiry() <= deadline_) return;
    WaitForDeadline();
  }

  void DisarmTimer() { deadline_ = std::chrono::steady_clock::time_point::max(); }

  // Close's: the pending wait ends now, so that it no longer holds the session.
  void StopTimer() {
    DisarmTimer();
    ++timer_generation_;
    timer_waiting_ = false;
    timer_.cancel();
  }

  void WaitForDeadline() {
    const uint64_t generation = ++timer_generation_;
    timer_waiting_ = true;
    timer_.expires_at(std::min(deadline_, std::chrono::steady_clock::now() + kReadTimeout));
    timer_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      if (generation != self->timer_generation_) return;  // superseded or stopped
      self->timer_waiting_ = false;
      if (ec || self->closed_ || self->deadline_ == std::chrono::steady_clock::time_point::max()) {
        return;
      }
      if (std::chrono::steady_clock::now() < self->deadline_) return self->WaitForDeadline();
      self->Close();
    });
  }

  // Constant after construction.
  const std::shared_ptr<HttpServer::Impl> server_;
  IoThread& io_;
  tcp::socket socket_;
  net::any_io_executor executor_;  // its I/O thread's io_context: handlers run one at a time
  net::steady_timer timer_;

  // State of the connection's thread only.
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<RequestBody>> parser_;
  std::optional<Exchange> exchange_;
  uint64_t seq_ = 0;
  uint64_t timer_generation_ = 0;
  bool timer_waiting_ = false;  // an async_wait of timer_ is pending
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  bool read_pending_ = false;
  bool header_waiting_ = false;
  bool lingering_ = false;
  bool closed_ = false;
  bool writing_ = false;
  int writes_held_ = 0;        // HoldWrites without ReleaseWrites yet: Queue does not write
  std::string pending_;        // queued, not yet handed to the socket
  std::string writing_bytes_;  // handed to the socket
  std::string extra_allow_;    // the Allow header of a 405
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

  void Reply(const ResponseHead& head, providers::WireJson body) override {
    Gather([&](Batch& b) { b.reply.emplace(head, std::move(body)); });
  }
  void StartStream(const ResponseHead& head) override {
    Gather([&](Batch& b) { b.head = head; });
  }
  void Chunks(std::span<providers::WireJson> chunks) override {
    constexpr std::string_view kData = "data: ", kEnd = "\n\n";
    size_t size = 0;
    for (const providers::WireJson& chunk : chunks) {
      size += kData.size() + chunk.text().size() + kEnd.size();
    }
    Gather([&](Batch& b) {
      // Exactly once per batch: reserving at each later call would copy it each time.
      if (b.events.empty()) b.events.reserve(size);
      for (const providers::WireJson& chunk : chunks) {
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
    if (!batch.events.empty()) session_->OnEvents(seq_, std::move(batch.events));
    if (batch.end.has_value()) session_->OnEndStream(seq_, *batch.end);
    session_->ReleaseWrites();
  }

 private:
  // What the pipeline said since the last delivery: a reply or a failure alone, or a stream's
  // events in this order.
  struct Batch {
    std::optional<std::pair<ResponseHead, providers::WireJson>> reply;  // Reply
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
    if (io == &session_->io() && io->running_lane) {
      io->ready.push_back(shared_from_this());
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
  std::optional<Json> parsed = providers::ParseJson(req.body());
  if (!parsed.has_value()) {
    if (providers::NestsTooDeep(req.body())) {
      return SendError(
          InvalidRequest(absl::StrCat("The JSON body of your request nests arrays and objects more "
                                      "than ",
                                      providers::kMaxJsonDepth, " levels deep.")),
          OperationLabel(route));
    }
    return SendError(InvalidRequest("We could not parse the JSON body of your request. The "
                                    "OpenAI API expects a JSON payload."),
                     OperationLabel(route));
  }
  // The text goes along with its value: relayed as the client wrote it, but for terse's edits.
  auto body = providers::WireJson::FromParsedText(std::move(req.body()), *std::move(parsed));
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
  // Watching the connection tells of the client leaving while the answer is prepared: at once
  // when a pipelined request is here already, else once the answer has taken a while.
  if (!AnsweringUnwatched()) return;
  if (buffer_.size() != 0) return ReadHeader();
  io_.WatchClientLater(weak_from_this());
}

}  // namespace

namespace {
thread_local IoThread* current_io_thread = nullptr;
}  // namespace

IoThread* IoThread::Current() { return current_io_thread; }

void IoThread::Run(providers::HttpClient* engine, int lane_index) {
  pthread_setname_np(pthread_self(), "terse-io");  // for top -H and profiles
  current_io_thread = this;
  if (engine != nullptr && lane_index < engine->lanes()) {
    absl::StatusOr<std::unique_ptr<providers::HostedLane>> hosted =
        engine->Host(lane_index, [this] { net::post(ioc, [this] { RunLane(false); }); });
    if (hosted.ok()) {
      lane = *std::move(hosted);
      beast::error_code ec;
      lane_watch.emplace(ioc);
      const int copy = dup(lane->fd());  // the stream_descriptor closes what it holds
      if (copy >= 0) lane_watch->assign(copy, ec);
      if (copy < 0 || ec) {
        // Without a watch the lane cannot be hosted: give it back to a thread of its own.
        LogJson(LogLevel::kWarn, Json{{"msg", "cannot watch the upstream engine's lane"}});
        if (copy >= 0 && ec) close(copy);
        lane_watch.reset();
        lane.reset();
      } else {
        lane_timer.emplace(ioc);
        RunLane(true);
      }
    } else {
      LogJson(LogLevel::kWarn, Json{{"msg", "cannot host the upstream engine's lane"},
                                    {"error", std::string(hosted.status().message())}});
    }
  }
  ioc.run();
}

void IoThread::DeliverReady() {
  if (ready.empty()) return;
  // A delivery may start the connection's next call, whose responder may join `ready`: it is
  // delivered on the next turn.
  delivering.swap(ready);
  for (const std::shared_ptr<HttpResponder>& responder : delivering) responder->Deliver();
  delivering.clear();
}

void IoThread::WatchClientLater(std::weak_ptr<Session> session) {
  watch_soon.push_back(std::move(session));
  if (!watch_tick_armed) ArmWatchTick();
}

void IoThread::ArmWatchTick() {
  watch_tick_armed = true;
  watch_tick.expires_after(std::chrono::milliseconds(20));
  watch_tick.async_wait([this](beast::error_code ec) {
    watch_tick_armed = false;
    if (ec) return;
    // Those of the tick before have waited 20-40 ms; those since, 0-20 ms: their turn is next.
    for (const std::weak_ptr<Session>& weak : watch_next) {
      if (std::shared_ptr<Session> session = weak.lock()) session->WatchIfAnswering();
    }
    watch_next.clear();
    watch_next.swap(watch_soon);
    if (!watch_next.empty()) ArmWatchTick();
  });
}

void IoThread::RunLane(bool readable) {
  running_lane = true;
  const auto after_event = [this] { DeliverReady(); };
  const absl::Time next =
      readable || !watching ? lane->Run(after_event) : lane->RunQueued(after_event);
  running_lane = false;
  DeliverReady();
  if (!watching) {
    watching = true;
    lane_watch->async_wait(net::posix::stream_descriptor::wait_read, [this](beast::error_code ec) {
      watching = false;
      if (!ec) RunLane(true);
    });
  }
  // Only an earlier deadline moves the timer: a later one lets it fire early once (Run then finds
  // nothing due and says when), which is cheaper than moving it for every exchange.
  if (next < lane_timer_at) {
    lane_timer_at = next;
    const absl::Duration delay = std::max(absl::ZeroDuration(), next - absl::Now());
    lane_timer->expires_after(absl::ToChronoNanoseconds(delay));
    lane_timer->async_wait([this, at = next](beast::error_code ec) {
      if (ec || at != lane_timer_at) return;  // moved or cancelled
      lane_timer_at = absl::InfiniteFuture();
      RunLane(false);
    });
  }
}

void HttpServer::Impl::Accept() {
  IoThread& target = *io[next_io++ % io.size()];
  acceptor.async_accept(
      target.ioc, [self = shared_from_this(), &target](beast::error_code ec, tcp::socket socket) {
        if (self->stopping.load() || ec == net::error::operation_aborted) return;
        if (ec) {
          // Out of descriptors or similar: pause instead of spinning, then try again.
          LogJson(LogLevel::kWarn, Json{{"msg", "accept failed"}, {"error", ec.message()}});
          self->accept_backoff.expires_after(std::chrono::milliseconds(50));
          self->accept_backoff.async_wait([self](beast::error_code wait_ec) {
            if (!wait_ec && !self->stopping.load()) self->Accept();
          });
          return;
        }
        auto session = std::make_shared<Session>(self, target, std::move(socket));
        session->Post([session] { session->Start(); });  // on its own I/O thread
        self->Accept();
      });
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
  net::post(acceptor.get_executor(), [self = shared_from_this()] {
    beast::error_code ignored;
    self->acceptor.close(ignored);
    self->accept_backoff.cancel();
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
  for (const auto& t : io) {
    t->work.reset();
    t->ioc.stop();
  }
  for (const auto& t : io) {
    if (t->thread.joinable()) t->thread.join();
  }
  // The lanes go back to threads of their own, with whatever is still in flight.
  for (const auto& t : io) {
    t->lane_timer.reset();
    t->lane_watch.reset();
    t->lane.reset();
  }
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

  beast::error_code ec;
  tcp::resolver resolver(impl->io[0]->ioc);
  auto endpoints = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve HTTP listener host \"", host, "\": ", ec.message()));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for HTTP on ", host, ":", port, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();

  impl->Accept();
  for (size_t i = 0; i < impl->io.size(); ++i) {
    IoThread* t = impl->io[i].get();
    t->thread = std::thread([t, engine, i] { t->Run(engine, static_cast<int>(i)); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

}  // namespace terse::proxy
