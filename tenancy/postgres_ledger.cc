// libpq connections in a pool, the schema, and the ledger's statements.
#include "tenancy/postgres_ledger.h"

#include <libpq-fe.h>
#include <poll.h>

#include <map>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace terse::tenancy {
namespace {

// The advisory lock key that serializes schema creation between replicas ("terse-sc").
constexpr int64_t kSchemaLock = 0x7465727365'2d7363;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS terse_usage (
  request_id text PRIMARY KEY,
  time_us bigint NOT NULL,
  tenant_id text NOT NULL,
  key_id text NOT NULL,
  route text NOT NULL,
  provider text NOT NULL,
  model text NOT NULL,
  original_prompt_tokens bigint NOT NULL,
  sent_prompt_tokens bigint NOT NULL,
  completion_tokens bigint NOT NULL,
  cached_tokens bigint NOT NULL,
  cost_micros bigint NOT NULL,
  savings_micros bigint NOT NULL,
  latency_ms bigint NOT NULL,
  http_status integer NOT NULL,
  compressed boolean NOT NULL,
  shed boolean NOT NULL,
  settle_token text NOT NULL  -- which booking wrote the row (RedisPostgresStore's replay)
);
CREATE INDEX IF NOT EXISTS terse_usage_by_tenant ON terse_usage (tenant_id, time_us);
CREATE INDEX IF NOT EXISTS terse_usage_by_key ON terse_usage (tenant_id, key_id, time_us);
)sql";

// FNV-1a: a tenant's advisory lock key. Two tenants sharing one only wait for each other.
int64_t TenantLockKey(const std::string& tenant_id) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : "terse tenant " + tenant_id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h);
}

bool IsUnavailable(const PGresult* result, const pg_conn* conn) {
  if (PQstatus(conn) != CONNECTION_OK) return true;
  const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  if (state == nullptr) return result == nullptr;
  const std::string s = state;
  // Connection errors, shutdowns, timeouts, lock waits, too many connections.
  return s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0 || s == "57014" || s == "55P03" ||
         s == "53300";
}

// A result, cleared on scope exit.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  PGresult* get() const { return r_; }
  int rows() const { return PQntuples(r_); }
  std::string Text(int row, int column) const { return PQgetvalue(r_, row, column); }
  int64_t Int(int row, int column) const {
    int64_t v = 0;
    (void)absl::SimpleAtoi(PQgetvalue(r_, row, column), &v);
    return v;
  }

 private:
  PGresult* r_;
};

// OK when `result` has the status a statement of its kind ends with.
absl::Status Check(const Result& result, pg_conn* conn, const char* what) {
  const ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return absl::OkStatus();
  std::string message = absl::StrCat("postgres: ", what, ": ", PQerrorMessage(conn));
  while (!message.empty() && message.back() == '\n') message.pop_back();
  return IsUnavailable(result.get(), conn) ? absl::UnavailableError(message)
                                           : absl::InternalError(message);
}

Result Exec(pg_conn* conn, const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  return Result(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0));
}

// A text[] literal: {"a","b"} with quotes and backslashes escaped.
std::string TextArray(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

// The WHERE clause and parameters of a counter's rows.
std::pair<std::string, std::vector<std::string>> CounterRows(const CounterKey& key) {
  std::vector<std::string> params = {key.tenant_id, absl::StrCat(key.window.start_us),
                                     absl::StrCat(key.window.end_us)};
  std::string where = "tenant_id = $1 AND time_us >= $2 AND time_us < $3";
  if (!key.key_id.empty()) {
    where += " AND key_id = $4";
    params.push_back(key.key_id);
  }
  return {where, params};
}

absl::StatusOr<Micros> SumOn(pg_conn* conn, const CounterKey& key) {
  auto [where, params] = CounterRows(key);
  Result sum(
      Exec(conn, "SELECT COALESCE(SUM(cost_micros), 0) FROM terse_usage WHERE " + where, params));
  RETURN_IF_ERROR(Check(sum, conn, "sum"));
  return sum.Int(0, 0);
}

// Whether an idle connection is still open: a server that restarted has closed it, which shows
// as readable without a round trip (whatever else arrived unasked is consumed).
bool StillOpen(pg_conn* conn) {
  if (PQstatus(conn) != CONNECTION_OK) return false;
  pollfd p{PQsocket(conn), POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) == 0) return true;
  if ((p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) return false;
  return PQconsumeInput(conn) == 1 && PQstatus(conn) == CONNECTION_OK;
}

}  // namespace

PostgresLedger::PostgresLedger(Options options) : options_(std::move(options)) {}

PostgresLedger::~PostgresLedger() {
  absl::MutexLock lock(&mu_);
  for (pg_conn* conn : idle_) PQfinish(conn);
}

absl::StatusOr<pg_conn*> PostgresLedger::Connect() {
  const std::string timeout_s = absl::StrCat(
      std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(options_.timeout, absl::Seconds(1)))));
  // The caller's string comes last, so its own connect_timeout wins.
  const char* keys[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {timeout_s.c_str(), options_.conninfo.c_str(), nullptr};
  pg_conn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = absl::StrCat("postgres: cannot connect: ", PQerrorMessage(conn));
    while (!message.empty() && message.back() == '\n') message.pop_back();
    PQfinish(conn);
    return absl::UnavailableError(message);
  }
  const int64_t ms = absl::ToInt64Milliseconds(options_.timeout);
  Result set(PQexec(conn, absl::StrCat("SET statement_timeout = ", ms, "; SET lock_timeout = ", ms,
                                       "; SET client_min_messages = warning")
                              .c_str()));
  absl::Status status = Check(set, conn, "session settings");
  bool need_schema;
  {
    absl::MutexLock lock(&mu_);
    need_schema = !schema_ready_;
  }
  if (status.ok() && need_schema) {
    Result schema(PQexec(conn, absl::StrCat("BEGIN; SELECT pg_advisory_xact_lock(", kSchemaLock,
                                            ");", kSchema, "COMMIT;")
                                   .c_str()));
    status = Check(schema, conn, "schema");
    if (status.ok()) {
      absl::MutexLock lock(&mu_);
      schema_ready_ = true;
    }
  }
  if (!status.ok()) {
    PQfinish(conn);
    return status;
  }
  return conn;
}

absl::StatusOr<pg_conn*> PostgresLedger::Acquire() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &PostgresLedger::CanOpen));
    while (!idle_.empty()) {
      pg_conn* conn = idle_.back();
      idle_.pop_back();
      if (StillOpen(conn)) return conn;
      PQfinish(conn);
      --open_;
    }
    if (absl::Now() < down_until_) return absl::UnavailableError("postgres: unreachable");
    ++open_;
  }
  absl::StatusOr<pg_conn*> conn = Connect();
  if (!conn.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    if (conn.status().code() == absl::StatusCode::kUnavailable) {
      down_until_ = absl::Now() + options_.retry_interval;
    }
  }
  return conn;
}

void PostgresLedger::Release(pg_conn* conn) {
  const bool reusable =
      PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) == PQTRANS_IDLE;
  if (!reusable) PQfinish(conn);
  absl::MutexLock lock(&mu_);
  if (reusable) {
    idle_.push_back(conn);
  } else {
    --open_;
  }
}

absl::StatusOr<PostgresLedger::Transaction> PostgresLedger::Begin(const std::string& tenant_id,
                                                                  Lock lock) {
  ASSIGN_OR_RETURN(pg_conn * conn, Acquire());
  Transaction tx(this, conn);
  const char* function =
      lock == Lock::kShared ? "pg_advisory_xact_lock_shared" : "pg_advisory_xact_lock";
  Result begin(PQexec(
      conn, absl::StrCat("BEGIN; SELECT ", function, "(", TenantLockKey(tenant_id), ")").c_str()));
  RETURN_IF_ERROR(Check(begin, conn, "begin"));
  return tx;
}

PostgresLedger::Transaction::Transaction(Transaction&& other) noexcept
    : ledger_(other.ledger_), conn_(std::exchange(other.conn_, nullptr)) {}

PostgresLedger::Transaction::~Transaction() {
  if (conn_ == nullptr) return;
  if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    PQclear(PQexec(conn_, "ROLLBACK"));
  }
  ledger_->Release(conn_);
}

absl::StatusOr<PostgresLedger::Transaction::Inserted> PostgresLedger::Transaction::Insert(
    const UsageRow& r, const std::string& token, bool want_token) {
  Result insert(Exec(conn_, R"sql(
      INSERT INTO terse_usage VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                                      $15, $16, $17, $18)
      ON CONFLICT (request_id) DO NOTHING RETURNING 1)sql",
                     {r.request_id, absl::StrCat(absl::ToUnixMicros(r.time)), r.tenant_id, r.key_id,
                      r.route, r.provider, r.model, absl::StrCat(r.original_prompt_tokens),
                      absl::StrCat(r.sent_prompt_tokens), absl::StrCat(r.completion_tokens),
                      absl::StrCat(r.cached_tokens), absl::StrCat(r.cost), absl::StrCat(r.savings),
                      absl::StrCat(r.latency_ms), absl::StrCat(r.http_status),
                      r.compressed ? "t" : "f", r.shed ? "t" : "f", token}));
  RETURN_IF_ERROR(Check(insert, conn_, "insert"));
  Inserted result;
  result.inserted = insert.rows() == 1;
  if (!result.inserted && want_token) {
    Result existing(
        Exec(conn_, "SELECT settle_token FROM terse_usage WHERE request_id = $1", {r.request_id}));
    RETURN_IF_ERROR(Check(existing, conn_, "token"));
    if (existing.rows() == 1) result.existing_token = existing.Text(0, 0);
  }
  return result;
}

absl::StatusOr<Micros> PostgresLedger::Transaction::Sum(const CounterKey& key) {
  return SumOn(conn_, key);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
PostgresLedger::Transaction::Tokens(const std::vector<std::string>& ids) {
  std::vector<std::pair<std::string, std::string>> found;
  if (ids.empty()) return found;
  Result select(Exec(conn_,
                     "SELECT request_id, settle_token FROM terse_usage WHERE request_id = "
                     "ANY($1::text[])",
                     {TextArray(ids)}));
  RETURN_IF_ERROR(Check(select, conn_, "tokens"));
  for (int i = 0; i < select.rows(); ++i) found.emplace_back(select.Text(i, 0), select.Text(i, 1));
  return found;
}

absl::Status PostgresLedger::Transaction::Commit() {
  Result commit(PQexec(conn_, "COMMIT"));
  absl::Status status = Check(commit, conn_, "commit");
  // A failed transaction "commits" as a ROLLBACK.
  if (status.ok() && std::string(PQcmdStatus(commit.get())) != "COMMIT") {
    status = absl::InternalError("postgres: the transaction was rolled back");
  }
  ledger_->Release(std::exchange(conn_, nullptr));
  return status;
}

absl::StatusOr<Micros> PostgresLedger::Sum(const CounterKey& key) {
  ASSIGN_OR_RETURN(pg_conn * conn, Acquire());
  absl::StatusOr<Micros> sum = SumOn(conn, key);
  Release(conn);
  return sum;
}

absl::StatusOr<std::vector<UsageBucket>> PostgresLedger::Usage(const UsageQuery& query) {
  const std::string sql = UsageQuerySql(query.group_by, "terse_usage", {"$1", "$2", "$3"}, "::text");
  ASSIGN_OR_RETURN(pg_conn * conn, Acquire());
  Result select(Exec(conn, sql,
                     {query.tenant_id, absl::StrCat(absl::ToUnixMicros(query.from)),
                      absl::StrCat(absl::ToUnixMicros(query.to))}));
  absl::Status status = Check(select, conn, "usage");
  Release(conn);
  RETURN_IF_ERROR(status);
  UsageFolder folder(query);
  for (int i = 0; i < select.rows(); ++i) {
    folder.Add(select.Int(i, 0), select.Text(i, 0),
               {select.Int(i, 1), select.Int(i, 2), select.Int(i, 3), select.Int(i, 4),
                select.Int(i, 5), select.Int(i, 6), select.Int(i, 7)});
  }
  return std::move(folder).Buckets();
}

}  // namespace terse::tenancy
