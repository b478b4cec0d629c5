// Loading: YAML -> proto (yaml_proto), defaults and validation (validate), then the immutable
// snapshot with route matching.
#include "config/config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "config/env_refs.h"
#include "config/glob.h"
#include "config/prices.h"
#include "config/validate.h"
#include "config/yaml_proto.h"

namespace terse::config {
namespace {

// Whether one path is the other or lies inside it (`routes[1]` and `routes[1].compression.rate`).
bool Overlaps(const std::string& a, const std::string& b) {
  auto inside = [](const std::string& outer, const std::string& inner) {
    return inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
           (inner[outer.size()] == '.' || inner[outer.size()] == '[');
  };
  return a == b || inside(a, b) || inside(b, a);
}

// Values from the environment this long may be secrets; shorter ones (ports, provider names)
// would make messages unreadable if hidden and are not worth hiding.
constexpr size_t kMinSecretLength = 8;

std::string Redact(std::string text, const std::vector<std::string>& env_values) {
  for (const std::string& value : env_values) {
    if (value.size() < kMinSecretLength) continue;
    text = absl::StrReplaceAll(text, {{value, "<value from the environment>"}});
  }
  return text;
}

// Sorts problems by where their path (or its nearest mentioned ancestor) appears in the document;
// problems about things the document never mentions go last. Stable: same place, same order.
void SortByDocumentOrder(const std::map<std::string, size_t>& order,
                         std::vector<ConfigError>& errors) {
  auto position = [&](std::string path) -> size_t {
    while (!path.empty()) {
      if (auto it = order.find(path); it != order.end()) return it->second;
      size_t cut = path.find_last_of(".[");
      path.resize(cut == std::string::npos ? 0 : cut);
    }
    return order.size();
  };
  std::stable_sort(errors.begin(), errors.end(), [&](const ConfigError& a, const ConfigError& b) {
    return position(a.path) < position(b.path);
  });
}

absl::StatusOr<std::shared_ptr<const Config>> Load(std::string_view yaml, const EnvLookup& env) {
  v1::Config proto;
  YamlMapping mapping = MapYamlToProto(yaml, env, proto);
  std::vector<ConfigError> errors = mapping.errors;
  if (mapping.parsed) {
    FillDefaults(mapping.present, proto);
    // A value that failed to map is missing from the proto; do not report it twice.
    for (ConfigError& e : ValidateConfig(proto, env)) {
      bool duplicate = false;
      for (const ConfigError& m : mapping.errors) duplicate |= Overlaps(m.path, e.path);
      if (!duplicate) errors.push_back(std::move(e));
    }
    if (proto.has_tenancy()) {
      for (ConfigError& e : MergePriceFile(*proto.mutable_tenancy())) errors.push_back(std::move(e));
    }
  }
  if (!errors.empty()) {
    SortByDocumentOrder(mapping.document_order, errors);
    std::vector<std::string> lines;
    for (const ConfigError& e : errors) lines.push_back(Redact(e.ToString(), mapping.env_values));
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }
  DropDisabled(env, proto);
  return std::make_shared<const Config>(std::move(proto));
}

}  // namespace

Config::Config(v1::Config proto) : proto_(std::move(proto)) {}

const v1::Route* Config::MatchRoute(std::string_view model) const {
  std::string name;  // fnmatch needs a NUL-terminated copy; made only when a glob is tried
  for (const v1::Route& route : proto_.routes()) {
    if (route.model() == model) return &route;
    if (!IsGlob(route.model())) continue;
    if (name.empty()) name.assign(model);
    if (GlobMatches(route.model(), name)) return &route;
  }
  return nullptr;
}

const v1::Provider* Config::FindProvider(std::string_view name) const {
  for (const v1::Provider& provider : proto_.providers()) {
    if (provider.name() == name) return &provider;
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigText(std::string_view yaml) {
  return Load(yaml, ProcessEnv());
}

absl::StatusOr<std::shared_ptr<const Config>> LoadConfigFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError("cannot read config file \"" + path +
                                         "\": it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    std::string message = "cannot read config file \"" + path + "\": " + std::strerror(error);
    if (error == ENOENT) return absl::NotFoundError(message);
    return absl::FailedPreconditionError(message);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::FailedPreconditionError("cannot read config file \"" + path +
                                         "\": " + std::strerror(errno));
  }
  return Load(text.str(), ProcessEnv());
}

}  // namespace terse::config
