// The store seam: where holds, counters and the usage ledger live. Implementations: in memory
// (InMemoryStore), embedded SQLite (SqliteStore), and for replicas sharing budgets Redis counters
// and holds (a Lua script per operation) with a PostgreSQL ledger (RedisPostgresStore).
//
// Stores hold no policy: every Admit carries the limits that apply (the Tenancy layer builds
// them from the config), so a config reload needs nothing from the store.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/limits.h"
#include "tenancy/money.h"

namespace terse::tenancy {

// One request, booked once, keyed by its request id.
struct UsageRow {
  std::string request_id;
  absl::Time time;  // admission time: the row counts in the windows that held it
  std::string tenant_id;
  std::string key_id;  // the key's public id; never the secret
  std::string route;
  std::string provider;  // litellm_provider name
  std::string model;
  int64_t original_prompt_tokens = 0;  // before compression, in the target model's tokens
  int64_t sent_prompt_tokens = 0;      // after compression (the upstream's count when reported)
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens read from the provider's cache
  Micros cost = 0;
  Micros savings = 0;
  int64_t latency_ms = 0;
  int http_status = 0;  // what the client was answered
  bool compressed = false;
  bool shed = false;  // compression skipped under load
};

// One admission: reserve `estimate` against every budget and count the request (and `tokens`)
// against every rate, all of them or none.
struct Admission {
  std::string request_id;
  std::string tenant_id;
  std::string key_id;
  std::vector<Limit> limits;  // of this tenant and key; may be empty
  Micros estimate = 0;        // reserved against each budget until settled or expired
  int64_t tokens = 0;         // prompt after compression + expected completion, for tokens/min
  absl::Time now;
  absl::Duration lease;  // the hold's lifetime: now + lease is its deadline
};

struct Decision {
  enum class Outcome {
    kAdmitted,
    kRateLimited,      // a rate is spent for now: retry after `retry_after`
    kBudgetExhausted,  // a budget cannot hold the estimate: no retry helps before its window ends
    kTooLarge,         // the request alone exceeds a per-minute limit: no retry helps
  };
  Outcome outcome = Outcome::kAdmitted;
  int refused_by = -1;               // index in Admission::limits of the refusing limit
  absl::Duration retry_after;        // kRateLimited: the longest wait among the refusing rates
  absl::Time hold_deadline;          // kAdmitted: when the hold is released unless settled
  std::vector<int> shadow_exceeded;  // shadow limits the request went over (not refused)
  // Per limit, after this decision: micros left in the budget's window (negative when a shadow
  // budget is overspent), or units a rate would admit right now.
  std::vector<int64_t> remaining;
  bool admitted() const { return outcome == Outcome::kAdmitted; }
};

// A budget's window as the store counts it.
struct Spend {
  Window window;
  Micros settled = 0;  // sum of the cost of the rows in the window
  Micros held = 0;     // estimates of unsettled, unexpired holds
};

enum class GroupBy { kNone, kDay, kModel, kRoute, kKey };

struct UsageQuery {
  std::string tenant_id;
  absl::Time from;  // rows with from <= time < to
  absl::Time to;
  GroupBy group_by = GroupBy::kNone;
  absl::TimeZone time_zone = absl::UTCTimeZone();  // where kDay's days start
};

struct UsageBucket {
  std::string group;  // YYYY-MM-DD, model, route or key id; "" for kNone
  int64_t requests = 0;
  int64_t original_prompt_tokens = 0;
  int64_t sent_prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
  Micros cost = 0;
  Micros savings = 0;
  friend bool operator==(const UsageBucket&, const UsageBucket&) = default;
};

// Every method is thread-safe and atomic: concurrent admissions see each other's holds.
class Store {
 public:
  virtual ~Store() = default;

  // Releases the holds whose deadline is at or before `admission.now`, then checks every limit
  // and, when all pass (shadow ones always do), holds the estimate until settlement or
  // `now + lease`. kAlreadyExists when `request_id` holds already; other errors: the store failed.
  virtual absl::StatusOr<Decision> Admit(const Admission& admission) = 0;

  // Books `row` and releases its hold, if any (the row then takes the hold's time). Idempotent
  // per request id: true when booked now, false when it was already (nothing changes). A row
  // whose hold expired, or that never had one, is booked all the same: the money was spent.
  // Returns once the row is as durable as the store makes rows. kInvalidArgument for a row
  // without request or tenant id, or with negative counts.
  virtual absl::StatusOr<bool> Settle(const UsageRow& row) = 0;

  // Settle without waiting: `done` gets what Settle would return, once the row is as durable as
  // Settle makes it. It runs on the caller's thread before this returns (the default: Settle),
  // or on a thread of the store's; it must not block, and may call into the store.
  using SettleDone = absl::AnyInvocable<void(absl::StatusOr<bool>) &&>;
  virtual void SettleAsync(UsageRow row, SettleDone done);

  // Releases holds whose deadline is at or before `now` (unsettled requests, e.g. crashed); the
  // number released. Admit does this too; call it periodically to free memory.
  virtual absl::StatusOr<int> ExpireHolds(absl::Time now) = 0;

  // A budget's window holding `now`: booked and held amounts (the limit's amount is not used).
  virtual absl::StatusOr<Spend> BudgetSpend(const Limit& budget, absl::Time now) = 0;

  // Rows of one tenant in [from, to), grouped; buckets sorted by group.
  virtual absl::StatusOr<std::vector<UsageBucket>> Usage(const UsageQuery& query) = 0;
};

// kInvalidArgument unless `row` can be booked (see Store::Settle).
absl::Status ValidateRow(const UsageRow& row);

// The group of a row under `query` (its day in the query's zone, model, route or key).
std::string GroupOf(const UsageRow& row, const UsageQuery& query);
// Adds a row's counts to a bucket.
void AddToBucket(const UsageRow& row, UsageBucket& bucket);

// The SQL ledgers' usage query, grouped in SQL by model, route, key or quarter hour (whole
// days of any zone are whole quarter hours; GroupOf makes them days). `table` is the ledger
// table; `params` the dialect's three placeholders (tenant, from, to); `as_text` the dialect's
// cast of an integer to text ("::text"), or empty. Its rows: (group, requests, original, sent,
// completion and cached tokens, cost, savings).
std::string UsageQuerySql(GroupBy group_by, std::string_view table,
                          const std::string_view (&params)[3], std::string_view as_text);

// Folds the usage query's rows into buckets sorted by group.
class UsageFolder {
 public:
  explicit UsageFolder(const UsageQuery& query) : query_(query) {}
  // One row: its group as an integer (a quarter hour) and as text, then its seven sums.
  void Add(int64_t group_number, std::string group_text, const int64_t (&sums)[7]);
  std::vector<UsageBucket> Buckets() &&;

 private:
  const UsageQuery& query_;
  std::map<std::string, UsageBucket> groups_;
};

}  // namespace terse::tenancy
