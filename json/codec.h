// Json from text and back, with nlohmann's results at a fraction of its cost. Every call's request
// body is parsed once (and serialized only where terse built or rewrote it), and nlohmann's own
// parser and serializer were about a third of a pass-through request's instructions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/json.h"

namespace terse::json {

// The value Json::parse builds from `text` (the same types for numbers, and for a key written
// twice the last value in the first one's place), or nullopt when IsValidJson refuses the text:
// not JSON, or nested deeper than kMaxJsonDepth.
std::optional<Json> ParseJson(std::string_view text);

// Appends what value.dump(-1, ' ', false, Json::error_handler_t::replace) returns: compact JSON,
// UTF-8 as it is, invalid UTF-8 replaced by U+FFFD.
void AppendJson(const Json& value, std::string& out);
std::string DumpJson(const Json& value);

}  // namespace terse::json
