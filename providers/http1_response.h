// Reads HTTP/1.1 responses off a connection's bytes, one after another: the status line and
// headers, then the body as its framing says (Content-Length, chunked transfer coding, or the end
// of the connection). Socket-free, so every framing and every split of the bytes can be tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "providers/http_client.h"

namespace terse::providers {

class Http1ResponseReader {
 public:
  // Heads larger than this are refused (libcurl's limit is about the same).
  static constexpr size_t kMaxHeadBytes = 256 * 1024;

  // Starts reading the response to a request; `no_body` for a HEAD request, whose answer has none
  // whatever its headers say.
  void Begin(bool no_body = false);

  // Takes the next bytes of the connection. Returns how many it consumed: all of `data` unless the
  // response ended (done()) or the handler's OnBody stopped it (aborted()) within them. The
  // handler hears OnHead once, before any body byte, and OnBody with the decoded body bytes
  // (chunk framing removed, never empty); never OnComplete, which is for whoever owns the
  // connection to call. A malformed response is an error; the connection is then of no further
  // use.
  absl::StatusOr<size_t> Feed(std::string_view data, HttpHandler& handler);

  // The connection closed (end of stream). OK when that ends the response (a body that runs to
  // the close); an error when the response was cut short.
  absl::Status OnEndOfStream();

  // Some byte of the response arrived.
  bool started() const { return started_; }
  // The head was delivered.
  bool head_done() const { return state_ != State::kHead && state_ != State::kIdle; }
  bool done() const { return state_ == State::kDone; }
  bool aborted() const { return aborted_; }
  // After done(): the connection may carry the next exchange (HTTP/1.1 without
  // `connection: close`, or 1.0 with `keep-alive`, and a body not delimited by the close).
  bool keep_alive() const { return keep_alive_; }

 private:
  enum class State {
    kIdle,        // no response expected
    kHead,        // status line and headers
    kFixed,       // Content-Length body: remaining_ bytes left
    kChunkSize,   // the size line of the next chunk
    kChunkData,   // remaining_ bytes of the current chunk
    kChunkCrlf,   // the CRLF after a chunk's data
    kTrailers,    // trailer lines after the last chunk, up to the empty line
    kUntilClose,  // everything up to the end of the connection
    kDone,
  };

  // Parses the complete head in `text` (up to and including the empty line). 1xx heads are
  // skipped (the next head follows).
  absl::Status ParseHead(std::string_view text, HttpHandler& handler);
  // Takes bytes of one line of chunk framing off `data`: the line without its end once it is
  // complete (valid until the next call), nullopt while it is not.
  absl::StatusOr<std::optional<std::string_view>> TakeLine(std::string_view& data);
  // Acts on a complete line of chunk framing (size, the end of a chunk's data, a trailer).
  absl::Status OnFramingLine(std::string_view line);
  // Takes up to remaining_ body bytes off `data` for the handler; `after` once they are all in.
  void TakeCounted(std::string_view& data, State after, HttpHandler& handler);
  bool Deliver(std::string_view bytes, HttpHandler& handler);

  State state_ = State::kIdle;
  bool no_body_ = false;
  bool started_ = false;
  bool aborted_ = false;
  bool keep_alive_ = false;
  uint64_t remaining_ = 0;
  std::string head_;  // a head that arrived in pieces, so far
  std::string line_;  // the chunk framing line being taken (TakeLine)
  bool line_done_ = false;
  HttpResponseHead parsed_;
};

}  // namespace terse::providers
