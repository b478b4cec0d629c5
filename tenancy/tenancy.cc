// The policy side of tenancy: key index, limits per key, estimates and bookings.
#include "tenancy/tenancy.h"

#include <fnmatch.h>
#include <stdlib.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/errors.h"
#include "tenancy/keys.h"
#include "tenancy/memory_store.h"
#include "tenancy/redis_postgres_store.h"
#include "tenancy/sqlite_store.h"

namespace terse::tenancy {
namespace {

constexpr uint32_t kDefaultOutputTokens = 1024;
constexpr absl::Duration kDefaultLease = absl::Minutes(11);
// A well-formed hash no secret matches: unknown ids cost the same work as known ones.
constexpr char kDummyHash[] =
    "sha256$00000000000000000000000000000000$"
    "0000000000000000000000000000000000000000000000000000000000000000";

absl::Status InvalidKey() {
  return MakeError(absl::StatusCode::kUnauthenticated, "Incorrect API key provided.",
                   {.http_status = 401, .code = "invalid_api_key"});
}

void AddRates(const v1::RateLimits& rates, const std::string& tenant_id, const std::string& key_id,
              const std::string& scope, std::vector<Limit>& out) {
  auto add = [&](Limit::Kind kind, uint64_t amount, const char* what) {
    if (amount == 0) return;
    Limit limit;
    limit.kind = kind;
    limit.tenant_id = tenant_id;
    limit.key_id = key_id;
    limit.amount = static_cast<int64_t>(amount);
    limit.shadow = rates.shadow();
    limit.name = absl::StrCat(scope, ": ", what, rates.shadow() ? " (shadow)" : "");
    out.push_back(std::move(limit));
  };
  add(Limit::Kind::kRequestsPerMinute, rates.requests_per_minute(), "requests per minute");
  add(Limit::Kind::kTokensPerMinute, rates.tokens_per_minute(), "tokens per minute");
}

absl::Status AddBudgets(const google::protobuf::RepeatedPtrField<v1::Budget>& budgets,
                        const std::string& default_zone, const std::string& tenant_id,
                        const std::string& key_id, const std::string& scope,
                        std::vector<Limit>& out) {
  for (const v1::Budget& budget : budgets) {
    Limit limit;
    limit.kind = Limit::Kind::kBudget;
    limit.tenant_id = tenant_id;
    limit.key_id = key_id;
    limit.amount = MicrosFromUsd(budget.usd());
    absl::StatusOr<Period> period = ParsePeriod(budget.period());
    if (!period.ok()) return period.status();
    limit.period = *period;
    const std::string& zone = budget.time_zone().empty() ? default_zone : budget.time_zone();
    if (!zone.empty() && !absl::LoadTimeZone(zone, &limit.time_zone)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown time zone \"", zone, "\""));
    }
    limit.shadow = budget.shadow();
    limit.name =
        absl::StrCat(scope, ": ", budget.period(), " budget", budget.shadow() ? " (shadow)" : "");
    out.push_back(std::move(limit));
  }
  return absl::OkStatus();
}

}  // namespace

Tenancy::Tenancy(const v1::Tenancy& config, Store& store)
    : config_(config),
      store_(store),
      prices_(config_.prices(), config_.default_output_tokens() > 0
                                    ? config_.default_output_tokens()
                                    : kDefaultOutputTokens),
      lease_(config_.hold_lease_ms() > 0 ? absl::Milliseconds(config_.hold_lease_ms())
                                         : kDefaultLease) {}

absl::StatusOr<std::unique_ptr<Tenancy>> Tenancy::Create(const v1::Tenancy& config, Store& store) {
  std::unique_ptr<Tenancy> tenancy(new Tenancy(config, store));
  if (absl::Status s = tenancy->Index(); !s.ok()) return s;
  return tenancy;
}

absl::Status Tenancy::Index() {
  for (const v1::Tenant& tenant : config_.tenants()) {
    const std::string scope = "tenant " + tenant.id();
    std::vector<Limit> tenant_limits;
    AddRates(tenant.limits(), tenant.id(), "", scope, tenant_limits);
    if (absl::Status s = AddBudgets(tenant.budgets(), config_.time_zone(), tenant.id(), "", scope,
                                    tenant_limits);
        !s.ok())
      return s;
    for (const v1::TenantKey& key : tenant.keys()) {
      if (!IsKeyId(key.id()) || !IsKeyHash(key.hash())) {
        return absl::InvalidArgumentError("malformed key id or hash in tenant " + tenant.id());
      }
      KeyEntry entry{&tenant, &key, tenant_limits};
      const std::string key_scope = absl::StrCat(scope, " key ", key.id());
      AddRates(key.limits(), tenant.id(), key.id(), key_scope, entry.limits);
      if (absl::Status s = AddBudgets(key.budgets(), config_.time_zone(), tenant.id(), key.id(),
                                      key_scope, entry.limits);
          !s.ok())
        return s;
      if (!keys_.emplace(key.id(), std::move(entry)).second) {
        return absl::InvalidArgumentError("key id " + key.id() + " is used twice");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Principal> Tenancy::Authenticate(std::string_view api_key) const {
  absl::StatusOr<PresentedKey> presented = ParseKey(api_key);
  if (!presented.ok()) return InvalidKey();
  auto it = keys_.find(presented->id);
  if (it == keys_.end()) {
    VerifySecret(presented->secret, kDummyHash);
    return InvalidKey();
  }
  const KeyEntry& entry = it->second;
  if (!VerifySecret(presented->secret, entry.key->hash())) return InvalidKey();
  if (entry.key->revoked()) {
    return MakeError(absl::StatusCode::kUnauthenticated,
                     "The API key " + entry.key->id() + " has been revoked.",
                     {.http_status = 401, .code = "invalid_api_key"});
  }
  if (entry.tenant->disabled()) {
    return MakeError(absl::StatusCode::kPermissionDenied,
                     "The tenant " + entry.tenant->id() + " is disabled.", {.http_status = 403});
  }
  return Principal{entry.tenant, entry.key};
}

absl::Status Tenancy::Authorize(const Principal& who, std::string_view route,
                                std::string_view model) const {
  const v1::Tenant& tenant = *who.tenant;
  bool route_ok = tenant.allowed_routes().empty();
  for (const std::string& allowed : tenant.allowed_routes()) route_ok |= allowed == route;
  if (!route_ok) {
    return MakeError(absl::StatusCode::kPermissionDenied,
                     "Tenant " + tenant.id() + " may not use route " + std::string(route) + ".",
                     {.http_status = 403, .code = "route_not_allowed", .param = "model"});
  }
  const std::string name(model);
  bool model_ok = tenant.allowed_models().empty();
  for (const std::string& allowed : tenant.allowed_models()) {
    model_ok |= allowed == name || fnmatch(allowed.c_str(), name.c_str(), 0) == 0;
  }
  if (!model_ok) {
    return MakeError(absl::StatusCode::kPermissionDenied,
                     "Tenant " + tenant.id() + " may not use model " + name + ".",
                     {.http_status = 403, .code = "model_not_allowed", .param = "model"});
  }
  return absl::OkStatus();
}

const std::vector<Limit>& Tenancy::LimitsOf(const Principal& who) const {
  return keys_.at(who.key_id()).limits;
}

absl::StatusOr<Admitted> Tenancy::Admit(const Principal& who, const RequestInfo& request,
                                        absl::Time now) const {
  const Price* price = prices_.Find(request.provider, request.model);
  if (price == nullptr && config_.strict_prices()) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("The model ", request.model, " of provider ", request.provider,
                     " has no price, and this gateway admits only priced models."),
        {.http_status = 400, .code = "model_not_priced", .param = "model", .retryable = false});
  }
  Admitted admitted;
  admitted.priced = price != nullptr;
  const int64_t output_tokens = prices_.EstimatedOutputTokens(price, request.max_output_tokens);
  admitted.estimate = price ? EstimateCost(*price, request.prompt_tokens, output_tokens) : 0;
  admitted.tokens = request.prompt_tokens + output_tokens;
  Admission admission{request.request_id, who.tenant_id(), who.key_id(), LimitsOf(who),
                      admitted.estimate,  admitted.tokens, now,          lease_};
  absl::StatusOr<Decision> decision = store_.Admit(admission);
  if (!decision.ok()) return decision.status();
  admitted.decision = std::move(*decision);
  if (admitted.decision.refused_by >= 0) {
    admitted.refused_by = admission.limits[admitted.decision.refused_by].name;
  }
  return admitted;
}

absl::StatusOr<bool> Tenancy::Settle(const Principal& who, const RequestInfo& request,
                                     absl::Time admitted_at, const RequestOutcome& outcome) const {
  return store_.Settle(RowOf(who, request, admitted_at, outcome));
}

void Tenancy::SettleAsync(const Principal& who, const RequestInfo& request, absl::Time admitted_at,
                          const RequestOutcome& outcome, Store::SettleDone done) const {
  store_.SettleAsync(RowOf(who, request, admitted_at, outcome), std::move(done));
}

UsageRow Tenancy::RowOf(const Principal& who, const RequestInfo& request, absl::Time admitted_at,
                        const RequestOutcome& outcome) const {
  UsageRow row;
  row.request_id = request.request_id;
  row.time = admitted_at;
  row.tenant_id = who.tenant_id();
  row.key_id = who.key_id();
  row.route = request.route;
  row.provider = request.provider;
  row.model = request.model;
  row.original_prompt_tokens = outcome.original_prompt_tokens;
  row.sent_prompt_tokens = outcome.sent_prompt_tokens;
  row.completion_tokens = outcome.completion_tokens;
  row.cached_tokens = outcome.cached_tokens;
  if (const Price* price = prices_.Find(request.provider, request.model)) {
    row.cost =
        Cost(*price, outcome.sent_prompt_tokens, outcome.cached_tokens, outcome.completion_tokens);
    row.savings = Savings(*price, outcome.original_prompt_tokens, outcome.sent_prompt_tokens,
                          outcome.cache_lost_tokens);
  }
  row.latency_ms = absl::ToInt64Milliseconds(outcome.latency);
  row.http_status = outcome.http_status;
  row.compressed = outcome.compressed;
  row.shed = outcome.shed;
  return row;
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const v1::Tenancy& config) {
  const std::string dir = config.data_dir().empty() ? "data" : config.data_dir();
  switch (config.store().kind()) {
    case v1::TenancyStore::MEMORY:
      return std::make_unique<InMemoryStore>();
    case v1::TenancyStore::KIND_UNSPECIFIED:
    case v1::TenancyStore::SQLITE: {
      absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(
          dir + "/tenancy.db", config.durability() == "power" ? SqliteStore::Durability::kPower
                                                              : SqliteStore::Durability::kProcess);
      if (!store.ok()) return store.status();
      return std::unique_ptr<Store>(std::move(*store));
    }
    case v1::TenancyStore::REDIS_POSTGRES: {
      const v1::TenancyStore& s = config.store();
      const char* dsn = getenv(s.postgres_url_env().c_str());
      if (dsn == nullptr || *dsn == '\0') {
        return absl::FailedPreconditionError(
            absl::StrCat("tenancy.store.postgres_url_env: the environment variable ",
                         s.postgres_url_env(), " is not set"));
      }
      RedisPostgresOptions options;
      options.redis_url = s.redis_url();
      options.postgres_url = dsn;
      options.spool_path = dir + "/tenancy-spool.jsonl";
      options.fail_open = s.fail_mode() == "open";
      absl::StatusOr<std::unique_ptr<RedisPostgresStore>> store =
          RedisPostgresStore::Open(std::move(options));
      if (!store.ok()) return store.status();
      return std::unique_ptr<Store>(std::move(*store));
    }
    default:
      return absl::InvalidArgumentError("unknown tenancy.store.kind");
  }
}

absl::Status RefusalStatus(const Admitted& admitted) {
  const Decision& d = admitted.decision;
  switch (d.outcome) {
    case Decision::Outcome::kAdmitted:
      return absl::OkStatus();
    case Decision::Outcome::kRateLimited:
      return MakeError(
          absl::StatusCode::kResourceExhausted,
          absl::StrCat("Rate limit reached (", admitted.refused_by, "). Retry in ",
                       absl::ToInt64Milliseconds(absl::Ceil(d.retry_after, absl::Milliseconds(1))),
                       " ms."),
          {.http_status = 429, .code = "rate_limit_exceeded"});
    case Decision::Outcome::kBudgetExhausted:
      return MakeError(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("Budget exhausted (", admitted.refused_by, ")."),
                       {.http_status = 429,
                        .type = "insufficient_quota",
                        .code = "insufficient_quota",
                        .retryable = false});
    case Decision::Outcome::kTooLarge:
      return MakeError(absl::StatusCode::kResourceExhausted,
                       absl::StrCat("Request too large (", admitted.tokens, " tokens) for ",
                                    admitted.refused_by, "."),
                       {.http_status = 429, .code = "rate_limit_exceeded", .retryable = false});
  }
  return absl::InternalError("unknown admission outcome");
}

}  // namespace terse::tenancy
