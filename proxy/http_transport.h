// terse's HTTP/1.1 server transport: the listener, the I/O threads (each one event loop, hosting a
// lane of the upstream engine), and per connection the framing of requests and responses,
// keep-alive and pipelining, timeouts and write back-pressure. It knows nothing of what the
// requests mean: a HttpHandler (the OpenAI API, http_server.cc) answers them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace terse::providers {
class HttpClient;
}  // namespace terse::providers

namespace terse::proxy {

class HttpConnection;

// One request as read off a connection.
struct HttpRequest {
  // Spare capacity past the end of `body`, so that a handler's small edits of a long body (a
  // member added) move none of it.
  static constexpr size_t kBodyEditRoom = 128;

  std::string method;                                        // as sent: "POST"
  std::string target;                                        // as sent, with its query
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names lower-cased
  std::string body;  // empty for a request refused before its body was read
  // The client's `x-request-id` when it is fit for logs and headers, else a new id; every
  // response carries it.
  std::string request_id;
  absl::Time received;  // when its header had arrived
};

// Work a handler hands to a connection's thread from any thread: Deliver runs there. From that
// thread itself it runs after the work of the event in progress (so that what one upstream read
// produced leaves in one write), from any other thread it is posted.
class HttpDelivery {
 public:
  virtual void Deliver() = 0;

 protected:
  ~HttpDelivery() = default;
};

// A handler's hold on the response to one request. Copyable and cheap; it keeps the connection's
// state alive, not its socket. Schedule may be called from any thread; everything else only on
// the connection's thread (in OnRequest, or in a Deliver), and does nothing once the response is
// done or the connection closed.
class HttpExchange {
 public:
  HttpExchange(std::shared_ptr<HttpConnection> connection, uint64_t seq)
      : connection_(std::move(connection)), seq_(seq) {}

  // Runs `delivery->Deliver()` on the connection's thread (see HttpDelivery).
  void Schedule(std::shared_ptr<HttpDelivery> delivery) const;

  // What the handler keeps running for the request (say, a pipeline call): run when the
  // connection closes before the response is done, and dropped, without being run, once the
  // response is done. Replaces what was set before.
  void OnAbandoned(absl::AnyInvocable<void()> cancel) const;

  // A whole response. `fields` are further header lines, each ending in "\r\n".
  void Respond(int status, std::string_view content_type, std::string_view fields,
               std::string_view body) const;
  // A response of unknown length: chunked on HTTP/1.1, ended by closing the connection on 1.0.
  // Once started, Stream queues body bytes and EndStream ends it. A second start is ignored.
  void StartStream(int status, std::string_view content_type, std::string_view fields) const;
  void Stream(std::string bytes) const;
  void EndStream() const;
  // Whether StartStream has begun the response.
  bool streaming() const;

  // Bytes queued between these two calls go out in one write.
  void HoldWrites() const;
  void ReleaseWrites() const;

  // Ends the connection now: its client is gone, or the response cannot be finished.
  void Close() const;

 private:
  std::shared_ptr<HttpConnection> connection_;
  uint64_t seq_;  // which of the connection's exchanges this is
};

// What answers the requests. Called on the connection's I/O thread; must not block.
class HttpHandler {
 public:
  // A whole request: answer it through `exchange`, now or later (Schedule).
  virtual void OnRequest(HttpRequest request, HttpExchange exchange) = 0;
  // A request the transport will not take: malformed, or its header or body over the limits.
  // `error` says why, with the HTTP status to answer in its ErrorDetail (base/errors.h);
  // `request` has the head when it was read (no body), else only the id and time. Answer now,
  // through `exchange`; the connection closes after the answer.
  virtual void OnRefused(const absl::Status& error, const HttpRequest& request,
                         HttpExchange exchange) = 0;

 protected:
  ~HttpHandler() = default;
};

struct HttpTransportOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: an ephemeral port
  unsigned io_threads = 1;
  uint64_t max_body_bytes = 8 * 1024 * 1024;
};

class HttpTransport {
 public:
  // Binds `options.host:port` and starts `options.io_threads` threads. I/O thread i hosts lane i
  // of `engine` (the providers' HTTP engine; give it that many lanes), so that requests and their
  // upstream exchanges share a thread; null: no hosting. `handler` and `engine` must outlive the
  // transport. kUnavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpTransport>> Start(const HttpTransportOptions& options,
                                                              HttpHandler& handler,
                                                              providers::HttpClient* engine);
  // Shuts down if that has not happened yet.
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // The bound port.
  int port() const;

  // Stops accepting, lets requests in progress finish for up to `grace` (idle connections close at
  // once, busy ones after their response; responses from then on say `connection: close`), then
  // closes what is left (the handlers' OnAbandoned work runs) and joins the I/O threads.
  // Idempotent; call from any thread but an I/O thread.
  void Shutdown(absl::Duration grace);

  struct Impl;

 private:
  explicit HttpTransport(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace terse::proxy
