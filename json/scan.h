// Checking and looking into JSON text without building a value: what the pass-through path needs
// to relay an upstream's answer as received (is it valid, does it hold `error`, where is `usage`)
// at a fraction of the cost of parsing it into a Json.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/functional/function_ref.h"

namespace terse::json {

// How deep arrays and objects may nest in the JSON terse reads. Json::parse has no limit, but
// much of what handles a parsed value recurses (nlohmann's serializer, the proto conversion of
// the gRPC face), and a request of 100,000 nested arrays took the process down.
inline constexpr size_t kMaxJsonDepth = 512;

// True when `text` is exactly one JSON value that Json::parse accepts, nested at most
// kMaxJsonDepth deep: the same grammar (RFC 8259, surrounding whitespace allowed, a leading UTF-8
// byte order mark skipped), the same checks on strings (UTF-8, control characters, escapes,
// surrogate pairs) and numbers (finite doubles). One difference: Json::parse takes a NUL byte
// between tokens for the end of the text (it accepts `{} \0junk` as `{}`); RFC 8259 has no such
// rule, and neither has this.
bool IsValidJson(std::string_view text);

// Whether IsValidJson refuses `text` for nesting deeper than kMaxJsonDepth (what precedes that
// point is valid; what follows it is not looked at): for saying so in an error.
bool NestsTooDeep(std::string_view text);

// The same check, telling `on_member` each member of a top-level object as it is checked (`key`
// as written between its quotes, `value` its text), in order: one pass where IsValidJson followed
// by ForEachMember would take two. The members reported before a failure mean nothing.
bool IsValidJson(std::string_view text,
                 absl::FunctionRef<void(std::string_view key, std::string_view value)> on_member);

// For text that IsValidJson accepted (anything else gives unspecified, but memory-safe, results):
// calls `fn` with each member of the top-level object in order, `key` as written between its
// quotes (escapes not decoded) and `value` the member's text. False when the text is not an
// object.
bool ForEachMember(std::string_view object,
                   absl::FunctionRef<void(std::string_view key, std::string_view value)> fn);

// The same for the elements of a top-level array. False when the text is not an array.
bool ForEachElement(std::string_view array, absl::FunctionRef<void(std::string_view value)> fn);

}  // namespace terse::json
