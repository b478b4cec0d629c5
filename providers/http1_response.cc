#include "providers/http1_response.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "base/ascii.h"
#include "base/errors.h"
#include "base/status_macros.h"

namespace terse::providers {
namespace {

// Where the head in `text` ends (just after its empty line), searching from `from`; npos when it
// has not ended yet. Lines end with LF, optionally preceded by CR.
size_t HeadEnd(std::string_view text, size_t from) {
  for (size_t lf = text.find('\n', from); lf != std::string_view::npos;
       lf = text.find('\n', lf + 1)) {
    if (lf + 1 < text.size() && text[lf + 1] == '\n') return lf + 2;
    if (lf + 2 < text.size() && text[lf + 1] == '\r' && text[lf + 2] == '\n') return lf + 3;
  }
  return std::string_view::npos;
}

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

absl::Status Malformed(std::string_view what) {
  return UpstreamFailed("malformed upstream response: " + std::string(what));
}

// Whether the comma-separated header value `list` holds `token` (case-insensitive).
bool HasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view item = AsciiTrim(list.substr(0, comma));
    if (AsciiEqualsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

void Http1ResponseReader::Begin(bool no_body) {
  state_ = State::kHead;
  no_body_ = no_body;
  started_ = false;
  aborted_ = false;
  keep_alive_ = false;
  remaining_ = 0;
  head_.clear();
  line_.clear();
  line_done_ = false;
  parsed_ = HttpResponseHead();
}

bool Http1ResponseReader::Deliver(std::string_view bytes, HttpHandler& handler) {
  if (bytes.empty()) return true;
  if (!handler.OnBody(bytes)) {
    aborted_ = true;
    return false;
  }
  return true;
}

absl::Status Http1ResponseReader::ParseHead(std::string_view text, HttpHandler& handler) {
  size_t eol = text.find('\n');
  const std::string_view status_line = StripCr(text.substr(0, eol));
  // "HTTP/1.1 200 OK": the reason phrase may be empty or missing.
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line[6] != '.' ||
      status_line[8] != ' ') {
    return Malformed("bad status line");
  }
  const char major = status_line[5], minor = status_line[7];
  if (major != '1' || (minor != '0' && minor != '1')) return Malformed("not HTTP/1.x");
  int status = 0;
  const char* digits = status_line.data() + 9;
  auto [end, ec] = std::from_chars(digits, digits + 3, status);
  if (ec != std::errc() || end != digits + 3 || status < 100 ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return Malformed("bad status code");
  }
  parsed_.status = status;
  parsed_.http_version = minor == '1' ? 11 : 10;
  parsed_.headers.clear();
  parsed_.headers.reserve(16);  // a usual head's, at once rather than by doubling

  bool chunked = false, has_length = false, has_transfer_encoding = false;
  bool close_header = false, keep_alive_header = false;
  uint64_t length = 0;
  text.remove_prefix(eol + 1);
  while (!text.empty()) {
    eol = text.find('\n');
    const std::string_view line = StripCr(text.substr(0, eol));
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') return Malformed("folded header line");
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return Malformed("header without a name");
    std::string name = AsciiLower(line.substr(0, colon));
    const std::string_view value = AsciiTrim(line.substr(colon + 1));
    if (name == "content-length") {
      uint64_t n = 0;
      auto [p, err] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || err != std::errc() || p != value.data() + value.size() ||
          (has_length && n != length)) {
        return Malformed("bad content-length");
      }
      has_length = true;
      length = n;
    } else if (name == "transfer-encoding") {
      has_transfer_encoding = true;
      // The last coding decides the framing: chunked, or the body runs to the close.
      const size_t comma = value.rfind(',');
      const std::string_view last =
          AsciiTrim(comma == std::string_view::npos ? value : value.substr(comma + 1));
      chunked = AsciiEqualsIgnoreCase(last, "chunked");
    } else if (name == "connection") {
      if (HasToken(value, "close")) close_header = true;
      if (HasToken(value, "keep-alive")) keep_alive_header = true;
    }
    parsed_.headers.emplace_back(std::move(name), std::string(value));
  }

  // 1xx (100 Continue, 103 Early Hints): informational, the real head follows. 101 would switch
  // protocols, which no request of terse asks for.
  if (status < 200) {
    if (status == 101) return Malformed("unexpected 101 Switching Protocols");
    return absl::OkStatus();
  }

  // `close` ends the connection whatever else is said; HTTP/1.0 keeps it only when asked to.
  const bool close = close_header || (minor == '0' && !keep_alive_header);
  handler.OnHead(parsed_);
  if (no_body_ || status == 204 || status == 304) {
    state_ = State::kDone;
    keep_alive_ = !close;
  } else if (has_transfer_encoding) {
    // Transfer-Encoding wins over Content-Length (RFC 9112 6.3).
    state_ = chunked ? State::kChunkSize : State::kUntilClose;
    keep_alive_ = chunked && !close;
  } else if (has_length) {
    remaining_ = length;
    state_ = length == 0 ? State::kDone : State::kFixed;
    keep_alive_ = !close;
  } else {
    state_ = State::kUntilClose;
    keep_alive_ = false;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string_view>> Http1ResponseReader::TakeLine(
    std::string_view& data) {
  constexpr size_t kMaxLine = 4096;
  if (line_done_) {
    line_.clear();
    line_done_ = false;
  }
  const size_t lf = data.find('\n');
  const size_t take = lf == std::string_view::npos ? data.size() : lf + 1;
  if (line_.size() + take > kMaxLine) return Malformed("chunk framing line too long");
  line_.append(data.data(), take);
  data.remove_prefix(take);
  if (lf == std::string_view::npos) return std::nullopt;
  line_done_ = true;
  return StripCr(std::string_view(line_).substr(0, line_.size() - 1));
}

void Http1ResponseReader::TakeCounted(std::string_view& data, State after, HttpHandler& handler) {
  const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size()));
  remaining_ -= n;
  if (remaining_ == 0) state_ = after;
  if (Deliver(data.substr(0, n), handler)) data.remove_prefix(n);
}

absl::Status Http1ResponseReader::OnFramingLine(std::string_view line) {
  switch (state_) {
    case State::kChunkSize: {
      // Chunk extensions (after ';') are ignored.
      const std::string_view digits = AsciiTrim(line.substr(0, line.find(';')));
      uint64_t size = 0;
      auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
      if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size()) {
        return Malformed("bad chunk size");
      }
      remaining_ = size;
      state_ = size == 0 ? State::kTrailers : State::kChunkData;
      return absl::OkStatus();
    }
    case State::kChunkCrlf:
      if (!line.empty()) return Malformed("chunk data longer than its size");
      state_ = State::kChunkSize;
      return absl::OkStatus();
    default:  // kTrailers: skipped up to the empty line that ends the response
      if (line.empty()) state_ = State::kDone;
      return absl::OkStatus();
  }
}

absl::StatusOr<size_t> Http1ResponseReader::Feed(std::string_view data, HttpHandler& handler) {
  const size_t total = data.size();
  if (!data.empty()) started_ = true;
  while (!data.empty() && !aborted_) {
    switch (state_) {
      case State::kIdle:
      case State::kDone:
        return total - data.size();  // bytes beyond the response: not ours
      case State::kHead: {
        // The usual case, a head that arrives whole, is parsed where it lies; a head in pieces
        // is gathered first.
        size_t end;
        std::string_view head;
        if (head_.empty()) {
          end = HeadEnd(data, 0);
          if (end == std::string_view::npos) {
            if (data.size() > kMaxHeadBytes) return Malformed("response head too large");
            head_.assign(data.data(), data.size());
            data = {};
            break;
          }
          head = data.substr(0, end);
        } else {
          const size_t before = head_.size();  // at most kMaxHeadBytes
          const size_t take = std::min(data.size(), kMaxHeadBytes + 1 - before);
          head_.append(data.data(), take);
          const size_t at = HeadEnd(head_, before < 2 ? 0 : before - 2);
          if (at == std::string_view::npos) {
            if (head_.size() > kMaxHeadBytes) return Malformed("response head too large");
            data.remove_prefix(take);
            break;
          }
          end = at - before;  // how much of `data` belonged to the head
          head_.resize(at);
          head = head_;
        }
        if (head.size() > kMaxHeadBytes) return Malformed("response head too large");
        absl::Status parsed = ParseHead(head, handler);
        head_.clear();
        if (!parsed.ok()) return parsed;
        data.remove_prefix(end);
        break;  // kHead again after a 1xx, else the body's state
      }
      case State::kFixed:
        TakeCounted(data, State::kDone, handler);
        break;
      case State::kChunkSize:
      case State::kChunkCrlf:
      case State::kTrailers: {
        ASSIGN_OR_RETURN(const std::optional<std::string_view> line, TakeLine(data));
        if (line.has_value()) RETURN_IF_ERROR(OnFramingLine(*line));
        break;
      }
      case State::kChunkData:
        TakeCounted(data, State::kChunkCrlf, handler);
        break;
      case State::kUntilClose:
        if (!Deliver(data, handler)) break;
        data = {};
        break;
    }
  }
  return total - data.size();
}

absl::Status Http1ResponseReader::OnEndOfStream() {
  switch (state_) {
    case State::kUntilClose:
      state_ = State::kDone;
      keep_alive_ = false;
      return absl::OkStatus();
    case State::kDone:
    case State::kIdle:
      return absl::OkStatus();
    case State::kHead:
      return UpstreamFailed(started_ ? "the upstream closed the connection within the response head"
                                     : "the upstream closed the connection without answering");
    default:
      return UpstreamFailed("the upstream closed the connection before the response body ended");
  }
}

}  // namespace terse::providers
