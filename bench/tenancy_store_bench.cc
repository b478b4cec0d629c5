// Admit + Settle per request on each tenancy store, as the request path calls them: a tenant's
// day budget and tokens per minute, a key's month budget and requests per minute, then the row.
// Memory; SQLite (WAL, synchronous=FULL: a group commit per settle); Redis + PostgreSQL, both
// started here on loopback, with PostgreSQL's fsync on (rows as durable as SQLite's) and off (what
// the round trips cost without the disk). One caller, then 8 at once (the stores that write share
// their commits between callers).
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "tenancy/memory_store.h"
#include "tenancy/redis_postgres_store.h"
#include "tenancy/sqlite_store.h"
#include "tests/support/servers.h"

namespace terse::tenancy {
namespace {

std::atomic<int64_t> next_id{0};

std::vector<Limit> Limits() {
  auto limit = [](Limit::Kind kind, std::string key, int64_t amount, Period period) {
    Limit l;
    l.kind = kind;
    l.tenant_id = "acme";
    l.key_id = std::move(key);
    l.amount = amount;
    l.period = period;
    l.name = "bench";
    return l;
  };
  return {limit(Limit::Kind::kBudget, "", int64_t{1} << 60, Period::kDay),
          limit(Limit::Kind::kTokensPerMinute, "", int64_t{1} << 40, Period::kTotal),
          limit(Limit::Kind::kBudget, "keyaaaaaaaaa", int64_t{1} << 60, Period::kMonth),
          limit(Limit::Kind::kRequestsPerMinute, "keyaaaaaaaaa", int64_t{1} << 40, Period::kTotal)};
}

void AdmitAndSettle(benchmark::State& state, Store& store) {
  const std::vector<Limit> limits = Limits();
  for (auto _ : state) {
    const std::string id = absl::StrCat("req-", next_id++);
    Admission a{id, "acme", "keyaaaaaaaaa", limits, 1500, 1200, absl::Now(), absl::Minutes(11)};
    absl::StatusOr<Decision> d = store.Admit(a);
    if (!d.ok() || !d->admitted()) {
      state.SkipWithError(d.ok() ? "refused" : std::string(d.status().message()).c_str());
      return;
    }
    UsageRow row;
    row.request_id = id;
    row.time = a.now;
    row.tenant_id = "acme";
    row.key_id = "keyaaaaaaaaa";
    row.route = "chat";
    row.provider = "openai";
    row.model = "gpt-4o-mini";
    row.original_prompt_tokens = 2000;
    row.sent_prompt_tokens = 1000;
    row.completion_tokens = 150;
    row.cost = 1234;
    row.savings = 800;
    row.latency_ms = 900;
    row.http_status = 200;
    absl::StatusOr<bool> booked = store.Settle(row);
    if (!booked.ok() || !*booked) {
      state.SkipWithError("settle failed");
      return;
    }
  }
}

// A directory for the files, removed at exit (after the stores, which are made later).
const std::string& TempDir() {
  struct Dir {
    Dir() {
      std::string pattern = "/tmp/terse-store-bench-XXXXXX";
      if (mkdtemp(pattern.data()) == nullptr) std::abort();
      path = pattern;
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
    std::string path;
  };
  static const Dir dir;
  return dir.path;
}

Store& Memory() {
  static InMemoryStore store;
  return store;
}

Store& Sqlite() {
  static std::unique_ptr<SqliteStore> store = [] {
    absl::StatusOr<std::unique_ptr<SqliteStore>> s = SqliteStore::Open(TempDir() + "/tenancy.db");
    if (!s.ok()) std::abort();
    return std::move(*s);
  }();
  return *store;
}

// A Redis + PostgreSQL store on servers of its own.
class ReplicaStore {
 public:
  explicit ReplicaStore(bool durable) {
    absl::StatusOr<std::unique_ptr<terse::testing::RedisServer>> r =
        terse::testing::RedisServer::Start();
    absl::StatusOr<std::unique_ptr<terse::testing::PostgresServer>> p =
        terse::testing::PostgresServer::Start({.durable = durable});
    if (!r.ok() || !p.ok()) {
      std::fprintf(stderr, "cannot start the servers: %s %s\n", r.status().ToString().c_str(),
                   p.status().ToString().c_str());
      std::abort();
    }
    redis_ = std::move(*r);
    postgres_ = std::move(*p);
    RedisPostgresOptions options;
    options.redis_url = redis_->url();
    options.postgres_url = postgres_->dsn();
    options.spool_path = absl::StrCat(TempDir(), "/spool-", durable, ".jsonl");
    absl::StatusOr<std::unique_ptr<RedisPostgresStore>> s = RedisPostgresStore::Open(options);
    if (!s.ok()) std::abort();
    store_ = std::move(*s);
  }
  Store& store() { return *store_; }

 private:
  std::unique_ptr<terse::testing::RedisServer> redis_;
  std::unique_ptr<terse::testing::PostgresServer> postgres_;
  std::unique_ptr<RedisPostgresStore> store_;  // last: goes before its servers
};

Store& RedisPostgres() {
  static ReplicaStore replica(/*durable=*/true);
  return replica.store();
}

Store& RedisPostgresNoFsync() {
  static ReplicaStore replica(/*durable=*/false);
  return replica.store();
}

void BM_Memory(benchmark::State& state) { AdmitAndSettle(state, Memory()); }
void BM_Sqlite(benchmark::State& state) { AdmitAndSettle(state, Sqlite()); }
void BM_RedisPostgres(benchmark::State& state) { AdmitAndSettle(state, RedisPostgres()); }
void BM_RedisPostgresNoFsync(benchmark::State& state) {
  AdmitAndSettle(state, RedisPostgresNoFsync());
}

BENCHMARK(BM_Memory)->Threads(1)->Threads(8)->UseRealTime();
BENCHMARK(BM_Sqlite)->Threads(1)->Threads(8)->UseRealTime();
BENCHMARK(BM_RedisPostgres)->Threads(1)->Threads(8)->UseRealTime();
BENCHMARK(BM_RedisPostgresNoFsync)->Threads(1)->Threads(8)->UseRealTime();

}  // namespace
}  // namespace terse::tenancy

BENCHMARK_MAIN();
