// The properties of the providers' parsers: an upstream's HTTP/1.1 responses and SSE streams.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "providers/http1_response.h"
#include "providers/http_client.h"
#include "providers/sse.h"
#include "tests/fuzz/fuzz_targets.h"

namespace terse::fuzz {
namespace {

using providers::Http1ResponseReader;
using providers::HttpResponseHead;

// The first byte of an input says how to read the rest (its bits, for each check), the next four
// seed the pieces' sizes.
struct Layout {
  uint8_t control = 0;
  uint32_t seed = 1;
  std::string_view payload;
};

Layout Split(std::string_view input) {
  Layout layout;
  if (input.size() < 5) {
    layout.payload = input;
    return layout;
  }
  layout.control = static_cast<uint8_t>(input[0]);
  for (int i = 1; i <= 4; ++i) {
    layout.seed = layout.seed * 256 + static_cast<uint8_t>(input[static_cast<size_t>(i)]);
  }
  if (layout.seed == 0) layout.seed = 1;
  layout.payload = input.substr(5);
  return layout;
}

// `payload` cut into pieces of 1-16 bytes, now and then longer, as `seed` says.
std::vector<std::string_view> Pieces(std::string_view payload, uint32_t seed) {
  std::vector<std::string_view> pieces;
  uint32_t x = seed;
  while (!payload.empty()) {
    x ^= x << 13;  // xorshift32
    x ^= x >> 17;
    x ^= x << 5;
    size_t n = 1 + x % 16;
    if (x % 8 == 0) n += x % 512;
    n = std::min(n, payload.size());
    pieces.push_back(payload.substr(0, n));
    payload.remove_prefix(n);
  }
  return pieces;
}

std::string Head(const HttpResponseHead& head) {
  std::string out = absl::StrCat(head.status, " ", head.http_version);
  for (const auto& [name, value] : head.headers)
    absl::StrAppend(&out, " [", name, ": ", value, "]");
  return out;
}

// What one reader told its handler and its caller, as text to compare.
class ResponseLog : public providers::HttpHandler {
 public:
  void OnHead(const HttpResponseHead& head) override {
    absl::StrAppend(&log, "head ", Head(head), "\n");
    ++heads_;
  }
  bool OnBody(std::string_view bytes) override {
    if (bytes.empty()) broken = "OnBody with no bytes";
    if (heads_ == 0) broken = "OnBody before OnHead";
    body.append(bytes);
    return true;
  }
  void OnComplete(absl::Status) override { broken = "the reader called OnComplete"; }

  std::string log;
  std::string body;
  std::string broken;

 private:
  int heads_ = 0;
};

// Reads up to three responses, one after another on the same reader while each keeps the
// connection alive, from `pieces` in order.
std::string ReadResponses(const std::vector<std::string_view>& pieces, bool no_body) {
  constexpr int kMaxResponses = 3;
  Http1ResponseReader reader;
  ResponseLog handler;
  reader.Begin(no_body);
  int responses = 1;
  size_t consumed = 0;
  std::string end;
  for (std::string_view piece : pieces) {
    while (!piece.empty() && end.empty()) {
      absl::StatusOr<size_t> n = reader.Feed(piece, handler);
      if (!n.ok()) {
        end = absl::StrCat("failed ", absl::StatusCodeToString(n.status().code()));
        break;
      }
      if (*n > piece.size()) return "Feed consumed more than it was given";
      if (*n < piece.size() && !reader.done()) return "Feed left bytes before the end";
      consumed += *n;
      piece.remove_prefix(*n);
      if (!reader.done()) continue;
      absl::StrAppend(&handler.log, "body ", handler.body.size(), " ", handler.body,
                      "\ndone keep_alive=", reader.keep_alive(), "\n");
      handler.body.clear();
      if (!reader.keep_alive() || responses == kMaxResponses) {
        end = "stopped";
      } else {
        reader.Begin(no_body);
        ++responses;
      }
    }
    if (!end.empty()) break;
  }
  if (end.empty()) {
    const absl::Status eos = reader.OnEndOfStream();
    end = absl::StrCat("end of stream ", absl::StatusCodeToString(eos.code()), " body ",
                       handler.body.size(), " ", handler.body);
  }
  if (!handler.broken.empty()) return handler.broken;
  // After a failure the bytes consumed depend on where it was seen (a failing Feed reports none).
  if (absl::StartsWith(end, "failed")) return absl::StrCat(handler.log, end);
  return absl::StrCat(handler.log, end, "\nconsumed ", consumed);
}

std::string Events(const std::vector<providers::SseEvent>& events) {
  std::string out;
  for (const providers::SseEvent& e : events) {
    absl::StrAppend(&out, "[", e.event, "|", e.data, "|", e.id, "|", e.joined, "]");
  }
  return out;
}

std::string ReadEvents(const std::vector<std::string_view>& pieces, size_t limit) {
  providers::SseParser parser(limit);
  std::vector<providers::SseEvent> events;
  for (std::string_view piece : pieces) {
    const absl::Status status = parser.Feed(piece, events);
    if (!status.ok()) {
      return absl::StrCat(Events(events), " failed ", absl::StatusCodeToString(status.code()));
    }
  }
  return absl::StrCat(Events(events), " finish ", Events(parser.Finish()));
}

}  // namespace

std::string CheckHttp1Response(std::string_view input) {
  const Layout layout = Split(input);
  const bool no_body = (layout.control & 1) != 0;
  const std::string whole = ReadResponses({layout.payload}, no_body);
  const std::string pieces = ReadResponses(Pieces(layout.payload, layout.seed), no_body);
  if (whole == pieces) return "";
  return "whole:\n" + whole + "\n-- in pieces:\n" + pieces;
}

std::string CheckSse(std::string_view input) {
  const Layout layout = Split(input);
  const size_t limit = (layout.control & 1) != 0 ? 64 : 16 << 20;
  const std::string whole = ReadEvents({layout.payload}, limit);
  const std::string pieces = ReadEvents(Pieces(layout.payload, layout.seed), limit);
  if (whole == pieces) return "";
  return "whole: " + whole + "\n-- in pieces: " + pieces;
}

}  // namespace terse::fuzz
