// The validated, immutable configuration snapshot. A request keeps the snapshot it started with;
// a reload builds a new one and swaps the shared_ptr.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "terse/v1/config.pb.h"

namespace terse::config {

class Config {
 public:
  // Takes a proto that has passed validation, with defaults filled in.
  explicit Config(v1::Config proto);

  const v1::Config& proto() const { return proto_; }
  // The first route whose `model` (exact name or glob) matches, or nullptr.
  const v1::Route* MatchRoute(std::string_view model) const;
  const v1::Provider* FindProvider(std::string_view name) const;

 private:
  v1::Config proto_;
};

// One problem found in a config, with its exact path (`routes[2].provider`).
struct ConfigError {
  std::string path;
  std::string message;
  std::string ToString() const { return path.empty() ? message : path + ": " + message; }
};

// Parses YAML text, resolves ${ENV} references, fills defaults and validates. On failure the
// status is kInvalidArgument and its message lists every problem, one per line, path first.
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigText(std::string_view yaml);
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path);

}  // namespace terse::config
