// The embedded store: admission decided in memory (Counters), the usage ledger in one SQLite file
// (WAL) that one process owns.
//
// Durability: Settle returns only after its row is committed with synchronous=FULL (the WAL is
// fsynced), so a caller that settles before it answers loses no answered row to kill -9 or to
// a power cut. Rows are written by one writer thread in group commits: every row queued while a
// commit is in flight goes into the next one, so concurrent requests share an fsync, and the
// request path never waits on SQLite for anything else.
//
// Admission never touches the disk but once per budget window per process: a counter missing in
// memory is rebuilt from the ledger (SUM of its rows) before it is first used. Holds are in
// memory only: a request dies with the process that admitted it, so at restart no hold exists,
// which is what each hold's expiry would have done. Rate states start afresh at restart.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/counters.h"
#include "tenancy/store.h"

struct sqlite3;  // <sqlite3.h> stays in the .cc

namespace terse::tenancy {

// Thread-safe.
class SqliteStore final : public Store {
 public:
  // Opens or creates the database at `path` (and its directory) and starts the writer.
  // kFailedPrecondition when another process (or another SqliteStore) has it open: budgets
  // shared between processes need the Redis store. kInternal for SQLite errors.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  // Commits every queued row, then stops the writer.
  ~SqliteStore() override;

  absl::StatusOr<Decision> Admit(const Admission& admission) override;
  // The row is committed when this returns true. If the write fails, the error is returned and
  // nothing is booked: the same row may be settled again.
  absl::StatusOr<bool> Settle(const UsageRow& row) override;
  absl::StatusOr<int> ExpireHolds(absl::Time now) override;
  absl::StatusOr<Spend> BudgetSpend(const Limit& budget, absl::Time now) override;
  // Committed rows only (every row whose Settle has returned). Days are folded from
  // quarter-hour sums, exact for every zone whose offset is a whole number of quarter hours
  // (all zones in use since 1980).
  absl::StatusOr<std::vector<UsageBucket>> Usage(const UsageQuery& query) override;

 private:
  struct DbCloser {
    void operator()(sqlite3* db) const;
  };
  using Db = std::unique_ptr<sqlite3, DbCloser>;
  struct Ticket {
    bool done = false;
    absl::Status status;
  };
  struct Queued {
    UsageRow row;
    std::shared_ptr<Ticket> ticket;
  };

  SqliteStore(Db write_db, Db read_db, int lock_fd);

  // Books `row` in the counters and queues it for the writer.
  std::shared_ptr<Ticket> Enqueue(UsageRow row) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Installs counters from the ledger plus the queued rows; see the lock order below.
  absl::Status InstallFromLedger(const std::vector<CounterKey>& keys);
  absl::StatusOr<bool> RowExists(const std::string& request_id) ABSL_LOCKS_EXCLUDED(read_mu_);
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; }
  void WriterLoop();
  absl::Status WriteRows(const std::vector<Queued>& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);

  // Lock order: db_mu_, then read_mu_, then mu_. The writer holds db_mu_ from taking a batch to
  // marking it committed, so whoever holds db_mu_ sees queue_ as exactly the rows not in the
  // file: that makes "ledger SUM + queued rows" exact when a counter is rebuilt.
  absl::Mutex db_mu_ ABSL_ACQUIRED_BEFORE(read_mu_);
  absl::Mutex read_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;

  Db write_db_ ABSL_GUARDED_BY(db_mu_);  // the writer's (and Open's) connection
  Db read_db_ ABSL_GUARDED_BY(read_mu_);
  const int lock_fd_;  // flock'ed for the store's lifetime

  Counters counters_ ABSL_GUARDED_BY(mu_);
  std::vector<Queued> queue_ ABSL_GUARDED_BY(mu_);  // booked, not yet taken by the writer
  // Request ids queued or being written: a second Settle of one is a duplicate.
  absl::flat_hash_set<std::string> unwritten_ids_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread writer_;  // last: starts after everything above is constructed
};

}  // namespace terse::tenancy
