// ASCII helpers for protocol tokens (header names and values, enum spellings): no locale, no
// table of our own.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace terse {

// `s` with A-Z turned into a-z; every other byte as it is.
inline std::string AsciiLower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

// Whether `a` and `b` are the same but for the case of ASCII letters.
inline bool AsciiEqualsIgnoreCase(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(absl::string_view(a.data(), a.size()),
                                absl::string_view(b.data(), b.size()));
}

// `s` without the ASCII whitespace (space, tab, CR, LF, ...) at either end.
inline std::string_view AsciiTrim(std::string_view s) {
  const absl::string_view trimmed =
      absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size()));
  return std::string_view(trimmed.data(), trimmed.size());
}

}  // namespace terse
