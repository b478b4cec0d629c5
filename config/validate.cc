// The defaults and rules of the config schema. Messages follow one pattern, `path: what is wrong`,
// and quote what the user wrote so the line is enough to find and fix it.
#include "config/validate.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "config/glob.h"
#include "config/prices.h"
#include "config/suggest.h"
#include "config/yaml_proto.h"

namespace terse::config {
namespace {

constexpr uint32_t kMaxPort = 65535;

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

std::string Index(const std::string& field, int i) { return absl::StrCat(field, "[", i, "]"); }

bool AllOf(const std::string& s, const char* alphabet) {
  return s.find_first_not_of(alphabet) == std::string::npos;
}

// The shapes tenancy/keys.h makes: a 12-character public id, and `sha256$<salt>$<digest>`.
bool IsKeyIdShape(const std::string& id) {
  return id.size() == 12 && AllOf(id, "abcdefghijklmnopqrstuvwxyz0123456789");
}

bool IsKeyHashShape(const std::string& hash) {
  const std::string scheme = "sha256$";
  if (hash.size() != scheme.size() + 32 + 1 + 64 || hash.compare(0, scheme.size(), scheme) != 0 ||
      hash[scheme.size() + 32] != '$') {
    return false;
  }
  return AllOf(hash.substr(scheme.size(), 32), "0123456789abcdef") &&
         AllOf(hash.substr(scheme.size() + 33), "0123456789abcdef");
}

void FillListener(const std::set<std::string>& present, const std::string& path, uint32_t port,
                  v1::Listener& listener) {
  if (!present.count(path + ".host")) listener.set_host("127.0.0.1");
  if (!present.count(path + ".port")) listener.set_port(port);
}

void FillProvider(const std::set<std::string>& present, const std::string& path, v1::Provider& p) {
  auto unset = [&](const char* field) { return !present.count(absl::StrCat(path, ".", field)); };
  if (unset("timeouts.connect_ms")) p.mutable_timeouts()->set_connect_ms(5000);
  if (unset("timeouts.first_byte_ms")) p.mutable_timeouts()->set_first_byte_ms(60000);
  if (unset("timeouts.total_ms")) p.mutable_timeouts()->set_total_ms(600000);
  if (unset("retry.max_attempts")) p.mutable_retry()->set_max_attempts(3);
  if (unset("retry.initial_backoff_ms")) p.mutable_retry()->set_initial_backoff_ms(200);
  if (unset("retry.max_backoff_ms")) p.mutable_retry()->set_max_backoff_ms(5000);
  // base_url includes the API version path; adapters append the endpoint (`/chat/completions`).
  if (unset("base_url")) {
    if (p.kind() == v1::Provider::OPENAI) p.set_base_url("https://api.openai.com/v1");
    if (p.kind() == v1::Provider::ANTHROPIC) p.set_base_url("https://api.anthropic.com/v1");
  }
  if (unset("api_version")) {
    if (p.kind() == v1::Provider::ANTHROPIC) p.set_api_version("2023-06-01");
    if (p.kind() == v1::Provider::AZURE_OPENAI) p.set_api_version("2024-10-21");
  }
}

void FillCompression(const std::set<std::string>& present, const std::string& path,
                     v1::Compression& c) {
  auto unset = [&](const char* field) { return !present.count(absl::StrCat(path, ".", field)); };
  if (unset("segment_tokens")) c.set_segment_tokens(200);
  if (unset("timeout_ms")) c.set_timeout_ms(2000);
  if (unset("on_error")) c.set_on_error("forward_uncompressed");
  // The recipe `terse eval` measured best (compressor::RecommendedChatPolicy, held equal to these
  // by proxy's tests).
  if (unset("question_aware")) c.set_question_aware(true);
  if (unset("reorder")) c.set_reorder("rank");
  if (unset("dynamic_ratio")) c.set_dynamic_ratio(0.3);
  if (unset("tool_messages")) c.set_tool_messages("keep");
  if (unset("roles")) {
    c.clear_roles();
    for (const char* role : {"system", "user", "assistant"}) c.add_roles(role);
  }
  if (unset("context_budget_k")) c.set_context_budget_k(2.5);
}

void FillTenancy(const std::set<std::string>& present, const v1::Limits& limits, v1::Tenancy& t) {
  auto unset = [&](const char* field) { return !present.count(absl::StrCat("tenancy.", field)); };
  if (unset("data_dir")) t.set_data_dir("data");
  if (unset("prices_file")) t.set_prices_file("config/prices.yaml");
  if (unset("default_output_tokens")) t.set_default_output_tokens(1024);
  // A hold must outlive its request, or a slow answer would free budget it still needs.
  if (unset("hold_lease_ms")) {
    t.set_hold_lease_ms(static_cast<uint32_t>(
        std::min<uint64_t>(uint64_t{limits.request_timeout_ms()} + 60000, UINT32_MAX)));
  }
  if (unset("time_zone")) t.set_time_zone("UTC");
  if (unset("store.kind")) t.mutable_store()->set_kind(v1::TenancyStore::SQLITE);
  if (unset("store.fail_mode")) t.mutable_store()->set_fail_mode("closed");
  if (unset("durability")) t.set_durability("process");
}

// Collects problems; every check appends and carries on.
class Validator {
 public:
  Validator(const v1::Config& config, const EnvLookup& env) : config_(config), env_(env) {}

  std::vector<ConfigError> Run() {
    Listeners();
    Providers();
    Routes();
    Limits();
    Compressor();
    OneOf("logging.level", config_.logging().level(), {"debug", "info", "warn", "error"});
    if (config_.has_tenancy()) Tenancy();
    return std::move(errors_);
  }

 private:
  void Listeners() {
    const v1::Listeners& l = config_.listeners();
    Listener("listeners.http", l.http());
    Listener("listeners.grpc", l.grpc());
    if (l.http().port() != 0 && l.http().port() == l.grpc().port() &&
        l.http().host() == l.grpc().host()) {
      Add("listeners.grpc.port",
          absl::StrCat(l.grpc().port(), " is already used by listeners.http"));
    }
  }

  void Listener(const std::string& path, const v1::Listener& l) {
    if (l.host().empty()) Add(path + ".host", "required");
    if (l.port() > kMaxPort) {
      Add(path + ".port", absl::StrCat(l.port(), " is not a valid port (0 to 65535)"));
    }
  }

  void Providers() {
    std::map<std::string, int> first_index;
    for (int i = 0; i < config_.providers_size(); ++i) {
      const v1::Provider& p = config_.providers(i);
      const std::string path = Index("providers", i);
      if (p.name().empty()) {
        Add(path + ".name", "required");
      } else if (auto [it, inserted] = first_index.emplace(p.name(), i); !inserted) {
        Add(path + ".name", absl::StrCat("duplicate provider name ", Quoted(p.name()), " (also ",
                                         Index("providers", it->second), ")"));
      }
      if (p.kind() == v1::Provider::KIND_UNSPECIFIED) {
        Add(path + ".kind",
            "required; expected one of: " +
                absl::StrJoin(EnumYamlNames(*v1::Provider::Kind_descriptor()), ", "));
      }
      const bool needs_base_url =
          p.kind() == v1::Provider::AZURE_OPENAI || p.kind() == v1::Provider::OPENAI_COMPATIBLE;
      if (p.base_url().empty()) {
        if (needs_base_url) {
          Add(path + ".base_url",
              "required for kind " +
                  EnumYamlName(*v1::Provider::Kind_descriptor()->FindValueByNumber(p.kind())));
        }
      } else if (p.base_url().rfind("http://", 0) != 0 && p.base_url().rfind("https://", 0) != 0) {
        Add(path + ".base_url", "expected an http:// or https:// URL, got " + Quoted(p.base_url()));
      }
      // A common slip is pasting the key itself here; never echo the value back.
      if (!p.api_key_env().empty() && !IsEnvName(p.api_key_env())) {
        Add(path + ".api_key_env",
            "expected the name of an environment variable (letters, digits and _), not a key "
            "(value not shown)");
      }
      EnabledIfEnv(path, p.enabled_if_env());
      const v1::Timeouts& t = p.timeouts();
      if (t.total_ms() != 0 && t.connect_ms() > t.total_ms()) {
        Add(path + ".timeouts.connect_ms",
            absl::StrCat(t.connect_ms(), " is above total_ms ", t.total_ms()));
      }
      if (t.total_ms() != 0 && t.first_byte_ms() > t.total_ms()) {
        Add(path + ".timeouts.first_byte_ms",
            absl::StrCat(t.first_byte_ms(), " is above total_ms ", t.total_ms()));
      }
      const v1::RetryPolicy& r = p.retry();
      if (r.max_attempts() < 1) Add(path + ".retry.max_attempts", "must be at least 1");
      if (r.initial_backoff_ms() > r.max_backoff_ms()) {
        Add(path + ".retry.initial_backoff_ms",
            absl::StrCat(r.initial_backoff_ms(), " is above max_backoff_ms ", r.max_backoff_ms()));
      }
      all_providers_.push_back(p.name());
      provider_enabled_[p.name()] = IsEnabled(p.enabled_if_env(), env_);
      provider_condition_[p.name()] = p.enabled_if_env();
    }
  }

  void Routes() {
    if (config_.routes_size() == 0) {
      Add("routes", "at least one route is required");
      return;
    }
    std::map<std::string, int> first_index;
    bool any_enabled = false;
    for (int i = 0; i < config_.routes_size(); ++i) {
      const v1::Route& r = config_.routes(i);
      const std::string path = Index("routes", i);
      const bool enabled = IsEnabled(r.enabled_if_env(), env_);
      any_enabled |= enabled;
      all_routes_.push_back(r.name());
      EnabledIfEnv(path, r.enabled_if_env());
      if (r.model().empty()) {
        Add(path + ".model", "required (an exact model name or a glob such as \"gpt-4o*\")");
      } else if (absl::Status s = ValidateGlob(r.model()); !s.ok()) {
        Add(path + ".model",
            absl::StrCat("invalid glob ", Quoted(r.model()), ": ", std::string(s.message())));
      }
      if (enabled && !r.name().empty()) {
        if (auto [it, inserted] = first_index.emplace(r.name(), i); !inserted) {
          Add(path + ".name", absl::StrCat("duplicate route name ", Quoted(r.name()), " (also ",
                                           Index("routes", it->second), ")"));
        }
      }
      if (r.provider().empty()) {
        Add(path + ".provider", "required");
      } else {
        ProviderReference(path + ".provider", r.provider(), enabled);
      }
      std::set<std::string> seen;
      for (int j = 0; j < r.fallbacks_size(); ++j) {
        const std::string fallback_path = Index(path + ".fallbacks", j);
        const std::string& name = r.fallbacks(j);
        if (name == r.provider()) {
          Add(fallback_path, Quoted(name) + " is the route's own provider");
        } else if (!seen.insert(name).second) {
          Add(fallback_path, Quoted(name) + " is listed twice");
        } else {
          ProviderReference(fallback_path, name, enabled);
        }
      }
      Compression(path + ".compression", r.compression());
    }
    if (!any_enabled) {
      Add("routes", "every route is disabled by its enabled_if_env; at least one must remain");
    }
  }

  void ProviderReference(const std::string& path, const std::string& name, bool route_enabled) {
    auto it = provider_enabled_.find(name);
    if (it == provider_enabled_.end()) {
      Add(path, "unknown provider " + Quoted(name) + DidYouMean(name, all_providers_));
    } else if (route_enabled && !it->second) {
      Add(path,
          absl::StrCat("provider ", Quoted(name), " is disabled by its enabled_if_env (",
                       provider_condition_[name], "); give this route the same enabled_if_env"));
    }
  }

  void Compression(const std::string& path, const v1::Compression& c) {
    if (c.has_rate()) Fraction(path + ".rate", c.rate());
    if (c.has_target_tokens() && c.target_tokens() == 0) {
      Add(path + ".target_tokens", "must be at least 1");
    }
    if (c.has_rate() && c.has_target_tokens()) {
      Add(path, "rate and target_tokens are both set; set only one");
    }
    if (c.rate_bands_size() > 0 && c.has_target_tokens()) {
      Add(path, "rate_bands and target_tokens are both set; set only one");
    }
    for (int j = 0; j < c.rate_bands_size(); ++j) {
      const std::string band = Index(path + ".rate_bands", j);
      Fraction(band + ".rate", c.rate_bands(j).rate());
      if (j > 0 && c.rate_bands(j).min_prompt_tokens() <= c.rate_bands(j - 1).min_prompt_tokens()) {
        Add(band + ".min_prompt_tokens",
            absl::StrCat("bands must be in ascending order of min_prompt_tokens, but ",
                         c.rate_bands(j).min_prompt_tokens(), " follows ",
                         c.rate_bands(j - 1).min_prompt_tokens()));
      }
    }
    if (c.enabled() && !c.has_rate() && !c.has_target_tokens() && c.rate_bands_size() == 0) {
      Add(path, "compression is enabled but none of rate, target_tokens or rate_bands is set");
    }
    for (int j = 0; j < c.roles_size(); ++j) {
      OneOf(Index(path + ".roles", j), c.roles(j),
            {"system", "developer", "user", "assistant", "tool"});
    }
    OneOf(path + ".reorder", c.reorder(), {"original", "rank", "two_stage"});
    OneOf(path + ".on_error", c.on_error(), {"forward_uncompressed", "fail"});
    OneOf(path + ".tool_messages", c.tool_messages(), {"keep", "compress_json"});
    if (!c.target_tokenizer().empty()) {
      OneOf(path + ".target_tokenizer", c.target_tokenizer(), {"cl100k_base", "o200k_base"});
    }
    if (c.segment_tokens() == 0) Add(path + ".segment_tokens", "must be at least 1");
    if (c.timeout_ms() == 0) Add(path + ".timeout_ms", "must be at least 1");
    if (c.dynamic_ratio() < 0 || c.dynamic_ratio() >= 1) {
      Add(path + ".dynamic_ratio", absl::StrCat(c.dynamic_ratio(), " is out of range [0, 1)"));
    }
    if (c.has_context_budget_k() && c.context_budget_k() <= 0) {
      Add(path + ".context_budget_k", absl::StrCat(c.context_budget_k(), " must be positive"));
    }
    for (int j = 0; j < c.force_tokens_size(); ++j) {
      if (c.force_tokens(j).empty()) Add(Index(path + ".force_tokens", j), "must not be empty");
    }
    if (!c.document_delimiter().empty())
      Regex(path + ".document_delimiter", c.document_delimiter());
  }

  void Limits() {
    if (config_.limits().max_body_bytes() == 0) {
      Add("limits.max_body_bytes", "must be at least 1");
    }
  }

  void Compressor() {
    const v1::CompressorSettings& c = config_.compressor();
    if (c.model_dir().empty()) Add("compressor.model_dir", "required");
    const std::string& device = c.device();
    bool cuda_index = device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
                      device.find_first_not_of("0123456789", 5) == std::string::npos;
    if (!cuda_index) OneOf("compressor.device", device, {"auto", "cpu", "cuda", "cuda:N"});
    if (c.max_batch_size() == 0) Add("compressor.max_batch_size", "must be at least 1");
    if (c.queue_capacity() == 0) Add("compressor.queue_capacity", "must be at least 1");
    if (c.workers() == 0) Add("compressor.workers", "must be at least 1");
  }

  void Tenancy() {
    const v1::Tenancy& t = config_.tenancy();
    std::map<std::string, std::string> tenant_paths, key_paths;  // id -> where first seen
    for (int i = 0; i < t.tenants_size(); ++i) {
      const v1::Tenant& tenant = t.tenants(i);
      const std::string path = Index("tenancy.tenants", i);
      if (tenant.id().empty()) {
        Add(path + ".id", "required");
      } else if (!IsTenantId(tenant.id())) {
        Add(path + ".id", "expected 1 to 64 of a-z, 0-9, _ and -, got " + Quoted(tenant.id()));
      } else if (auto [it, inserted] = tenant_paths.emplace(tenant.id(), path); !inserted) {
        Add(path + ".id",
            "duplicate tenant id " + Quoted(tenant.id()) + " (also " + it->second + ")");
      }
      for (int j = 0; j < tenant.keys_size(); ++j) {
        const v1::TenantKey& key = tenant.keys(j);
        const std::string key_path = Index(path + ".keys", j);
        if (!IsKeyIdShape(key.id())) {
          Add(key_path + ".id",
              "expected the key's public id (12 of a-z and 0-9), got " + Quoted(key.id()));
        } else if (auto [it, inserted] = key_paths.emplace(key.id(), key_path); !inserted) {
          Add(key_path + ".id",
              "duplicate key id " + Quoted(key.id()) + " (also " + it->second + ")");
        }
        // Never echo the value: a pasted key would land in logs.
        if (!IsKeyHashShape(key.hash())) {
          Add(key_path + ".hash",
              "expected sha256$<32 hex>$<64 hex> as the key generator prints it, not the key "
              "itself (value not shown)");
        }
        RateLimits(key_path + ".limits", key.limits());
        for (int b = 0; b < key.budgets_size(); ++b) {
          Budget(Index(key_path + ".budgets", b), key.budgets(b));
        }
      }
      for (int j = 0; j < tenant.allowed_routes_size(); ++j) {
        RouteName(Index(path + ".allowed_routes", j), tenant.allowed_routes(j));
      }
      for (int j = 0; j < tenant.allowed_models_size(); ++j) {
        const std::string& model = tenant.allowed_models(j);
        if (absl::Status s = ValidateGlob(model); model.empty() || !s.ok()) {
          Add(Index(path + ".allowed_models", j),
              model.empty() ? "must not be empty"
                            : "invalid glob " + Quoted(model) + ": " + std::string(s.message()));
        }
      }
      const v1::TenantCompression& c = tenant.compression();
      if (c.has_rate()) Fraction(path + ".compression.rate", c.rate());
      if (!c.policy().empty()) RouteName(path + ".compression.policy", c.policy());
      if (c.has_rate() && !c.policy().empty()) {
        Add(path + ".compression", "policy and rate are both set; set only one");
      }
      RateLimits(path + ".limits", tenant.limits());
      for (int b = 0; b < tenant.budgets_size(); ++b) {
        Budget(Index(path + ".budgets", b), tenant.budgets(b));
      }
    }
    if (t.data_dir().empty()) Add("tenancy.data_dir", "must not be empty");
    if (!t.admin_key_env().empty() && !IsEnvName(t.admin_key_env())) {
      Add("tenancy.admin_key_env",
          "expected the name of an environment variable (letters, digits and _), not a key "
          "(value not shown)");
    }
    TimeZone("tenancy.time_zone", t.time_zone());
    if (t.hold_lease_ms() == 0) Add("tenancy.hold_lease_ms", "must be at least 1");
    if (t.default_output_tokens() == 0) Add("tenancy.default_output_tokens", "must be at least 1");
    const v1::TenancyStore& store = t.store();
    OneOf("tenancy.store.fail_mode", store.fail_mode(), {"open", "closed"});
    OneOf("tenancy.durability", t.durability(), {"process", "power"});
    if (store.kind() == v1::TenancyStore::REDIS_POSTGRES) {
      if (store.redis_url().rfind("rediss://", 0) == 0) {
        Add("tenancy.store.redis_url", "rediss:// (TLS) is not available in this build");
      } else if (store.redis_url().rfind("redis://", 0) != 0 ||
                 store.redis_url().size() == strlen("redis://")) {
        Add("tenancy.store.redis_url",
            "expected a redis://host[:port][/db] URL for kind "
            "redis_postgres");
      }
      if (!IsEnvName(store.postgres_url_env())) {
        Add("tenancy.store.postgres_url_env",
            "required for kind redis_postgres: the name of the environment variable holding the "
            "PostgreSQL connection string");
      }
    }
    for (ConfigError& e : ValidatePrices("tenancy.prices", t.prices())) {
      errors_.push_back(std::move(e));
    }
  }

  void RateLimits(const std::string& path, const v1::RateLimits& limits) {
    constexpr uint64_t kMaxTokensPerMinute = 1'000'000'000'000'000;  // keeps GCRA in range
    if (limits.tokens_per_minute() > kMaxTokensPerMinute) {
      Add(path + ".tokens_per_minute",
          absl::StrCat(limits.tokens_per_minute(), " is out of range (at most 1e15)"));
    }
  }

  void Budget(const std::string& path, const v1::Budget& budget) {
    if (budget.period().empty()) {
      Add(path + ".period", "required; expected one of: day, week, month, total");
    } else {
      OneOf(path + ".period", budget.period(), {"day", "week", "month", "total"});
    }
    // Micro-dollars in an int64 stop near 9.2e12 USD.
    if (!(budget.usd() > 0 && budget.usd() <= 1e12)) {
      Add(path + ".usd", absl::StrCat(budget.usd(),
                                      " is out of range; expected more than 0 "
                                      "and at most 1e12"));
    }
    if (!budget.time_zone().empty()) TimeZone(path + ".time_zone", budget.time_zone());
  }

  void TimeZone(const std::string& path, const std::string& name) {
    absl::TimeZone zone;
    if (!absl::LoadTimeZone(name, &zone)) {
      Add(path, "unknown time zone " + Quoted(name) +
                    " (an IANA name such as \"Europe/Paris\" or \"UTC\"; is tzdata installed?)");
    }
  }

  void RouteName(const std::string& path, const std::string& name) {
    for (const std::string& route : all_routes_) {
      if (route == name) return;
    }
    Add(path, "unknown route " + Quoted(name) + DidYouMean(name, all_routes_));
  }

  static bool IsTenantId(const std::string& id) {
    return !id.empty() && id.size() <= 64 &&
           id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") == std::string::npos;
  }

  // The regex is compiled as the compressor will compile it: PCRE2, UTF-8.
  void Regex(const std::string& path, const std::string& pattern) {
    int error_code = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF, &error_code, &offset, nullptr);
    if (code != nullptr) {
      pcre2_code_free(code);
      return;
    }
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(error_code, buffer, sizeof(buffer));
    Add(path, absl::StrCat("invalid regex ", Quoted(pattern), " at offset ", offset, ": ",
                           reinterpret_cast<const char*>(buffer)));
  }

  void Fraction(const std::string& path, double value) {
    if (!(value > 0 && value <= 1)) {
      Add(path, absl::StrCat(value, " is out of range; expected a fraction in (0, 1]"));
    }
  }

  void EnabledIfEnv(const std::string& path, const std::string& value) {
    if (value.empty()) return;
    if (!IsEnvName(value[0] == '!' ? value.substr(1) : value)) {
      Add(path + ".enabled_if_env",
          "expected NAME or !NAME, the name of an environment variable (value not shown)");
    }
  }

  void OneOf(const std::string& path, const std::string& value,
             const std::vector<std::string>& allowed) {
    for (const std::string& a : allowed) {
      if (value == a) return;
    }
    Add(path, "unknown value " + Quoted(value) + DidYouMean(value, allowed) +
                  "; expected one of: " + absl::StrJoin(allowed, ", "));
  }

  void Add(std::string path, std::string message) {
    errors_.push_back(ConfigError{std::move(path), std::move(message)});
  }

  const v1::Config& config_;
  const EnvLookup& env_;
  std::vector<ConfigError> errors_;
  std::vector<std::string> all_providers_;
  std::vector<std::string> all_routes_;
  std::map<std::string, bool> provider_enabled_;
  std::map<std::string, std::string> provider_condition_;
};

}  // namespace

void FillDefaults(const std::set<std::string>& present, v1::Config& config) {
  FillListener(present, "listeners.http", 8080, *config.mutable_listeners()->mutable_http());
  FillListener(present, "listeners.grpc", 50051, *config.mutable_listeners()->mutable_grpc());
  for (int i = 0; i < config.providers_size(); ++i) {
    FillProvider(present, Index("providers", i), *config.mutable_providers(i));
  }
  for (int i = 0; i < config.routes_size(); ++i) {
    v1::Route& r = *config.mutable_routes(i);
    if (r.name().empty()) r.set_name(r.model());  // metrics and logs name routes
    FillCompression(present, Index("routes", i) + ".compression", *r.mutable_compression());
  }
  v1::Limits& limits = *config.mutable_limits();
  if (!present.count("limits.max_body_bytes")) limits.set_max_body_bytes(8 << 20);
  if (!present.count("limits.request_timeout_ms")) limits.set_request_timeout_ms(600000);
  v1::CompressorSettings& c = *config.mutable_compressor();
  auto unset = [&](const char* field) {
    return !present.count(absl::StrCat("compressor.", field));
  };
  if (unset("model_dir")) c.set_model_dir("models/terse-small-en");
  if (unset("device")) c.set_device("auto");
  if (unset("max_batch_size")) c.set_max_batch_size(8);
  if (unset("max_batch_wait_us")) c.set_max_batch_wait_us(2000);
  if (unset("cache_entries")) c.set_cache_entries(4096);
  if (unset("queue_capacity")) c.set_queue_capacity(256);
  if (unset("workers")) c.set_workers(2);
  if (!present.count("logging.level")) config.mutable_logging()->set_level("info");
  if (config.has_tenancy()) FillTenancy(present, config.limits(), *config.mutable_tenancy());
}

std::vector<ConfigError> ValidateConfig(const v1::Config& config, const EnvLookup& env) {
  return Validator(config, env).Run();
}

bool IsEnabled(const std::string& enabled_if_env, const EnvLookup& env) {
  if (enabled_if_env.empty()) return true;
  const bool negated = enabled_if_env[0] == '!';
  std::optional<std::string> value = env(negated ? enabled_if_env.substr(1) : enabled_if_env);
  const bool set = value && !value->empty();
  return negated ? !set : set;
}

void DropDisabled(const EnvLookup& env, v1::Config& config) {
  auto* providers = config.mutable_providers();
  providers->erase(
      std::remove_if(providers->begin(), providers->end(),
                     [&](const v1::Provider& p) { return !IsEnabled(p.enabled_if_env(), env); }),
      providers->end());
  auto* routes = config.mutable_routes();
  routes->erase(
      std::remove_if(routes->begin(), routes->end(),
                     [&](const v1::Route& r) { return !IsEnabled(r.enabled_if_env(), env); }),
      routes->end());
}

}  // namespace terse::config
