// The SQLite ledger: schema, the group-commit writer, counter rebuilds and usage queries.
#include "tenancy/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace terse::tenancy {
namespace {

constexpr int kBusyTimeoutMs = 5000;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS usage (
  request_id TEXT PRIMARY KEY,
  time_us INTEGER NOT NULL,
  tenant_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  route TEXT NOT NULL,
  provider TEXT NOT NULL,
  model TEXT NOT NULL,
  original_prompt_tokens INTEGER NOT NULL,
  sent_prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  cost_micros INTEGER NOT NULL,
  savings_micros INTEGER NOT NULL,
  latency_ms INTEGER NOT NULL,
  http_status INTEGER NOT NULL,
  compressed INTEGER NOT NULL,
  shed INTEGER NOT NULL
) WITHOUT ROWID;
-- The budget sums read cost_micros from these indexes alone (no lookup per row), so the first
-- admission of a window stays cheap on a large ledger. Version 1's indexes lacked the cost.
DROP INDEX IF EXISTS usage_by_tenant;
DROP INDEX IF EXISTS usage_by_key;
CREATE INDEX IF NOT EXISTS usage_tenant_time_cost ON usage (tenant_id, time_us, cost_micros);
CREATE INDEX IF NOT EXISTS usage_key_time_cost ON usage (tenant_id, key_id, time_us, cost_micros);
PRAGMA user_version = 2;
)sql";

absl::Status SqliteError(sqlite3* db, const char* what) {
  return absl::InternalError(absl::StrCat("sqlite: ", what, ": ", sqlite3_errmsg(db)));
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) == SQLITE_OK) return absl::OkStatus();
  absl::Status status = absl::InternalError(absl::StrCat("sqlite: ", error ? error : "error"));
  sqlite3_free(error);
  return status;
}

// A prepared statement, finalized on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, std::string_view sql) : db_(db) {
    status_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const {
    return status_ == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, "prepare");
  }
  Statement& Bind(int i, std::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t value) {
    sqlite3_bind_int64(stmt_, i, value);
    return *this;
  }
  // True for a row, false when done.
  absl::StatusOr<bool> Step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, "step");
  }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    return text ? std::string(reinterpret_cast<const char*>(text)) : std::string();
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int status_;
};

constexpr char kInsertSql[] = R"sql(
    INSERT OR IGNORE INTO usage VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                                        ?14, ?15, ?16, ?17))sql";
constexpr char kExistsSql[] = "SELECT 1 FROM usage WHERE request_id = ?1";

absl::StatusOr<sqlite3_stmt*> Prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &stmt, nullptr) != SQLITE_OK) {
    return SqliteError(db, "prepare");
  }
  return stmt;
}

void BindText(sqlite3_stmt* stmt, int i, std::string_view text) {
  sqlite3_bind_text(stmt, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

absl::StatusOr<sqlite3*> OpenConnection(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = absl::InternalError(absl::StrCat(
        "sqlite: cannot open ", path, ": ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close_v2(db);
    return status;
  }
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  return db;
}

}  // namespace

void SqliteStore::DbCloser::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
void SqliteStore::StmtFinalizer::operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               Durability durability) {
  std::error_code ec;
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  // One process owns the file: two would each admit against their own counters.
  const std::string lock_path = path + ".lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", lock_path, ": ", strerror(errno)));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path,
                     " is in use by another process; several gateways sharing budgets need the "
                     "redis_postgres store"));
  }
  auto fail = [lock_fd](absl::Status status) {
    ::close(lock_fd);
    return status;
  };
  absl::StatusOr<sqlite3*> write_db = OpenConnection(path);
  if (!write_db.ok()) return fail(write_db.status());
  Db writer(*write_db);
  {
    // journal_mode answers with the mode in force, which must be wal.
    Statement wal(writer.get(), "PRAGMA journal_mode=WAL");
    absl::StatusOr<bool> row = wal.Step();
    if (!row.ok()) return fail(row.status());
    if (!*row || wal.Text(0) != "wal") {
      return fail(absl::InternalError("sqlite: " + path + " cannot use WAL journaling"));
    }
  }
  // In WAL mode NORMAL syncs only at checkpoints: a commit is in the OS's hands when it returns,
  // which a killed process cannot lose; FULL also fsyncs the WAL at each commit.
  const char* synchronous =
      durability == Durability::kPower ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  if (absl::Status s = Exec(writer.get(), synchronous); !s.ok()) return fail(s);
  if (absl::Status s = Exec(writer.get(), kSchema); !s.ok()) return fail(s);
  absl::StatusOr<sqlite3_stmt*> insert = Prepare(writer.get(), kInsertSql);
  if (!insert.ok()) return fail(insert.status());
  Stmt insert_stmt(*insert);
  absl::StatusOr<sqlite3*> read_db = OpenConnection(path);
  if (!read_db.ok()) return fail(read_db.status());
  Db reader(*read_db);
  if (absl::Status s = Exec(reader.get(), "PRAGMA query_only=1"); !s.ok()) return fail(s);
  absl::StatusOr<sqlite3_stmt*> exists = Prepare(reader.get(), kExistsSql);
  if (!exists.ok()) return fail(exists.status());
  Stmt exists_stmt(*exists);
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(writer), std::move(reader),
                                                      std::move(insert_stmt),
                                                      std::move(exists_stmt), lock_fd));
}

SqliteStore::SqliteStore(Db write_db, Db read_db, Stmt insert, Stmt exists, int lock_fd)
    : write_db_(std::move(write_db)),
      insert_(std::move(insert)),
      read_db_(std::move(read_db)),
      exists_(std::move(exists)),
      lock_fd_(lock_fd) {
  writer_ = std::thread([this] { WriterLoop(); });
}

SqliteStore::~SqliteStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();
  {
    absl::MutexLock db(&db_mu_);
    insert_.reset();
    write_db_.reset();
  }
  {
    absl::MutexLock read(&read_mu_);
    exists_.reset();
    read_db_.reset();
  }
  ::close(lock_fd_);
}

void SqliteStore::WriterLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &SqliteStore::HasWork));
    }
    if (!WriteOnce()) return;  // stopping, and everything is written
  }
}

bool SqliteStore::WriteOnce() {
  std::vector<std::pair<SettleDone, absl::StatusOr<bool>>> answers;
  {
    absl::MutexLock db(&db_mu_);
    std::vector<Queued> batch, unchecked;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty() && unchecked_.empty()) return false;
      batch.swap(queue_);
      unchecked.swap(unchecked_);
    }
    // No batch is in flight (db_mu_): the ledger and unwritten_ids_ together know every row.
    for (Queued& q : unchecked) {
      absl::StatusOr<bool> exists = RowExists(q.row.request_id);
      absl::MutexLock lock(&mu_);
      if (!exists.ok()) {
        answers.emplace_back(std::move(q.done), exists.status());
      } else if (*exists || unwritten_ids_.contains(q.row.request_id)) {
        answers.emplace_back(std::move(q.done), false);
      } else {
        counters_.Book(q.row);
        unwritten_ids_.insert(q.row.request_id);
        batch.push_back(std::move(q));
      }
    }
    const absl::Status status = batch.empty() ? absl::OkStatus() : WriteRows(batch);
    absl::MutexLock lock(&mu_);
    for (Queued& q : batch) {
      unwritten_ids_.erase(q.row.request_id);
      if (!status.ok()) counters_.Unbook(q.row);
      answers.emplace_back(std::move(q.done),
                           status.ok() ? absl::StatusOr<bool>(true) : absl::StatusOr<bool>(status));
    }
  }
  for (auto& [done, result] : answers) std::move(done)(std::move(result));
  return true;
}

absl::Status SqliteStore::WriteRows(const std::vector<Queued>& batch) {
  sqlite3* db = write_db_.get();
  sqlite3_stmt* insert = insert_.get();
  RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  absl::Status status;
  for (size_t i = 0; status.ok() && i < batch.size(); ++i) {
    const UsageRow& r = batch[i].row;
    BindText(insert, 1, r.request_id);
    sqlite3_bind_int64(insert, 2, absl::ToUnixMicros(r.time));
    BindText(insert, 3, r.tenant_id);
    BindText(insert, 4, r.key_id);
    BindText(insert, 5, r.route);
    BindText(insert, 6, r.provider);
    BindText(insert, 7, r.model);
    sqlite3_bind_int64(insert, 8, r.original_prompt_tokens);
    sqlite3_bind_int64(insert, 9, r.sent_prompt_tokens);
    sqlite3_bind_int64(insert, 10, r.completion_tokens);
    sqlite3_bind_int64(insert, 11, r.cached_tokens);
    sqlite3_bind_int64(insert, 12, r.cost);
    sqlite3_bind_int64(insert, 13, r.savings);
    sqlite3_bind_int64(insert, 14, r.latency_ms);
    sqlite3_bind_int64(insert, 15, r.http_status);
    sqlite3_bind_int64(insert, 16, r.compressed);
    sqlite3_bind_int64(insert, 17, r.shed);
    if (sqlite3_step(insert) != SQLITE_DONE) status = SqliteError(db, "insert");
    sqlite3_reset(insert);
  }
  sqlite3_clear_bindings(insert);  // the texts bound are the batch's, about to go
  if (status.ok()) status = Exec(db, "COMMIT");
  if (!status.ok()) Exec(db, "ROLLBACK").IgnoreError();  // fails harmlessly if none is open
  return status;
}

void SqliteStore::Enqueue(Queued q) {
  counters_.Book(q.row);
  unwritten_ids_.insert(q.row.request_id);
  queue_.push_back(std::move(q));
}

absl::StatusOr<bool> SqliteStore::RowExists(const std::string& request_id) {
  absl::MutexLock read(&read_mu_);
  sqlite3_stmt* select = exists_.get();
  BindText(select, 1, request_id);
  const int rc = sqlite3_step(select);
  sqlite3_reset(select);
  sqlite3_clear_bindings(select);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(read_db_.get(), "select");
}

void SqliteStore::SettleAsync(UsageRow row, SettleDone done) {
  if (absl::Status s = ValidateRow(row); !s.ok()) return std::move(done)(s);
  {
    absl::MutexLock lock(&mu_);
    if (!unwritten_ids_.contains(row.request_id)) {
      // The usual, first settle books at once; one without a hold waits for the writer's check.
      if (counters_.HasHold(row.request_id)) {
        Enqueue(Queued{std::move(row), std::move(done)});
      } else {
        unchecked_.push_back(Queued{std::move(row), std::move(done)});
      }
      return;
    }
  }
  std::move(done)(false);
}

absl::StatusOr<bool> SqliteStore::Settle(const UsageRow& row) {
  struct Result {
    absl::Mutex mu;
    std::optional<absl::StatusOr<bool>> value ABSL_GUARDED_BY(mu);
  };
  auto result = std::make_shared<Result>();
  SettleAsync(row, [result](absl::StatusOr<bool> settled) {
    absl::MutexLock lock(&result->mu);
    result->value = std::move(settled);
  });
  absl::MutexLock lock(&result->mu);
  result->mu.Await(absl::Condition(
      +[](std::optional<absl::StatusOr<bool>>* v) { return v->has_value(); }, &result->value));
  return *std::move(result->value);
}

absl::Status SqliteStore::InstallFromLedger(const std::vector<CounterKey>& keys) {
  absl::MutexLock db(&db_mu_);
  std::vector<Micros> sums;
  {
    absl::MutexLock read(&read_mu_);
    for (const CounterKey& key : keys) {
      Statement sum(read_db_.get(),
                    key.key_id.empty()
                        ? "SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE tenant_id = ?1 "
                          "AND time_us >= ?3 AND time_us < ?4"
                        : "SELECT COALESCE(SUM(cost_micros), 0) FROM usage WHERE tenant_id = ?1 "
                          "AND key_id = ?2 AND time_us >= ?3 AND time_us < ?4");
      RETURN_IF_ERROR(sum.status());
      sum.Bind(1, key.tenant_id).Bind(3, key.window.start_us).Bind(4, key.window.end_us);
      if (!key.key_id.empty()) sum.Bind(2, key.key_id);
      RETURN_IF_ERROR(sum.Step().status());
      sums.push_back(sum.Int(0));
    }
  }
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (counters_.Has(keys[i])) continue;
    Micros settled = sums[i];
    for (const Queued& q : queue_) {
      if (keys[i].Counts(q.row)) settled += q.row.cost;
    }
    counters_.Install(keys[i], settled);
  }
  return absl::OkStatus();
}

absl::StatusOr<Decision> SqliteStore::Admit(const Admission& admission) {
  // A counter installed here may be pruned by a concurrent ExpireHolds before it is used; a few
  // rounds settle that race.
  for (int round = 0; round < 4; ++round) {
    std::vector<CounterKey> missing;
    {
      absl::MutexLock lock(&mu_);
      missing = counters_.Missing(admission);
      if (missing.empty()) return counters_.Admit(admission);
    }
    RETURN_IF_ERROR(InstallFromLedger(missing));
  }
  return absl::AbortedError("budget counters kept being pruned during admission; retry");
}

absl::StatusOr<int> SqliteStore::ExpireHolds(absl::Time now) {
  absl::MutexLock lock(&mu_);
  return counters_.ExpireHolds(now, /*prune=*/true);
}

absl::StatusOr<Spend> SqliteStore::BudgetSpend(const Limit& budget, absl::Time now) {
  const CounterKey key = BudgetCounterKey(budget, now);
  RETURN_IF_ERROR(InstallFromLedger({key}));
  absl::MutexLock lock(&mu_);
  return counters_.SpendOf(key);
}

absl::StatusOr<std::vector<UsageBucket>> SqliteStore::Usage(const UsageQuery& query) {
  const std::string sql = UsageQuerySql(query.group_by, "usage", {"?1", "?2", "?3"}, "");
  UsageFolder folder(query);
  absl::MutexLock read(&read_mu_);
  Statement select(read_db_.get(), sql);
  RETURN_IF_ERROR(select.status());
  select.Bind(1, query.tenant_id)
      .Bind(2, absl::ToUnixMicros(query.from))
      .Bind(3, absl::ToUnixMicros(query.to));
  for (;;) {
    ASSIGN_OR_RETURN(const bool more, select.Step());
    if (!more) break;
    folder.Add(select.Int(0), select.Text(0),
               {select.Int(1), select.Int(2), select.Int(3), select.Int(4), select.Int(5),
                select.Int(6), select.Int(7)});
  }
  return std::move(folder).Buckets();
}

}  // namespace terse::tenancy
