#include "tests/fuzz/fuzz_targets.h"

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
#include "base/json.h"
#include "providers/http1_response.h"
#include "providers/http_client.h"
#include "providers/json_scan.h"
#include "providers/json_text.h"
#include "providers/sse.h"
#include "providers/wire_json.h"

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

std::string CheckJsonText(std::string_view text) {
  const bool valid = providers::IsValidJson(text);
  size_t reported = 0;
  if (providers::IsValidJson(text, [&](std::string_view, std::string_view) { ++reported; }) !=
      valid) {
    return "IsValidJson with on_member disagrees with IsValidJson";
  }
  const std::optional<Json> ours = providers::ParseJson(text);
  if (ours.has_value() != valid) return "ParseJson disagrees with IsValidJson";
  if (providers::NestsTooDeep(text)) return valid ? "accepted text nested too deep" : "";

  const Json theirs = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  // nlohmann takes a NUL byte between tokens for the end of the text ("{} \0junk" is {}); terse
  // holds to RFC 8259, which has no such rule, and refuses the text.
  const bool nul = text.find('\0') != std::string_view::npos;
  if (theirs.is_discarded() == valid && !(nul && !valid)) {
    return valid ? "accepted what nlohmann refuses" : "refused what nlohmann accepts";
  }
  if (!valid) return "";
  const std::string dumped = theirs.dump(-1, ' ', false, Json::error_handler_t::replace);
  const std::string ours_dumped = providers::DumpJson(*ours);
  if (ours_dumped != dumped) return "values differ: " + ours_dumped + " against " + dumped;
  const std::optional<Json> again = providers::ParseJson(dumped);
  if (!again.has_value() || providers::DumpJson(*again) != dumped) {
    return "a dumped value does not parse back to itself: " + dumped;
  }

  bool parts_valid = true;
  size_t parts = 0;
  if (ours->is_object()) {
    providers::ForEachMember(text, [&](std::string_view, std::string_view value) {
      ++parts;
      parts_valid = parts_valid && providers::IsValidJson(value);
    });
    // A key written twice is one member of the value but two of the text.
    if (parts < ours->size() || parts != reported) return "ForEachMember missed members";
  } else if (ours->is_array()) {
    providers::ForEachElement(text, [&](std::string_view value) {
      ++parts;
      parts_valid = parts_valid && providers::IsValidJson(value);
    });
    if (parts != ours->size()) return "ForEachElement missed elements";
  }
  if (!parts_valid) return "a member or element handed out is not valid JSON";
  return "";
}

std::string CheckWireJson(std::string_view input) {
  constexpr size_t kScript = 6;  // bytes: one edit each
  if (input.size() < kScript) return "";
  const std::string_view script = input.substr(0, kScript);
  const std::string text(input.substr(kScript));
  std::optional<providers::WireJson> checked = providers::WireJson::FromUncheckedText(text);
  const std::optional<Json> parsed = providers::ParseJson(text);
  if (checked.has_value() != parsed.has_value())
    return "FromUncheckedText disagrees with ParseJson";
  if (!parsed.has_value() || !parsed->is_object()) return "";
  providers::WireJson given = providers::WireJson::FromParsedText(text, *parsed);
  Json expected = *parsed;

  // Keys of every kind: plain, one that needs escapes, non-ASCII, empty; values of every type.
  const std::string_view keys[] = {"a", "model", "stream", "b\"c", "\u00e9", "", "messages", "x"};
  const Json values[] = {1,    "s", Json::object(),  Json::array({1, "two"}), nullptr,
                         true, 2.5, Json{{"k", "v"}}};
  std::string done;
  for (const char op : script) {
    const uint8_t b = static_cast<uint8_t>(op);
    const std::string key(keys[b % 8]);
    const Json& value = values[(b >> 3) % 8];
    switch (b >> 6) {
      case 0:
      case 1:
        expected[key] = value;
        for (providers::WireJson* wire : {&*checked, &given}) wire->SetMember(key, value);
        absl::StrAppend(&done, " set ", key, "=", value.dump());
        break;
      case 2:
        expected.erase(key);
        for (providers::WireJson* wire : {&*checked, &given}) wire->EraseMember(key);
        absl::StrAppend(&done, " erase ", key);
        break;
      default: {
        Json next = expected;  // one member set, another removed
        next[key] = value;
        next.erase(std::string(keys[(b + 3) % 8]));
        expected = next;
        for (providers::WireJson* wire : {&*checked, &given}) wire->SetMembers(next);
        absl::StrAppend(&done, " set members ", next.dump());
        break;
      }
    }
    // Compared as nlohmann compares (1 equals 1.0): setting a member to a value equal to the
    // one it has leaves its text as written.
    for (providers::WireJson* wire : {&*checked, &given}) {
      const std::optional<Json> reread = providers::ParseJson(wire->text());
      if (!reread.has_value()) return "an edited text is not JSON:" + done + " -> " + wire->text();
      if (*reread != expected) {
        return "an edited text differs from the edited value:" + done + " -> " + wire->text();
      }
      if (wire->json() != expected) return "an edited value differs:" + done;
      std::optional<std::string_view> member;
      if (wire->FindMemberText(key, &member)) {
        if (member.has_value() != expected.contains(key)) return "FindMemberText:" + done;
        if (member.has_value()) {
          const std::optional<Json> member_value = providers::ParseJson(*member);
          if (!member_value.has_value() || *member_value != expected[key]) {
            return "FindMemberText's text is not the member's value:" + done;
          }
        }
      }
    }
  }
  return "";
}

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
