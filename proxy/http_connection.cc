// One HTTP/1.1 connection of the transport: requests read with Boost.Beast's parser (a body of
// announced length straight into its string), handed to the handler, and responses written as
// the socket takes them, with one timer for the idle, read and lingering timeouts.
#include "proxy/http_connection.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "base/json.h"
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
// Bytes a slow reader may leave unsent before its connection is dropped: the handler never
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
// A body of announced length gets room for this much of it before it is read; room for more
// grows as it arrives (ContinueBodyOfLength).
constexpr size_t kBodyRoomAhead = 1024 * 1024;
// The most of such a body one read takes into its string.
constexpr size_t kBodyPartBytes = 256 * 1024;
constexpr size_t kEditRoom = HttpRequest::kBodyEditRoom;

std::string_view ToStd(beast::string_view s) { return std::string_view(s.data(), s.size()); }
// Debian's abseil has its own string_view; StrCat takes only that one.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

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

}  // namespace

// ---- HttpExchange: a handle on one exchange of a connection.

void HttpExchange::Schedule(std::shared_ptr<HttpDelivery> delivery) const {
  connection_->Schedule(std::move(delivery));
}
void HttpExchange::OnAbandoned(absl::AnyInvocable<void()> cancel) const {
  connection_->OnAbandoned(seq_, std::move(cancel));
}
void HttpExchange::Respond(int status, std::string_view content_type, std::string_view fields,
                           std::string_view body) const {
  connection_->Respond(seq_, status, content_type, fields, body);
}
void HttpExchange::StartStream(int status, std::string_view content_type,
                               std::string_view fields) const {
  connection_->StartStream(seq_, status, content_type, fields);
}
void HttpExchange::Stream(std::string bytes) const { connection_->Stream(seq_, std::move(bytes)); }
void HttpExchange::EndStream() const { connection_->EndStream(seq_); }
bool HttpExchange::streaming() const { return connection_->Streaming(seq_); }
void HttpExchange::HoldWrites() const { connection_->HoldWrites(); }
void HttpExchange::ReleaseWrites() const { connection_->ReleaseWrites(); }
void HttpExchange::Close() const { connection_->CloseExchange(seq_); }

// ---- The connection.

HttpConnection::~HttpConnection() {
  if (fd_ >= 0) close(fd_);
  absl::MutexLock lock(&transport_->mu);
  transport_->connections.erase(this);
}

void HttpConnection::Start() {
  {
    absl::MutexLock lock(&transport_->mu);
    transport_->connections[this] = weak_from_this();
  }
  io_.open[this] = shared_from_this();
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (absl::Status watched = io_.loop->Watch(fd_, this); !watched.ok()) {
    LogJson(LogLevel::kWarn,
            Json{{"msg", "cannot watch a connection"}, {"error", std::string(watched.message())}});
    return Close();
  }
  ReadHeader();
}

void HttpConnection::OnEvents(uint32_t events) {
  if (closed_) return;                    // closed earlier in this turn
  if (events & EPOLLERR) return Close();  // reset: the client is gone
  if (events & (EPOLLRDHUP | EPOLLHUP)) peer_closed_ = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) readable_ = true;
  if (events & EPOLLOUT) writable_ = true;
  if (writable_ && sent_ < out_.size()) Flush();
  if (readable_) ContinueReading();
}

void HttpConnection::CloseWhenIdle() {
  if (closed_) return;
  if (!exchange_) return Close();
  exchange_->keep_alive = false;
}

void HttpConnection::Close() {
  if (closed_) return;
  closed_ = true;
  reading_ = Reading::kNothing;
  DisarmTimer();
  if (exchange_ && exchange_->on_abandoned) {
    absl::AnyInvocable<void()> cancel = std::move(exchange_->on_abandoned);
    exchange_->on_abandoned = nullptr;
    cancel();
  }
  close(fd_);  // which takes it out of the epoll set
  fd_ = -1;
  out_.clear();
  sent_ = 0;
  io_.loop->Defer([self = shared_from_this()] { self->io_.open.erase(self.get()); });
}

// ---- HttpExchange's operations.

void HttpConnection::Schedule(std::shared_ptr<HttpDelivery> delivery) {
  if (IoThread::Current() == &io_) return io_.Ready(std::move(delivery));
  io_.loop->Post([delivery = std::move(delivery)] { delivery->Deliver(); });
}

void HttpConnection::OnAbandoned(uint64_t seq, absl::AnyInvocable<void()> cancel) {
  if (Current(seq)) exchange_->on_abandoned = std::move(cancel);
}

void HttpConnection::Respond(uint64_t seq, int status, std::string_view content_type,
                             std::string_view fields, std::string_view body) {
  if (!Current(seq)) return;
  std::string out = ResponseStart(status);
  absl::StrAppend(&out, "content-type: ", Av(content_type), "\r\ncontent-length: ", body.size(),
                  "\r\n", Av(fields), "\r\n");
  out += body;
  MarkDone();
  Queue(std::move(out));
}

void HttpConnection::StartStream(uint64_t seq, int status, std::string_view content_type,
                                 std::string_view fields) {
  if (!Current(seq) || exchange_->streaming) return;
  exchange_->streaming = true;
  if (!exchange_->http11) exchange_->keep_alive = false;  // no chunked coding: the close ends it
  std::string out = ResponseStart(status);
  absl::StrAppend(&out, "content-type: ", Av(content_type), "\r\n");
  if (exchange_->http11) out += "transfer-encoding: chunked\r\n";
  absl::StrAppend(&out, Av(fields), "\r\n");
  Queue(std::move(out));
}

// Framed as a chunk on HTTP/1.1, appended where it goes.
void HttpConnection::Stream(uint64_t seq, std::string bytes) {
  if (!Current(seq) || !exchange_->streaming) return;
  if (!exchange_->http11) return Queue(std::move(bytes));
  AppendChunk(out_, bytes);
  Queued();
}

void HttpConnection::EndStream(uint64_t seq) {
  if (!Current(seq) || !exchange_->streaming) return;
  const bool http11 = exchange_->http11;
  MarkDone();
  Queue(http11 ? std::string("0\r\n\r\n") : std::string());
}

// ---- Reading requests.

// Reads up to `room` bytes into `into`, setting `n`. A read that fills less than its room has
// taken all the socket had (an edge-triggered socket reports what comes later as a new event),
// unless the peer has closed: then the next read finds the end, which no event will report.
HttpConnection::Got HttpConnection::Receive(char* into, size_t room, size_t& n) {
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

void HttpConnection::ContinueReading() {
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
void HttpConnection::ReadLater() {
  io_.loop->Defer([self = shared_from_this()] {
    if (!self->closed_ && self->readable_) self->ContinueReading();
  });
}

void HttpConnection::ReadHeader() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  // No limit while the header is read: an announced oversized body is refused with 413 in
  // ProcessHeader, which needs the parsed header; the limit is set before the body is read.
  parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  reading_ = Reading::kHeader;
  if (!exchange_) ArmTimer(kIdleTimeout);
  ContinueHeader();
}

// Parses what the buffer holds, and reads more while the header is incomplete and the socket
// has bytes.
void HttpConnection::ContinueHeader() {
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

void HttpConnection::OnHeader(beast::error_code ec) {
  if (closed_) return;
  if (ec) {
    // During a response any read failure means the client went away: abandon the exchange.
    if (exchange_) return Close();
    if (ec == http::error::header_limit) return RefuseUnparsed(431, "Request header too large.");
    if (ec == http::error::end_of_stream) return Close();
    return RefuseUnparsed(400, "Malformed HTTP request.");
  }
  // A pipelined request: it waits until the response in progress is written.
  if (exchange_) {
    header_waiting_ = true;
    return;
  }
  ProcessHeader();
}

void HttpConnection::ProcessHeader() {
  auto& req = parser_->get();
  exchange_.emplace();
  exchange_->seq = ++seq_;
  exchange_->received = absl::Now();
  exchange_->http11 = req.version() >= 11;
  exchange_->keep_alive = req.keep_alive() && !transport_->stopping.load();
  auto id = req.find("x-request-id");
  exchange_->request_id = id != req.end() && AcceptableRequestId(ToStd(id->value()))
                              ? std::string(ToStd(id->value()))
                              : NewRequestId();
  ArmTimer(kReadTimeout);

  if (auto length = parser_->content_length(); length && *length > transport_->max_body_bytes) {
    exchange_->keep_alive = false;  // the body stays unread
    return Refuse(TooLarge(), Head(req));
  }
  if (AsciiEqualsIgnoreCase(ToStd(req[http::field::expect]), "100-continue") &&
      !parser_->is_done()) {
    Queue("HTTP/1.1 100 Continue\r\n\r\n");
  }
  if (parser_->is_done()) return Dispatch();
  parser_->body_limit(transport_->max_body_bytes);
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
void HttpConnection::ReadBodyOfLength(size_t length) {
  std::string& body = parser_->get().body();
  body.reserve(std::min(length, kBodyRoomAhead) + kReadPastBody + kEditRoom);
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
void HttpConnection::ContinueBodyOfLength() {
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
      if (body.capacity() < end + kEditRoom) {  // grown reaches past `end`
        const size_t grown =
            std::min(body_length_, std::max(2 * body.capacity(), body_have_ + part));
        body.reserve(grown + kReadPastBody + kEditRoom);
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

void HttpConnection::ContinueChunkedBody() {
  for (int reads = 0;;) {
    if (buffer_.size() != 0) {
      beast::error_code ec;
      buffer_.consume(parser_->put(buffer_.data(), ec));
      if (ec == http::error::body_limit) {
        reading_ = Reading::kNothing;
        exchange_->keep_alive = false;
        return Refuse(TooLarge(), Head(parser_->get()));
      }
      if (ec && ec != http::error::need_more) {
        reading_ = Reading::kNothing;
        exchange_->keep_alive = false;
        return Refuse(InvalidRequest("The request's chunked body is malformed."),
                      Head(parser_->get()));
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

// The whole request goes to the handler. Reading on during its answer takes a pipelined
// request's header, and hears of a client that leaves (the exchange is then abandoned); an event
// brings either.
void HttpConnection::Dispatch() {
  DisarmTimer();
  Request req = parser_->release();
  parser_.reset();
  if (buffer_.size() == 0 && buffer_.capacity() > kKeptBufferRoom) buffer_.shrink_to_fit();
  HttpRequest request = Head(req);
  request.body = std::move(req.body());
  transport_->handler.OnRequest(std::move(request), HttpExchange(shared_from_this(), seq_));
  if (!closed_ && exchange_ && !exchange_->done && reading_ == Reading::kNothing) ReadHeader();
}

// ---- Refusing requests.

absl::Status HttpConnection::TooLarge() const {
  return PayloadTooLarge(absl::StrCat("The request body is larger than the limit of ",
                                      transport_->max_body_bytes, " bytes."));
}

HttpRequest HttpConnection::Head(const Request& req) const {
  HttpRequest request;
  request.method = std::string(ToStd(req.method_string()));
  request.target = std::string(ToStd(req.target()));
  request.headers.reserve(16);  // a usual request's, at once rather than by doubling
  for (const auto& field : req) {
    request.headers.emplace_back(AsciiLower(ToStd(field.name_string())),
                                 std::string(ToStd(field.value())));
  }
  request.request_id = exchange_->request_id;
  request.received = exchange_->received;
  return request;
}

void HttpConnection::Refuse(const absl::Status& error, const HttpRequest& request) {
  exchange_->keep_alive = false;
  const uint64_t seq = exchange_->seq;
  transport_->handler.OnRefused(error, request, HttpExchange(shared_from_this(), seq));
  if (Current(seq)) Close();  // a handler that did not answer
}

void HttpConnection::RefuseUnparsed(int http_status, std::string_view message) {
  exchange_.emplace();
  exchange_->seq = ++seq_;
  exchange_->received = absl::Now();
  exchange_->request_id = NewRequestId();
  HttpRequest request;
  request.request_id = exchange_->request_id;
  request.received = exchange_->received;
  Refuse(MakeError(absl::StatusCode::kInvalidArgument, message, {.http_status = http_status}),
         request);
}

// ---- Writing responses.

std::string HttpConnection::ResponseStart(int status) const {
  std::string out;
  out.reserve(512);
  absl::StrAppend(&out, exchange_->http11 ? "HTTP/1.1 " : "HTTP/1.0 ", status, " ",
                  Av(ToStd(http::obsolete_reason(static_cast<http::status>(status)))), "\r\n",
                  "x-request-id: ", exchange_->request_id, "\r\n");
  if (!exchange_->keep_alive || transport_->stopping.load()) {
    out += "connection: close\r\n";
  } else if (!exchange_->http11) {
    out += "connection: keep-alive\r\n";
  }
  return out;
}

void HttpConnection::MarkDone() {
  exchange_->done = true;
  exchange_->on_abandoned = nullptr;
}

void HttpConnection::Queue(std::string bytes) {
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
void HttpConnection::Queued() {
  if (out_.size() - sent_ > kMaxQueuedBytes) {
    LogJson(LogLevel::kWarn, Json{{"msg", "client reads too slowly; dropping the connection"},
                                  {"request_id", exchange_ ? exchange_->request_id : ""}});
    return Close();
  }
  Flush();  // which waits while writes are held
}

// Sends what is queued, as far as the socket takes it; the rest goes at its next writable
// event. A response whose last bytes are sent ends its exchange.
void HttpConnection::Flush() {
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
void HttpConnection::AfterResponse() {
  const bool keep = exchange_->keep_alive && !transport_->stopping.load();
  exchange_.reset();
  if (!keep) return LingeringClose();
  io_.loop->Defer([self = shared_from_this()] { self->NextRequest(); });
}

void HttpConnection::NextRequest() {
  if (closed_ || exchange_) return;
  if (header_waiting_) {
    header_waiting_ = false;
    return ProcessHeader();
  }
  if (reading_ == Reading::kHeader) return ArmTimer(kIdleTimeout);  // read on since the request
  ReadHeader();
}

// Half-closes and discards what the client still sends, so it reads the response, not a reset.
void HttpConnection::LingeringClose() {
  shutdown(fd_, SHUT_WR);
  header_waiting_ = false;
  parser_.reset();
  buffer_.clear();
  reading_ = Reading::kDrain;
  ArmTimer(kLingerTimeout);
  ContinueDrain();
}

void HttpConnection::ContinueDrain() {
  for (int reads = 0; readable_;) {
    if (reads++ == kReadsPerTurn) return ReadLater();
    size_t n = 0;
    const Got got = Receive(drain_.data(), drain_.size(), n);
    if (got == Got::kEnd || got == Got::kError) return Close();
  }
}

// ---- The one timer. Arming and disarming only move `deadline_`; the one timer set never lasts
// longer than kReadTimeout and, when it fires before the deadline, is set again for the rest. So
// the requests of a keep-alive connection set no timer of their own.

void HttpConnection::ArmTimer(absl::Duration d) {
  deadline_ = absl::Now() + d;
  if (timer_at_ <= deadline_) return;  // the timer set fires first, and sets itself again
  SetTimer();
}

void HttpConnection::SetTimer() {
  timer_at_ = std::min(deadline_, absl::Now() + kReadTimeout);
  io_.loop->RunAt(timer_at_, [weak = weak_from_this(), at = timer_at_] {
    std::shared_ptr<HttpConnection> self = weak.lock();
    if (!self || at != self->timer_at_) return;  // gone, or superseded by an earlier one
    self->timer_at_ = absl::InfiniteFuture();
    if (self->closed_ || self->deadline_ == absl::InfiniteFuture()) return;
    if (absl::Now() < self->deadline_) return self->SetTimer();
    self->Close();
  });
}

}  // namespace terse::proxy
