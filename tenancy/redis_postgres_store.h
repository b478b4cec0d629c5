// The store for several gateway replicas: live counters, rate states and holds in Redis, the
// usage ledger in PostgreSQL, and a local spool for rows PostgreSQL cannot take yet.
//
// Admission is one Lua script per Admit (tenancy/redis_scripts.h): every budget and rate of the
// request is checked and held at once, so budgets are exact across replicas. A budget counter is
// a cache of the ledger: when Redis lacks it (first use of a window, or Redis lost its state,
// which the tenant's epoch key tells) it is rebuilt from a PostgreSQL sum, plus the rows Redis
// counted that the ledger may not hold yet ("pending"). The tenant's advisory lock in PostgreSQL
// keeps rows from committing between that sum and the install (PostgresLedger).
//
// Settle writes the row to PostgreSQL and books it in Redis (releasing its hold) in one
// transaction; when either cannot be reached, the row goes to the spool, fsync'd before Settle
// returns, is counted in Redis if Redis is there, and is replayed into PostgreSQL when both are
// back. Each row carries a random token naming its booking, so a replay tells its own earlier
// (seemingly failed) commit from a duplicate: nothing is lost or counted twice.
//
// When Redis (or, for a counter not yet installed, PostgreSQL) cannot be reached, `fail_open`
// admits on in-process counters rebuilt from the ledger, per replica and logged; otherwise Admit
// returns kUnavailable (HTTP 503).
//
// Limits of one admission must belong to its tenant; tenant and key ids must not contain
// spaces, '|', '{' or '}'; rates stay below 2^52 a minute (Lua's doubles keep them exact).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/counters.h"
#include "tenancy/postgres_ledger.h"
#include "tenancy/redis_client.h"
#include "tenancy/spool.h"
#include "tenancy/store.h"

namespace terse::tenancy {

struct RedisPostgresOptions {
  std::string redis_url;     // redis://[[user]:password@]host[:port][/db]
  std::string postgres_url;  // a libpq connection string or URI
  std::string spool_path;    // this process's own spool file
  bool fail_open = false;    // see above
  std::string key_prefix = "terse";
  absl::Duration timeout = absl::Seconds(2);  // connect and each call, Redis and PostgreSQL
  // After a failed connection, calls fail fast this long; also the spool's replay period.
  absl::Duration retry_interval = absl::Seconds(1);
  // Degraded modes entered and left; default: a JSON line on stderr.
  std::function<void(std::string_view)> log;
};

// Thread-safe.
class RedisPostgresStore final : public Store {
 public:
  // Opens the spool (kFailedPrecondition when another process has it) and starts its replayer.
  // Redis and PostgreSQL need not be reachable yet.
  static absl::StatusOr<std::unique_ptr<RedisPostgresStore>> Open(RedisPostgresOptions options);
  ~RedisPostgresStore() override;

  absl::StatusOr<Decision> Admit(const Admission& admission) override;
  // True once the row is committed to PostgreSQL or fsync'd to the spool. While PostgreSQL is
  // unreachable, a row booked before the outage cannot be told from a new one: its repeat
  // returns true, and the replay drops it (and its cost from the counters). A row PostgreSQL
  // refuses for itself (not for being away) is an error, and nothing is booked.
  absl::StatusOr<bool> Settle(const UsageRow& row) override;
  absl::StatusOr<int> ExpireHolds(absl::Time now) override;
  absl::StatusOr<Spend> BudgetSpend(const Limit& budget, absl::Time now) override;
  // PostgreSQL's rows (spooled ones once replayed); kUnavailable while it cannot be reached.
  absl::StatusOr<std::vector<UsageBucket>> Usage(const UsageQuery& query) override;

  // Writes spooled rows to PostgreSQL now; how many. The replayer calls it every
  // retry_interval while rows wait. kUnavailable stops it at the row that met it; a row that
  // fails otherwise stays in the spool, logged, and the others go on.
  absl::StatusOr<int> ReplaySpool();
  size_t SpooledRows() const { return spool_->size(); }

 private:
  struct AdmitCall;  // an admission's keys and arguments for the script
  struct HoldInfo;   // a hold as Settle reads it

  RedisPostgresStore(RedisPostgresOptions options, std::unique_ptr<Spool> spool);

  std::string Prefix(const std::string& tenant_id) const;  // "<p>:{tenant}:"
  absl::StatusOr<AdmitCall> Prepare(const Admission& admission) const;
  // Installs budget counters from the ledger, under the tenant's exclusive lock.
  absl::Status Install(const std::string& tenant_id, const std::vector<CounterKey>& keys);
  absl::StatusOr<HoldInfo> ReadHold(const UsageRow& row);
  absl::Status Book(const UsageRow& row, const std::string& token, const HoldInfo& hold);
  absl::Status ReplayRow(const Spool::Entry& entry);
  absl::StatusOr<bool> SpoolRow(const UsageRow& row, const std::string& token, const HoldInfo* hold,
                                const absl::Status& why);
  // After a script reports that a tenant started afresh, or on its first use here.
  void Register(const std::string& tenant_id, bool created);

  // Degraded admission (Redis or the ledger unreachable): kUnavailable unless fail_open.
  absl::StatusOr<Decision> AdmitLocally(const Admission& admission, const absl::Status& why);
  absl::StatusOr<Spend> SpendLocally(const Limit& budget, absl::Time now, const absl::Status& why);
  absl::Status InstallLocally(const std::vector<CounterKey>& keys);
  void Degraded(const absl::Status& why);
  void Recovered();
  void Log(const std::string& message) const;
  void ReplayLoop();

  // Constant after construction.
  const RedisPostgresOptions options_;
  std::unique_ptr<RedisClient> redis_;
  std::unique_ptr<PostgresLedger> ledger_;
  std::unique_ptr<Spool> spool_;

  absl::Mutex mu_;
  absl::flat_hash_set<std::string> registered_ ABSL_GUARDED_BY(mu_);  // tenants in `<p>:tenants`
  std::atomic<bool> degraded_ = false;   // changes under mu_; read without it on the hot path
  Counters local_ ABSL_GUARDED_BY(mu_);  // fail_open admissions while degraded
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  absl::Mutex replay_mu_;  // one replay at a time
  std::thread replayer_;   // last: starts after everything above
};

}  // namespace terse::tenancy
