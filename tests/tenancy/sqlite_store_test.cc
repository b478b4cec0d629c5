// What only the SQLite store promises: rows survive the process (even kill -9), counters come
// back from the rows, holds do not come back, and one process owns the file.
#include "tenancy/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/status_matchers.h"
#include "tests/tenancy/tenancy_testing.h"

namespace terse::tenancy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using testing::At;
using testing::Budget;
using testing::Row;

std::unique_ptr<SqliteStore> MustOpen(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(path);
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(*store) : nullptr;
}

TEST(SqliteStoreTest, OneStoreOwnsTheFile) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/sub/dir/ledger.db";  // directories are made
  std::unique_ptr<SqliteStore> first = MustOpen(path);
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(SqliteStore::Open(path), StatusIs(absl::StatusCode::kFailedPrecondition));
  first.reset();
  EXPECT_NE(MustOpen(path), nullptr);
}

TEST(SqliteStoreTest, TheLedgerIsAWalDatabaseWithEveryField) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/ledger.db";
  std::unique_ptr<SqliteStore> store = MustOpen(path);
  UsageRow row = Row("req-1", "acme", "keyaaaaaaaaa", At("2026-05-04T12:00:00.123456Z"), 1234);
  row.route = "chat";
  row.provider = "anthropic";
  row.model = "claude-sonnet-4-5";
  row.original_prompt_tokens = 5000;
  row.sent_prompt_tokens = 2000;
  row.completion_tokens = 300;
  row.cached_tokens = 1000;
  row.savings = 9000;
  row.latency_ms = 812;
  row.http_status = 200;
  row.compressed = true;
  row.shed = false;
  ASSERT_THAT(store->Settle(row), IsOk());
  EXPECT_TRUE(std::filesystem::exists(path + "-wal"));

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT * FROM usage", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  auto text = [&](int i) {
    return std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, i)));
  };
  EXPECT_EQ(text(0), "req-1");
  EXPECT_EQ(sqlite3_column_int64(stmt, 1), absl::ToUnixMicros(row.time));
  EXPECT_EQ(text(2), "acme");
  EXPECT_EQ(text(3), "keyaaaaaaaaa");
  EXPECT_EQ(text(4), "chat");
  EXPECT_EQ(text(5), "anthropic");
  EXPECT_EQ(text(6), "claude-sonnet-4-5");
  const std::vector<int64_t> numbers = {5000, 2000, 300, 1000, 1234, 9000, 812, 200, 1, 0};
  for (size_t i = 0; i < numbers.size(); ++i) {
    EXPECT_EQ(sqlite3_column_int64(stmt, 7 + i), numbers[i]) << "column " << 7 + i;
  }
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_DONE);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(SqliteStoreTest, CountersComeBackFromTheRowsAndHoldsDoNot) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/ledger.db";
  const absl::Time t0 = At("2026-05-04T12:00:00Z");
  const Limit monthly = Budget("acme", "", 1000, Period::kMonth);
  const Limit key_total = Budget("acme", "keyaaaaaaaaa", 5000, Period::kTotal);
  {
    std::unique_ptr<SqliteStore> store = MustOpen(path);
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(store->Admit(testing::Admit(absl::StrCat("r", i), {monthly, key_total}, 200, t0))
                      ->admitted());
    }
    for (int i = 0; i < 3; ++i) {
      ASSERT_THAT(store->Settle(Row(absl::StrCat("r", i), "acme", "keyaaaaaaaaa", t0, 150)),
                  IsOk());
    }
    // r3 stays held when the store goes away.
    EXPECT_EQ(store->BudgetSpend(monthly, t0)->held, 200);
  }
  std::unique_ptr<SqliteStore> store = MustOpen(path);
  Spend spend = *store->BudgetSpend(monthly, t0);
  EXPECT_EQ(spend.settled, 450);
  EXPECT_EQ(spend.held, 0);
  EXPECT_EQ(store->BudgetSpend(key_total, t0)->settled, 450);
  // Exactly what the rows leave: 550.
  EXPECT_TRUE(store->Admit(testing::Admit("n1", {monthly, key_total}, 550, t0))->admitted());
  EXPECT_EQ(store->Admit(testing::Admit("n2", {monthly, key_total}, 1, t0))->outcome,
            Decision::Outcome::kBudgetExhausted);
  // Settled ids stay settled; the unsettled one can be booked late, once.
  EXPECT_FALSE(*store->Settle(Row("r0", "acme", "keyaaaaaaaaa", t0, 150)));
  EXPECT_TRUE(*store->Settle(Row("r3", "acme", "keyaaaaaaaaa", t0, 10)));
  EXPECT_FALSE(*store->Settle(Row("r3", "acme", "keyaaaaaaaaa", t0, 10)));
  EXPECT_EQ(store->BudgetSpend(monthly, t0)->settled, 460);
}

TEST(SqliteStoreTest, ACounterBuiltWhileRowsAreQueuedCountsEachRowOnce) {
  testing::TempDir dir;
  std::unique_ptr<SqliteStore> store = MustOpen(dir.path() + "/ledger.db");
  const absl::Time t0 = At("2026-05-04T12:00:00Z");
  // Rows without holds settle while other threads make the counter appear for the first time.
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 25; ++j) {
        ASSERT_THAT(store->Settle(Row(absl::StrCat("s", i, "-", j), "acme", "k", t0, 1)), IsOk());
      }
    });
  }
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      const Limit total = Budget("acme", "", 1'000'000, Period::kTotal);
      for (int j = 0; j < 10; ++j) {
        ASSERT_THAT(store->Admit(testing::Admit(absl::StrCat("a", i, "-", j), {total}, 0, t0)),
                    IsOk());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(store->BudgetSpend(Budget("acme", "", 1, Period::kTotal), t0)->settled, 200);
}

// SettleAsync books a row once it is in the file, whether or not the row had a hold; a repeat,
// queued or written, is answered false.
TEST(SqliteStoreTest, SettleAsyncAnswersOnceTheRowIsWritten) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/ledger.db";
  std::unique_ptr<SqliteStore> store = MustOpen(path);
  const absl::Time t0 = At("2026-05-04T12:00:00Z");
  const Limit total = Budget("acme", "", 1'000'000, Period::kTotal);
  ASSERT_TRUE(store->Admit(testing::Admit("held", {total}, 500, t0))->admitted());
  absl::Mutex mu;
  std::vector<std::pair<std::string, absl::StatusOr<bool>>> answers;
  auto settle = [&](const std::string& id) {
    store->SettleAsync(Row(id, "acme", "k", t0, 100), [&, id](absl::StatusOr<bool> booked) {
      // A booked row is readable by then: a fresh read connection sees it. (A repeat of a row
      // still queued is answered at once.)
      absl::MutexLock lock(&mu);
      answers.emplace_back(id, booked);
      if (!booked.ok() || !*booked) return;
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
      sqlite3_stmt* select = nullptr;
      sqlite3_prepare_v2(db, "SELECT 1 FROM usage WHERE request_id = ?1", -1, &select, nullptr);
      sqlite3_bind_text(select, 1, id.c_str(), -1, SQLITE_TRANSIENT);
      EXPECT_EQ(sqlite3_step(select), SQLITE_ROW) << id;
      sqlite3_finalize(select);
      sqlite3_close(db);
    });
  };
  settle("held");
  settle("held");     // a repeat while the first may still be queued
  settle("no-hold");  // checked against the ledger by the writer
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](decltype(answers)* a) { return a->size() == 3; }, &answers));
  }
  int booked = 0;
  for (const auto& [id, answer] : answers) {
    ASSERT_THAT(answer, IsOk()) << id;
    booked += *answer;
  }
  EXPECT_EQ(booked, 2);
  EXPECT_EQ(store->Settle(Row("no-hold", "acme", "k", t0, 100)).value_or(true), false);
  EXPECT_EQ(store->BudgetSpend(total, t0)->settled, 200);
  EXPECT_EQ(store->BudgetSpend(total, t0)->held, 0);
}

// A child process admits and settles from several threads and reports each settled id once its
// Settle has returned; the parent kills it with SIGKILL mid-stream, reopens the file, and finds
// every reported row, and no hold. Both durabilities promise this.
class SqliteKillTest : public ::testing::TestWithParam<SqliteStore::Durability> {};

TEST_P(SqliteKillTest, KillNineLosesNoSettledRowAndLeavesNoHold) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/ledger.db";
  const absl::Time t0 = At("2026-05-04T12:00:00Z");
  const Limit total = Budget("acme", "", 1'000'000'000, Period::kTotal);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(path, GetParam());
    if (!store.ok()) _exit(3);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0;; ++i) {
          const std::string id = absl::StrCat("t", t, "-", i);
          absl::StatusOr<Decision> d = (*store)->Admit(testing::Admit(id, {total}, 500, t0));
          if (!d.ok() || !d->admitted()) _exit(4);
          std::string line;
          if (i % 3 == 2) {
            line = "H " + id + "\n";  // left held
          } else {
            absl::StatusOr<bool> booked = (*store)->Settle(Row(id, "acme", "k", t0, 100));
            if (!booked.ok() || !*booked) _exit(5);
            line = "S " + id + "\n";
          }
          if (write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size()))
            _exit(6);
        }
      });
    }
    for (std::thread& t : threads) t.join();
    _exit(0);
  }
  close(fds[1]);
  FILE* reports = fdopen(fds[0], "r");
  ASSERT_NE(reports, nullptr);
  std::set<std::string> settled, held;
  char kind;
  char id[64];
  while (settled.size() < 300 && fscanf(reports, "%c %63s\n", &kind, id) == 2) {
    (kind == 'S' ? settled : held).insert(id);
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  // What it reported before dying counts too.
  while (fscanf(reports, "%c %63s\n", &kind, id) == 2) (kind == 'S' ? settled : held).insert(id);
  fclose(reports);
  ASSERT_GE(settled.size(), 300u);
  ASSERT_FALSE(held.empty());

  std::unique_ptr<SqliteStore> store = MustOpen(path);
  for (const std::string& request : settled) {
    absl::StatusOr<bool> booked = store->Settle(Row(request, "acme", "k", t0, 100));
    ASSERT_THAT(booked, IsOk());
    EXPECT_FALSE(*booked) << request << " was reported settled but is not in the ledger";
  }
  // No hold survived: the spend is the rows' and nothing else, and held ids may hold again.
  Spend spend = *store->BudgetSpend(total, t0);
  EXPECT_EQ(spend.held, 0);
  std::vector<UsageBucket> usage =
      *store->Usage({"acme", absl::InfinitePast(), absl::InfiniteFuture()});
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(spend.settled, usage[0].cost);
  EXPECT_GE(usage[0].requests, static_cast<int64_t>(settled.size()));
  EXPECT_TRUE(store->Admit(testing::Admit(*held.begin(), {total}, 500, t0))->admitted());
}

INSTANTIATE_TEST_SUITE_P(Durabilities, SqliteKillTest,
                         ::testing::Values(SqliteStore::Durability::kProcess,
                                           SqliteStore::Durability::kPower),
                         [](const auto& info) {
                           return info.param == SqliteStore::Durability::kPower ? "Power"
                                                                                : "Process";
                         });

}  // namespace
}  // namespace terse::tenancy
