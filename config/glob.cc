#include "config/glob.h"

#include <fnmatch.h>

namespace terse::config {

bool IsGlob(std::string_view pattern) {
  return pattern.find_first_of("*?[\\") != std::string_view::npos;
}

absl::Status ValidateGlob(std::string_view pattern) {
  size_t i = 0;
  while (i < pattern.size()) {
    char c = pattern[i];
    if (c == '\\') {
      if (i + 1 >= pattern.size()) {
        return absl::InvalidArgumentError("ends with a lone \"\\\"");
      }
      i += 2;
      continue;
    }
    if (c != '[') {
      ++i;
      continue;
    }
    // A bracket expression: optional `!`/`^`, a leading `]` is literal, `[:class:]` inside.
    size_t j = i + 1;
    if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) ++j;
    if (j < pattern.size() && pattern[j] == ']') ++j;
    bool closed = false;
    while (j < pattern.size()) {
      if (pattern[j] == '[' && j + 1 < pattern.size() && pattern[j + 1] == ':') {
        size_t end = pattern.find(":]", j + 2);
        if (end == std::string_view::npos) break;
        j = end + 2;
        continue;
      }
      if (pattern[j] == ']') {
        closed = true;
        break;
      }
      ++j;
    }
    if (!closed) {
      return absl::InvalidArgumentError("unterminated \"[\" at offset " + std::to_string(i));
    }
    i = j + 1;
  }
  return absl::OkStatus();
}

bool GlobMatches(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

}  // namespace terse::config
