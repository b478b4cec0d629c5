// Tenancy for one config snapshot: whose key a request carries, what it may call, the limits
// that apply, and the money of each request. The bookkeeping itself goes to a Store, which
// outlives snapshots: a reload builds a new Tenancy over the same store.
//
// The request path, as the pipeline is to call it:
//   Authenticate(key) -> Authorize(route, model) -> compress -> Admit(prompt tokens after
//   compression) -> forward -> Settle(usage) before the answer's last byte -> answer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/limits.h"
#include "tenancy/prices.h"
#include "tenancy/store.h"
#include "terse/v1/config.pb.h"

namespace terse::tenancy {

// The caller of a request. Points into the Tenancy that authenticated it (valid while it lives);
// `tenant->compression()` is the tenant's compression override.
struct Principal {
  const v1::Tenant* tenant = nullptr;
  const v1::TenantKey* key = nullptr;
  const std::string& tenant_id() const { return tenant->id(); }
  const std::string& key_id() const { return key->id(); }
};

// What admission needs to know of a request.
struct RequestInfo {
  std::string request_id;
  std::string route;          // the matched route's name
  std::string provider;       // litellm_provider name (ProviderName) of the upstream billing it
  std::string model;          // the model the upstream bills
  int64_t prompt_tokens = 0;  // after compression, in the target model's exact tokens
  std::optional<int64_t> max_output_tokens;  // max_completion_tokens, else max_tokens, if set
};

struct Admitted {
  Decision decision;
  std::string refused_by;  // the refusing limit's name, when refused
  Micros estimate = 0;     // held against every budget
  int64_t tokens = 0;      // counted against tokens per minute
  bool priced = true;      // false: an unpriced model admitted by lenient prices
};

// What happened, as the pipeline saw it at the end of the request.
struct RequestOutcome {
  int64_t original_prompt_tokens = 0;
  int64_t sent_prompt_tokens = 0;  // the upstream's usage.prompt_tokens when it reported one
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;      // prompt_tokens_details.cached_tokens / cache_read tokens
  int64_t cache_lost_tokens = 0;  // see Savings; 0 when unknown
  absl::Duration latency;
  int http_status = 200;
  bool compressed = false;
  bool shed = false;
};

// Immutable after Create; thread-safe.
class Tenancy {
 public:
  // `config` is a loaded, validated tenancy section (its `prices` already the effective table).
  // `store` must outlive the Tenancy. kInvalidArgument for what validation should have caught.
  static absl::StatusOr<std::unique_ptr<Tenancy>> Create(const v1::Tenancy& config, Store& store);

  // The tenant and key of `api_key`. kUnauthenticated (401 invalid_api_key) for a malformed,
  // unknown or wrong key, or a revoked one; kPermissionDenied (403) for a disabled tenant.
  // Messages name at most the key's public id, never the secret.
  absl::StatusOr<Principal> Authenticate(std::string_view api_key) const;

  // kPermissionDenied (403) unless the tenant may use this route and model.
  absl::Status Authorize(const Principal& who, std::string_view route,
                         std::string_view model) const;

  // Estimates the request's cost and admits it against every limit of the tenant and key.
  // A refusal is an OK result whose decision says why (see RefusalStatus). Errors: an unpriced
  // model under strict_prices (kFailedPrecondition, 400 model_not_priced), a store failure.
  absl::StatusOr<Admitted> Admit(const Principal& who, const RequestInfo& request,
                                 absl::Time now) const;

  // Books what the request used, at the table's prices, and releases its hold; idempotent per
  // request id (false: already booked). `admitted_at` is Admit's `now`.
  absl::StatusOr<bool> Settle(const Principal& who, const RequestInfo& request,
                              absl::Time admitted_at, const RequestOutcome& outcome) const;
  // The same through Store::SettleAsync: `done` gets Settle's result, maybe on a store's thread.
  void SettleAsync(const Principal& who, const RequestInfo& request, absl::Time admitted_at,
                   const RequestOutcome& outcome, Store::SettleDone done) const;

  // The limits of a tenant's key (the tenant's, then the key's), in Admission order.
  const std::vector<Limit>& LimitsOf(const Principal& who) const;
  const PriceTable& prices() const { return prices_; }
  Store& store() const { return store_; }

 private:
  struct KeyEntry {
    const v1::Tenant* tenant;
    const v1::TenantKey* key;
    std::vector<Limit> limits;
  };

  Tenancy(const v1::Tenancy& config, Store& store);
  absl::Status Index();
  UsageRow RowOf(const Principal& who, const RequestInfo& request, absl::Time admitted_at,
                 const RequestOutcome& outcome) const;

  // Constant after construction.
  const v1::Tenancy config_;  // Principals and KeyEntries point into it
  Store& store_;
  const PriceTable prices_;
  absl::flat_hash_map<std::string, KeyEntry> keys_;  // by public id
  absl::Duration lease_;
};

// The store `config.store` names: the SQLite one in `<data_dir>/tenancy.db`, an in-memory one,
// or the replicas' Redis and PostgreSQL one (its spool in `<data_dir>/tenancy-spool.jsonl`, the
// connection string in the environment variable `postgres_url_env`: kFailedPrecondition when it
// is unset).
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const v1::Tenancy& config);

// The error a refusal answers with (OK for an admission): kResourceExhausted, HTTP 429, with
// `rate_limit_exceeded` (retryable; the wait is `decision.retry_after`) for a rate,
// `insufficient_quota` (x-should-retry: false) for a budget, and `rate_limit_exceeded`,
// not retryable, for a request larger than a per-minute limit.
absl::Status RefusalStatus(const Admitted& admitted);

}  // namespace terse::tenancy
