// `${VAR}` references in config values. Private to config/.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace terse::config {

// Reads one environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment (getenv).
EnvLookup ProcessEnv();

struct Expanded {
  std::string text;
  // Values that came from the environment (not from defaults): callers keep them out of errors.
  std::vector<std::string> env_values;
  bool has_refs = false;  // the text contained at least one reference
};

// Expands `${VAR}` (error when VAR is unset), `${VAR:-word}` (word when VAR is unset or empty),
// `${VAR-word}` (word when VAR is unset) and `$$` (a literal `$`). `word` may itself contain
// references. Any other `$` is literal. Errors (kInvalidArgument) name the variable, never a value.
absl::StatusOr<Expanded> ExpandEnvRefs(std::string_view text, const EnvLookup& env);

// True when `name` is a valid environment variable name: [A-Za-z_][A-Za-z0-9_]*.
bool IsEnvName(std::string_view name);

}  // namespace terse::config
