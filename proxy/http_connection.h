// The insides of the HTTP transport (http_transport.h), for its two files only: the I/O threads
// and the transport's shared state (http_transport.cc), and one HttpConnection per accepted
// socket (http_connection.cc).
//
// Each I/O thread runs one event loop and hosts one lane of the upstream HTTP engine in the same
// epoll set, so a pass-through request is read, forwarded, answered and written on one thread,
// with one wait for all of it. Connections are dealt to the I/O threads in turn; every event of a
// connection runs on its thread, so a connection's handlers never run concurrently. Each socket is
// registered once, edge-triggered for reading, writing and the peer's close, so the loop always
// hears of a client that leaves, and a read or write is tried only when the socket has said it
// may succeed. Handlers answer from any thread through HttpExchange::Schedule, which brings the
// answer to the connection's thread; the connection sends the bytes at once and keeps what the
// socket does not take for its next writable event.
#pragma once

#include <array>
#include <atomic>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "providers/http_client.h"
#include "proxy/event_loop.h"
#include "proxy/http_transport.h"

namespace terse::proxy {

// The reads (or accepts) one event gets before the other sockets' events get a turn.
inline constexpr int kReadsPerTurn = 16;

// A request body as one string. A body of announced length is read into it by the connection
// (ReadBodyOfLength), with HttpRequest::kBodyEditRoom to spare; Beast fills it only with a chunked
// body, appending each decoded piece.
struct RequestBody {
  using value_type = std::string;

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(boost::beast::http::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    // Only chunked bodies, of no announced length, are read through Beast; the body limit
    // bounds them.
    void init(const boost::optional<uint64_t>&, boost::beast::error_code& ec) { ec = {}; }

    template <class ConstBufferSequence>
    size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      size_t added = 0;
      for (const auto buffer : boost::beast::buffers_range_ref(buffers)) {
        body_.append(static_cast<const char*>(buffer.data()), buffer.size());
        added += buffer.size();
      }
      ec = {};
      return added;
    }

    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};

// One I/O thread: its event loop, the upstream engine's lane it hosts (none when the transport has
// no engine or the engine has fewer lanes than I/O threads), and the connections it serves.
struct IoThread {
  // Starts the thread, which hosts the lane and attaches the loop to its epoll set (with the
  // listening socket, for the thread that accepts), and returns once that is done.
  absl::Status Start(providers::HttpClient* engine, int lane_index, EventLoop::Watcher* listener,
                     int listen_fd);
  // Ends the loop and joins the thread; then closes the connections left and hands the lane back.
  void Stop();
  // A delivery due on this thread: run after the work of the socket its event came from, or at the
  // latest before the loop waits again.
  void Ready(std::shared_ptr<HttpDelivery> delivery);
  void DeliverReady();
  // The I/O thread the caller runs on, or null.
  static IoThread* Current();

  // Made before the thread starts, so that other threads may post to it from the first moment.
  const std::unique_ptr<EventLoop> loop = std::make_unique<EventLoop>();
  std::thread thread;
  std::unique_ptr<providers::HostedLane> lane;  // on the thread only, after Start set it up

  // The thread's only, while it runs.
  std::vector<std::shared_ptr<HttpDelivery>> ready;
  std::vector<std::shared_ptr<HttpDelivery>> delivering;  // DeliverReady's, kept for its capacity
  // The connections this thread serves, open or closed in the turn in progress.
  absl::flat_hash_map<HttpConnection*, std::shared_ptr<HttpConnection>> open;
};

struct HttpTransport::Impl : std::enable_shared_from_this<HttpTransport::Impl>, EventLoop::Watcher {
  Impl(HttpHandler& handler, uint64_t max_body_bytes, unsigned io_threads);
  ~Impl();

  // The listening socket's events, on io[0].
  void OnEvents(uint32_t) override { Accept(); }
  // Takes the connections waiting to be accepted and deals them to the I/O threads.
  void Accept();
  void Shutdown(absl::Duration grace);
  template <typename Fn>
  void ForEachConnection(Fn fn);

  // Constant after Start.
  HttpHandler& handler;
  const uint64_t max_body_bytes;
  const std::vector<std::unique_ptr<IoThread>> io;
  int port = 0;

  int listen_fd = -1;          // io[0]'s once Start is done; -1 once closed
  bool accept_paused = false;  // io[0]'s: after an error such as EMFILE, until a timer resumes
  size_t next_io = 0;          // io[0]'s: the I/O thread of the next connection

  std::atomic<bool> stopping{false};

  absl::Mutex mu;
  // Live connections, so that Shutdown can reach them.
  absl::flat_hash_map<HttpConnection*, std::weak_ptr<HttpConnection>> connections
      ABSL_GUARDED_BY(mu);
  bool shut_down ABSL_GUARDED_BY(mu) = false;
};

// One accepted socket: reads requests, hands them to the handler, writes the responses.
class HttpConnection : public std::enable_shared_from_this<HttpConnection>,
                       public EventLoop::Watcher {
 public:
  // `fd`: the accepted socket, non-blocking, which the connection owns from here on.
  HttpConnection(std::shared_ptr<HttpTransport::Impl> transport, IoThread& io, int fd)
      : transport_(std::move(transport)), io_(io), fd_(fd) {}
  ~HttpConnection();

  // On the connection's I/O thread.
  void Start();
  IoThread& io() const { return io_; }
  // The socket's events: what it may do now is tried.
  void OnEvents(uint32_t events) override;

  // Graceful shutdown: an idle connection closes now, a busy one after its response.
  void CloseWhenIdle();
  // Ends the connection now; the exchange in progress is abandoned. The connection is released at
  // the end of the turn, as the turn's other events may still name it.
  void Close();

  // HttpExchange's operations, for the exchange `seq`: on the connection's thread (but Schedule).
  void Schedule(std::shared_ptr<HttpDelivery> delivery);
  void OnAbandoned(uint64_t seq, absl::AnyInvocable<void()> cancel);
  void Respond(uint64_t seq, int status, std::string_view content_type, std::string_view fields,
               std::string_view body);
  void StartStream(uint64_t seq, int status, std::string_view content_type,
                   std::string_view fields);
  void Stream(uint64_t seq, std::string bytes);
  void EndStream(uint64_t seq);
  bool Streaming(uint64_t seq) const { return Current(seq) && exchange_->streaming; }
  // Bytes queued between these two calls go out in one write.
  void HoldWrites() { ++writes_held_; }
  void ReleaseWrites() {
    if (--writes_held_ == 0) Flush();
  }
  void CloseExchange(uint64_t seq) {
    if (Current(seq)) Close();
  }

 private:
  using Request = boost::beast::http::request<RequestBody>;

  // The request/response in progress.
  struct Exchange {
    uint64_t seq = 0;
    std::string request_id;
    bool keep_alive = true;
    bool http11 = true;
    bool streaming = false;  // the stream's head went out
    bool done = false;       // the response's last bytes are queued
    absl::Time received;
    absl::AnyInvocable<void()> on_abandoned;  // the handler's, until the response is done
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

  // ---- Reading requests (http_connection.cc has the why of each).
  Got Receive(char* into, size_t room, size_t& n);
  void ContinueReading();
  void ReadLater();
  void ReadHeader();
  void ContinueHeader();
  void OnHeader(boost::beast::error_code ec);
  void ProcessHeader();
  void ReadBodyOfLength(size_t length);
  void ContinueBodyOfLength();
  void ContinueChunkedBody();
  void Dispatch();

  // ---- Refusing requests: the handler answers, then the connection closes.
  absl::Status TooLarge() const;
  // The head of the request being read, for the handler to answer a refusal of it.
  HttpRequest Head(const Request& request) const;
  void Refuse(const absl::Status& error, const HttpRequest& request);
  // For a request that could not even be parsed.
  void RefuseUnparsed(int http_status, std::string_view message);

  // ---- Writing responses.
  std::string ResponseStart(int status) const;
  void MarkDone();
  void Queue(std::string bytes);
  void Queued();
  void Flush();
  void AfterResponse();
  void NextRequest();
  void LingeringClose();
  void ContinueDrain();

  // ---- The one timer: idle, request read and lingering timeouts.
  void ArmTimer(absl::Duration d);
  void DisarmTimer() { deadline_ = absl::InfiniteFuture(); }
  void SetTimer();

  // Constant after construction.
  const std::shared_ptr<HttpTransport::Impl> transport_;
  IoThread& io_;
  int fd_;  // -1 once closed

  // State of the connection's thread only.
  bool readable_ = false;     // the socket may have bytes: its last event said so, no read since
                              // found it empty
  bool writable_ = true;      // the socket may take bytes: no send since found it full
  bool peer_closed_ = false;  // the client has closed its side (its last bytes may be unread)
  Reading reading_ = Reading::kNothing;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<RequestBody>> parser_;
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
  std::array<char, 4096> drain_;
};

}  // namespace terse::proxy
