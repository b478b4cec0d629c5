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

// Thread-safe: immutable after construction.
class Config {
 public:
  // Takes a proto that has passed validation, with defaults filled in.
  explicit Config(v1::Config proto);

  const v1::Config& proto() const { return proto_; }
  // The first route, in config order, whose `model` equals `model` or matches it as a glob
  // (fnmatch(3): `*`, `?`, `[...]`; `*` also matches `/`), or nullptr.
  const v1::Route* MatchRoute(std::string_view model) const;
  // The provider with this name, or nullptr.
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
// Values read from the environment never appear in the message (a long one is replaced by
// `<value from the environment>`); `api_key_env` names a variable whose value is never read here.
// Providers and routes whose `enabled_if_env` is not met are validated, then left out of the
// snapshot, so the rest of terse never sees them.
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigText(std::string_view yaml);
// As LoadConfigText on the file's contents; kNotFound when the file does not exist,
// kFailedPrecondition when it cannot be read (a directory, no permission).
absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path);

// A price table file (config/prices.yaml), validated; kInvalidArgument lists every problem.
// LoadConfig* do this for `tenancy.prices_file` and put the config's `tenancy.prices` over it.
absl::StatusOr<v1::PriceTable> LoadPriceTableFile(const std::string& path);

}  // namespace terse::config
