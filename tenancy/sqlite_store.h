// The embedded store: admission decided in memory (Counters), the usage ledger in one SQLite file
// (WAL) that one process owns.
//
// Durability: a settled row is committed before its settlement completes (Settle returns,
// SettleAsync calls back), so a caller that settles before it answers loses no answered row to a
// crash or kill -9 of the process. With Durability::kPower the WAL is also fsynced at each commit
// (synchronous=FULL), so the row survives a power cut; with kProcess (synchronous=NORMAL) a
// power cut or OS crash may lose the last commits. Rows are written by one writer thread in group
// commits: every row queued while a commit is in flight goes into the next one, with statements
// prepared once, and the request path never waits on SQLite for anything else.
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
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "tenancy/counters.h"
#include "tenancy/store.h"

struct sqlite3;  // <sqlite3.h> stays in the .cc
struct sqlite3_stmt;

namespace terse::tenancy {

// Thread-safe.
class SqliteStore final : public Store {
 public:
  // What a committed row survives (see above).
  enum class Durability { kProcess, kPower };

  // Opens or creates the database at `path` (and its directory) and starts the writer.
  // kFailedPrecondition when another process (or another SqliteStore) has it open: budgets
  // shared between processes need the Redis store. kInternal for SQLite errors.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, Durability durability = Durability::kPower);
  // Commits every queued row (and completes its settlement), then stops the writer.
  ~SqliteStore() override;

  absl::StatusOr<Decision> Admit(const Admission& admission) override;
  // The row is committed when this returns true. If the write fails, the error is returned and
  // nothing is booked: the same row may be settled again.
  absl::StatusOr<bool> Settle(const UsageRow& row) override;
  // As Settle; `done` runs on the writer thread once the row's commit is done (or, for a row
  // refused by validation or a duplicate of a queued one, on the caller's at once).
  void SettleAsync(UsageRow row, SettleDone done) override;
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
  struct StmtFinalizer {
    void operator()(sqlite3_stmt* stmt) const;
  };
  using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;
  struct Queued {
    UsageRow row;
    SettleDone done;
  };

  SqliteStore(Db write_db, Db read_db, Stmt insert, Stmt exists, int lock_fd);

  // Books `q.row` in the counters and queues it for the writer.
  void Enqueue(Queued q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Installs counters from the ledger plus the queued rows; see the lock order below.
  absl::Status InstallFromLedger(const std::vector<CounterKey>& keys);
  absl::StatusOr<bool> RowExists(const std::string& request_id) ABSL_LOCKS_EXCLUDED(read_mu_);
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || !unchecked_.empty() || stopping_;
  }
  void WriterLoop();
  // One group commit: checks the rows without a hold against the ledger, books the new ones,
  // writes the batch, and completes every settlement taken (outside the locks). False when
  // there was nothing left to do.
  bool WriteOnce() ABSL_LOCKS_EXCLUDED(db_mu_, read_mu_, mu_);
  absl::Status WriteRows(const std::vector<Queued>& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);

  // Lock order: db_mu_, then read_mu_, then mu_. The writer holds db_mu_ from taking a batch to
  // marking it committed, so whoever holds db_mu_ sees queue_ as exactly the rows not in the
  // file: that makes "ledger SUM + queued rows" exact when a counter is rebuilt.
  absl::Mutex db_mu_ ABSL_ACQUIRED_BEFORE(read_mu_);
  absl::Mutex read_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;

  Db write_db_ ABSL_GUARDED_BY(db_mu_);  // the writer's (and Open's) connection
  Stmt insert_ ABSL_GUARDED_BY(db_mu_);  // on write_db_
  Db read_db_ ABSL_GUARDED_BY(read_mu_);
  Stmt exists_ ABSL_GUARDED_BY(read_mu_);  // on read_db_
  const int lock_fd_;                      // flock'ed for the store's lifetime

  Counters counters_ ABSL_GUARDED_BY(mu_);
  std::vector<Queued> queue_ ABSL_GUARDED_BY(mu_);  // booked, not yet taken by the writer
  // Settled without a hold (a repeat, an expired hold, a row from before a restart): not booked
  // until the writer has checked the ledger for them.
  std::vector<Queued> unchecked_ ABSL_GUARDED_BY(mu_);
  // Request ids queued or being written: a second Settle of one is a duplicate.
  absl::flat_hash_set<std::string> unwritten_ids_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread writer_;  // last: starts after everything above is constructed
};

}  // namespace terse::tenancy
