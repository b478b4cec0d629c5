// The usage ledger in PostgreSQL, over libpq (kept in the .cc): table `terse_usage`, one row per
// request id (INSERT ... ON CONFLICT DO NOTHING), created on first connection.
//
// Rows of a tenant are written and its counters are summed under a transaction-scoped advisory
// lock of the tenant: shared to write, exclusive to sum for a counter. So no row of the tenant
// commits between a counter's sum and its installation in Redis (see RedisPostgresStore).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tenancy/counters.h"
#include "tenancy/store.h"

struct pg_conn;  // PGconn, from <libpq-fe.h>

namespace terse::tenancy {

// Thread-safe. Errors: kUnavailable when PostgreSQL cannot be reached or a statement times out
// (a commit may then have happened or not), kInternal for other failures.
class PostgresLedger {
 public:
  struct Options {
    std::string conninfo;                       // a libpq connection string or URI
    absl::Duration timeout = absl::Seconds(5);  // connect, statements, lock waits
    // After a failed connection, calls fail at once for this long instead of connecting again.
    absl::Duration retry_interval = absl::Seconds(1);
    int max_connections = 16;  // callers beyond it wait for a free connection
  };
  explicit PostgresLedger(Options options);
  ~PostgresLedger();
  PostgresLedger(const PostgresLedger&) = delete;
  PostgresLedger& operator=(const PostgresLedger&) = delete;

  enum class Lock { kShared, kExclusive };

  // A transaction holding one tenant's advisory lock; rolled back unless committed. Not
  // thread-safe; holds one pooled connection while it lives.
  class Transaction {
   public:
    ~Transaction();
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;

    struct Inserted {
      bool inserted = false;
      std::optional<std::string> existing_token;  // when not inserted: the ledger row's token
    };
    // Inserts `row` tagged with `token` (which booking wrote it), unless its id is booked.
    // `want_token` also reads the existing row's token when the id was booked.
    absl::StatusOr<Inserted> Insert(const UsageRow& row, const std::string& token,
                                    bool want_token = false);
    // The cost of the rows `key` counts.
    absl::StatusOr<Micros> Sum(const CounterKey& key);
    // Of `ids`, those the ledger holds, with their tokens.
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Tokens(
        const std::vector<std::string>& ids);
    absl::Status Commit();

   private:
    friend class PostgresLedger;
    Transaction(PostgresLedger* ledger, pg_conn* conn) : ledger_(ledger), conn_(conn) {}
    PostgresLedger* ledger_;
    pg_conn* conn_;  // null once committed, rolled back or moved from
  };

  absl::StatusOr<Transaction> Begin(const std::string& tenant_id, Lock lock);

  // Rows of one tenant in [from, to), grouped (days folded from quarter-hour sums, as SQLite's).
  absl::StatusOr<std::vector<UsageBucket>> Usage(const UsageQuery& query);
  // The cost of the rows `key` counts, without a lock (an estimate for degraded admission).
  absl::StatusOr<Micros> Sum(const CounterKey& key);

 private:
  absl::StatusOr<pg_conn*> Acquire();
  void Release(pg_conn* conn);  // a broken connection is closed instead
  absl::StatusOr<pg_conn*> Connect();
  bool CanOpen() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !idle_.empty() || open_ < options_.max_connections;
  }

  const Options options_;
  absl::Mutex mu_;
  std::vector<pg_conn*> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time down_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool schema_ready_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace terse::tenancy
