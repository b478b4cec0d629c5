// Defaults and validation of a config proto mapped from YAML. Private to config/.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/env_refs.h"
#include "terse/v1/config.pb.h"

namespace terse::config {

// Fills every default documented in config.proto into the fields whose path is not in
// `present` (the paths the YAML set), so an explicit `port: 0` stays 0.
void FillDefaults(const std::set<std::string>& present, v1::Config& config);

// Every problem of a defaulted config, each with its YAML path. Entries disabled by
// `enabled_if_env` are validated too (they may be enabled on another machine), but only enabled
// ones may be referenced by enabled routes and compete for unique route names.
std::vector<ConfigError> ValidateConfig(const v1::Config& config, const EnvLookup& env);

// Whether an `enabled_if_env` value (`NAME`, `!NAME` or empty) enables its entry.
bool IsEnabled(const std::string& enabled_if_env, const EnvLookup& env);

// Removes the providers and routes that `enabled_if_env` disables.
void DropDisabled(const EnvLookup& env, v1::Config& config);

}  // namespace terse::config
