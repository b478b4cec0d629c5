// Route model patterns: an exact name or a glob with fnmatch(3) semantics. Private to config/.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace terse::config {

// True when `pattern` contains a glob metacharacter (`*`, `?`, `[` or `\`).
bool IsGlob(std::string_view pattern);

// OK, or kInvalidArgument saying what is wrong (an unterminated `[...]`, a trailing `\`).
// fnmatch itself would silently take such patterns literally, which hides typos.
absl::Status ValidateGlob(std::string_view pattern);

// fnmatch(pattern, name, 0): `*` and `?` also match `/` (model names like `org/model`).
bool GlobMatches(const std::string& pattern, const std::string& name);

}  // namespace terse::config
