// Loading and checking price tables.
#include "config/prices.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/suggest.h"
#include "config/yaml_proto.h"

namespace terse::config {
namespace {

// The litellm_provider names of the provider kinds terse forwards to.
const std::vector<std::string>& Providers() {
  static const auto* names =
      new std::vector<std::string>{"openai", "azure", "anthropic", "openai_compatible", "echo"};
  return *names;
}

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

// The file's text, or why not.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read " + Quoted(path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A price file, mapped and validated; problems are appended to `errors` with the file's name.
v1::PriceTable Load(const std::string& file, std::vector<ConfigError>& errors) {
  v1::PriceTable table;
  absl::StatusOr<std::string> text = ReadFile(file);
  if (!text.ok()) {
    errors.push_back({"tenancy.prices_file", std::string(text.status().message())});
    return table;
  }
  // Prices are data, not deployment settings: no ${VAR} expansion.
  EnvLookup no_env = [](const std::string&) { return std::nullopt; };
  YamlMapping mapping = MapYamlToProto(*text, no_env, table);
  std::vector<ConfigError> problems = mapping.errors;
  if (mapping.parsed) {
    if (table.as_of().empty())
      problems.push_back({"as_of", "required: the date the prices were checked"});
    for (ConfigError& e : ValidatePrices("models", table.models()))
      problems.push_back(std::move(e));
  }
  for (const ConfigError& e : problems) errors.push_back({"", file + ": " + e.ToString()});
  return table;
}

}  // namespace

std::vector<ConfigError> ValidatePrices(
    const std::string& path, const google::protobuf::Map<std::string, v1::ModelPrice>& models) {
  std::vector<ConfigError> errors;
  for (const auto& [key, price] : models) {
    const std::string entry = path + "." + key;
    const std::string& provider = price.litellm_provider();
    bool known = false;
    for (const std::string& p : Providers()) known |= p == provider;
    if (!known) {
      errors.push_back({entry + ".litellm_provider",
                        (provider.empty() ? std::string("required")
                                          : "unknown provider " + Quoted(provider) +
                                                DidYouMean(provider, Providers())) +
                            "; expected one of: " + absl::StrJoin(Providers(), ", ")});
    }
    const size_t star = key.find('*');
    if (star != std::string::npos && (key != provider + "/*")) {
      errors.push_back({entry, "the only pattern is \"<litellm_provider>/*\" (here " +
                                   Quoted(provider + "/*") + "): other models of that provider"});
    }
    auto non_negative = [&](const char* field, double value) {
      if (!(value >= 0)) {
        errors.push_back(
            {absl::StrCat(entry, ".", field), absl::StrCat(value, " must not be negative")});
      }
    };
    non_negative("input_cost_per_token", price.input_cost_per_token());
    non_negative("output_cost_per_token", price.output_cost_per_token());
    if (price.has_cache_read_input_token_cost()) {
      non_negative("cache_read_input_token_cost", price.cache_read_input_token_cost());
    }
    if (price.max_output_tokens() > 0 &&
        price.default_output_tokens() > price.max_output_tokens()) {
      errors.push_back({entry + ".default_output_tokens",
                        absl::StrCat(price.default_output_tokens(), " is above max_output_tokens ",
                                     price.max_output_tokens())});
    }
  }
  // Map order is unspecified; report in key order so messages are stable.
  std::stable_sort(errors.begin(), errors.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.path < b.path; });
  return errors;
}

std::vector<ConfigError> MergePriceFile(v1::Tenancy& tenancy) {
  std::vector<ConfigError> errors;
  v1::PriceTable table = Load(tenancy.prices_file(), errors);
  for (const auto& [key, price] : tenancy.prices()) (*table.mutable_models())[key] = price;
  *tenancy.mutable_prices() = table.models();
  tenancy.set_prices_as_of(table.as_of());
  return errors;
}

absl::StatusOr<v1::PriceTable> LoadPriceTableFile(const std::string& path) {
  std::vector<ConfigError> errors;
  v1::PriceTable table = Load(path, errors);
  if (errors.empty()) return table;
  std::vector<std::string> lines;
  for (const ConfigError& e : errors) lines.push_back(e.ToString());
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

}  // namespace terse::config
