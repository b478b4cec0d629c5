// Tenancy on the request path: the pipeline's glue around tenancy::Tenancy. Who calls
// (Authenticate), what they may call (Authorize), the tenant's compression, admission before
// forwarding, settlement before the answer's last byte, and what each puts on the response.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "config/config.h"
#include "proxy/operation.h"
#include "proxy/usage.h"
#include "tenancy/tenancy.h"
#include "terse/v1/config.pb.h"
#include "terse/v1/gateway.pb.h"

namespace terse::proxy {

class Metrics;

using HeaderFields = std::vector<std::pair<std::string, std::string>>;

// The process's tenancy: its store, the policy of the current config, the threads that settle
// where the store's Settle blocks (no I/O thread may wait on the network or a disk) and read
// usage, and a timer that releases the holds of requests that never settled. Thread-safe.
class Tenants {
 public:
  // Null when `config` has no tenancy section: terse stays open. `metrics` must outlive the
  // result. Errors: the policy is invalid, the store cannot be opened.
  static absl::StatusOr<std::unique_ptr<Tenants>> Open(const v1::Config& config, Metrics& metrics);
  // Runs every queued settlement, then stops the threads. Destroy after the pipeline.
  ~Tenants();

  // A new policy over the same store (a config reload); calls in progress keep theirs.
  absl::Status Reload(const v1::Config& config);

  // OK for a live tenant key or the admin key (`tenancy.admin_key_env`): what the endpoints a
  // face answers itself (/metrics, /v1/models) ask. Errors as tenancy::Tenancy::Authenticate.
  absl::Status CheckKey(std::string_view api_key) const;

  // What GET /v1/terse/usage asks: the ledger's rows in [from, to), grouped.
  struct UsageRequest {
    std::string api_key;
    std::string tenant;  // with the admin key: whose; with a tenant's key: empty or its own
    absl::Time from = absl::InfinitePast();
    absl::Time to = absl::InfiniteFuture();
    tenancy::GroupBy group_by = tenancy::GroupBy::kNone;
  };
  // The usage of the caller's tenant (the admin key's: `tenant`'s), and with a tenant's key the
  // budgets that apply to it, read off the calling thread; `done` then gets the JSON body, on
  // another thread. Errors: the key's, 400 for the admin key without a tenant, 403 for another
  // tenant's usage, the store's.
  void Usage(UsageRequest request, absl::AnyInvocable<void(absl::StatusOr<Json>) &&> done) const;

  tenancy::Store& store() const;

  struct State;

 private:
  explicit Tenants(std::unique_ptr<State> state);
  friend class TenantCall;
  std::unique_ptr<State> state_;
};

// How a call ended, as settlement needs it.
struct CallEnd {
  std::optional<UsageRecord> usage;  // what the upstream reported
  // Without a usage: whether the upstream may have billed the prompt (it answered, or the call
  // was cut off after it was sent). Settlement then books the prompt tokens sent.
  bool maybe_billed = false;
  int http_status = 200;
  absl::Duration latency;
  bool shed = false;  // compression was skipped (queue full, timeout, failure)
};

// One call's tenancy, in the pipeline's order: Authenticate, Authorize, CompressionRoute, Admit,
// then Settle exactly once if Admit admitted. With tenancy off (null Tenants) every step passes
// and nothing is booked. Not thread-safe: the pipeline runs its steps one after the other.
class TenantCall {
 public:
  explicit TenantCall(Tenants* tenants);

  // kUnauthenticated (401 invalid_api_key) for a missing, unknown or revoked key; 403 for a
  // disabled tenant.
  absl::Status Authenticate(std::string_view api_key);
  // kPermissionDenied (403) unless the tenant may use `route` (its label) and `model`.
  absl::Status Authorize(std::string_view route, std::string_view model);
  // `route` with the tenant's compression (TenantCompression) over the route's; `route` itself
  // when the tenant has none. Valid while this call and `config` live.
  const v1::Route& CompressionRoute(const config::Config& config, const v1::Route& route);

  // Counts the prompt of `body` (as forwarded, after compression) in `request.model`'s tokens,
  // reads its max_completion_tokens / max_tokens and admits it; `request.route`, `provider` and
  // `model` are the caller's. A refusal is the error to answer with (429; retry-after for a
  // rate; the x-ratelimit-* fields attached, see WithResponseFields). Admitted: `headers` gains
  // the x-ratelimit-* fields, and for a stream the budget left with this call's hold counted
  // (its cost is known only at the end).
  absl::Status Admit(Operation operation, const Json& body,
                     const v1::CompressionReport& compression, tenancy::RequestInfo request,
                     bool stream, HeaderFields& headers);
  bool admitted() const { return admitted_.has_value(); }

  // Books what the call used, then runs `then`: at once when nothing was admitted or the store
  // books in memory; else once the row is durable, on the store's writer thread (SQLite) or a
  // settlement thread (Redis and PostgreSQL). `then` must not block.
  void Settle(const CallEnd& end, absl::AnyInvocable<void() &&> then);
  // After Settle: x-terse-cost-usd, x-terse-savings-usd and x-terse-budget-remaining-usd (the
  // budget left after this call's booking); empty unless admitted.
  HeaderFields SettledFields() const;
  // The same as a JSON object for a stream's usage chunk: cost_usd, savings_usd,
  // budget_remaining_usd.
  Json SettledJson() const;

  // Public ids, for logs and metrics; empty before Authenticate or with tenancy off.
  std::string_view tenant_id() const;
  std::string_view key_id() const;
  // The usage ledger's id of this call: always terse's own (a client's x-request-id may repeat).
  const std::string& ledger_id() const { return request_.request_id; }

 private:
  Tenants::State* state_;                            // null: tenancy off
  std::shared_ptr<const tenancy::Tenancy> tenancy_;  // the policy this call started with
  std::optional<tenancy::Principal> principal_;      // points into *tenancy_
  std::optional<v1::Route> compression_route_;       // a route copy with the tenant's policy
  tenancy::RequestInfo request_;
  int64_t removed_prompt_tokens_ = 0;  // by compression, in the target model's tokens
  std::optional<tenancy::Admitted> admitted_;
  absl::Time admitted_at_;
  // Set by Settle's booking.
  tenancy::Micros cost_ = 0;
  tenancy::Micros savings_ = 0;
  std::optional<tenancy::Micros> budget_remaining_;  // the tightest budget's, when any applies
};

// `micros` as USD with six decimals, e.g. "0.012500".
std::string FormatUsd(tenancy::Micros micros);
// A wait as OpenAI's x-ratelimit-reset-* write it: "17ms", "1.5s", "6m0s".
std::string FormatReset(absl::Duration wait);

}  // namespace terse::proxy
