// The one JSON type of the project. Ordered, so fields terse does not know reach the
// upstream in the order the client sent them.
#pragma once

#include <nlohmann/json.hpp>

namespace terse {
using Json = nlohmann::ordered_json;
}  // namespace terse
