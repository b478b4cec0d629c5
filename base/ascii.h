// ASCII case folding for protocol tokens (header names, enum spellings): no locale, no table of
// our own.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/ascii.h"

namespace terse {

// `s` with A-Z turned into a-z; every other byte as it is.
inline std::string AsciiLower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

}  // namespace terse
