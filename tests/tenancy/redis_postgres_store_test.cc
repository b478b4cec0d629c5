// What only the replica store promises, on real Redis and PostgreSQL servers: two stores (two
// gateway processes) share budgets and rates exactly; Redis down refuses (closed) or admits on
// local counters (open); PostgreSQL down spools rows and replays each once; a Redis restarted
// empty gets its counters back from the ledger; holds expire whichever replica looks.
#include "tenancy/redis_postgres_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/errors.h"
#include "tests/support/status_matchers.h"
#include "tests/tenancy/replica_servers.h"
#include "tests/tenancy/tenancy_testing.h"

namespace terse::tenancy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using testing::At;
using testing::Budget;
using testing::Rate;
using testing::Row;
using Outcome = Decision::Outcome;

constexpr absl::Duration kWait = absl::Seconds(20);  // the bound of every wait below

std::unique_ptr<RedisPostgresStore> MustOpen(RedisPostgresOptions options) {
  absl::StatusOr<std::unique_ptr<RedisPostgresStore>> store =
      RedisPostgresStore::Open(std::move(options));
  EXPECT_THAT(store, IsOk());
  return store.ok() ? std::move(*store) : nullptr;
}

// Polls `done` until it holds or kWait passes.
template <typename F>
bool Eventually(F done) {
  const absl::Time deadline = absl::Now() + kWait;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class RedisPostgresStoreTest : public ::testing::Test {
 protected:
  Decision MustAdmit(Store& store, const Admission& a) {
    absl::StatusOr<Decision> d = store.Admit(a);
    EXPECT_THAT(d, IsOk()) << a.request_id;
    return d.ok() ? *d : Decision{};
  }
  bool MustSettle(Store& store, const UsageRow& row) {
    absl::StatusOr<bool> booked = store.Settle(row);
    EXPECT_THAT(booked, IsOk()) << row.request_id;
    return booked.ok() && *booked;
  }
  Spend SpendOf(Store& store, const Limit& budget) {
    absl::StatusOr<Spend> spend = store.BudgetSpend(budget, t0_);
    EXPECT_THAT(spend, IsOk());
    return spend.ok() ? *spend : Spend{};
  }
  UsageBucket Total(Store& store, const std::string& tenant = "acme") {
    absl::StatusOr<std::vector<UsageBucket>> usage =
        store.Usage({tenant, absl::InfinitePast(), absl::InfiniteFuture()});
    EXPECT_THAT(usage, IsOk());
    return usage.ok() && usage->size() == 1 ? (*usage)[0] : UsageBucket{};
  }

  testing::TempDir dir_;
  const absl::Time t0_ = At("2026-05-04T12:00:00Z");
};

TEST_F(RedisPostgresStoreTest, TwoReplicasEnforceOneBudgetAndOneRateExactly) {
  testing::ReplicaServers* servers = testing::SharedReplicaServers();
  ASSERT_NE(servers, nullptr);
  std::unique_ptr<RedisPostgresStore> a =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/a/spool.jsonl"));
  std::unique_ptr<RedisPostgresStore> b =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/b/spool.jsonl"));
  ASSERT_TRUE(a && b);
  Store* replicas[] = {a.get(), b.get()};

  // 100 concurrent admissions, half on each replica, against a budget that holds 10.
  const Limit budget = Budget("acme", "", 10 * 700, Period::kDay);
  std::atomic<int> admitted{0};
  std::vector<std::string> ids(100);
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<Decision> d =
          replicas[i % 2]->Admit(testing::Admit(absl::StrCat("c", i), {budget}, 700, t0_));
      ASSERT_THAT(d, IsOk());
      if (d->admitted()) {
        ids[i] = absl::StrCat("c", i);
        ++admitted;
      } else {
        EXPECT_EQ(d->outcome, Outcome::kBudgetExhausted);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 10);
  EXPECT_EQ(SpendOf(*a, budget).held, 7000);
  EXPECT_EQ(SpendOf(*b, budget).held, 7000);
  // Each settles on the other replica than the one that admitted it, concurrently, some twice.
  threads.clear();
  for (int i = 0; i < 100; ++i) {
    if (ids[i].empty()) continue;
    for (int copy = 0; copy < 2; ++copy) {
      threads.emplace_back([&, i] {
        EXPECT_THAT(replicas[(i + 1) % 2]->Settle(Row(ids[i], "acme", "k", t0_, 500)), IsOk());
      });
    }
  }
  for (std::thread& t : threads) t.join();
  Spend spend = SpendOf(*a, budget);
  EXPECT_EQ(spend.settled, 5000);
  EXPECT_EQ(spend.held, 0);
  EXPECT_EQ(Total(*b).requests, 10);
  // 2000 left: exactly two more of 700 fit, whichever replica asks.
  EXPECT_TRUE(MustAdmit(*a, testing::Admit("d1", {budget}, 700, t0_)).admitted());
  EXPECT_TRUE(MustAdmit(*b, testing::Admit("d2", {budget}, 700, t0_)).admitted());
  EXPECT_EQ(MustAdmit(*a, testing::Admit("d3", {budget}, 700, t0_)).outcome,
            Outcome::kBudgetExhausted);

  // One rate of 25 a minute, 100 concurrent requests across both.
  const Limit rpm = Rate("acme", "keyaaaaaaaaa", Limit::Kind::kRequestsPerMinute, 25);
  admitted = 0;
  threads.clear();
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<Decision> d =
          replicas[i % 2]->Admit(testing::Admit(absl::StrCat("r", i), {rpm}, 0, t0_));
      ASSERT_THAT(d, IsOk());
      if (d->admitted()) ++admitted;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 25);
  Decision next = MustAdmit(*b, testing::Admit("r-late", {rpm}, 0, t0_ + absl::Seconds(2)));
  EXPECT_EQ(next.outcome, Outcome::kRateLimited);
  EXPECT_EQ(next.retry_after, absl::Milliseconds(400));  // 2.4 s per request, 2 s passed
}

TEST_F(RedisPostgresStoreTest, RedisDownFailClosedRefusesWithUnavailable) {
  absl::StatusOr<testing::ReplicaServers> servers = testing::StartReplicaServers();
  ASSERT_THAT(servers, IsOk());
  std::atomic<int> warnings{0};
  std::unique_ptr<RedisPostgresStore> store =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl", &warnings));
  ASSERT_NE(store, nullptr);
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  ASSERT_TRUE(MustAdmit(*store, testing::Admit("r1", {budget}, 300, t0_)).admitted());

  ASSERT_THAT(servers->redis->Stop(), IsOk());
  absl::StatusOr<Decision> refused = store->Admit(testing::Admit("r2", {budget}, 300, t0_));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(HttpStatusOf(refused.status().code()), 503);
  EXPECT_THAT(store->BudgetSpend(budget, t0_), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_GE(warnings.load(), 1);
  // A settle still books: the row waits in the spool until Redis is back.
  EXPECT_TRUE(MustSettle(*store, Row("r1", "acme", "k", t0_, 250)));
  EXPECT_EQ(store->SpooledRows(), 1u);

  ASSERT_THAT(servers->redis->Restart(), IsOk());
  ASSERT_TRUE(Eventually([&] { return store->SpooledRows() == 0; }));
  EXPECT_TRUE(MustAdmit(*store, testing::Admit("r3", {budget}, 750, t0_)).admitted());
  Spend spend = SpendOf(*store, budget);
  EXPECT_EQ(spend.settled, 250);
  EXPECT_EQ(spend.held, 750);  // r1's hold died with Redis's state
  EXPECT_EQ(Total(*store).cost, 250);
}

TEST_F(RedisPostgresStoreTest, RedisDownFailOpenAdmitsOnLocalCounters) {
  absl::StatusOr<testing::ReplicaServers> servers = testing::StartReplicaServers();
  ASSERT_THAT(servers, IsOk());
  std::atomic<int> warnings{0};
  RedisPostgresOptions options =
      testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl", &warnings);
  options.fail_open = true;
  std::unique_ptr<RedisPostgresStore> store = MustOpen(options);
  ASSERT_NE(store, nullptr);
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  ASSERT_TRUE(MustAdmit(*store, testing::Admit("r0", {budget}, 600, t0_)).admitted());
  ASSERT_TRUE(MustSettle(*store, Row("r0", "acme", "k", t0_, 600)));

  ASSERT_THAT(servers->redis->Stop(), IsOk());
  // Local counters start from the ledger's 600.
  Decision local = MustAdmit(*store, testing::Admit("r1", {budget}, 300, t0_));
  EXPECT_TRUE(local.admitted());
  EXPECT_EQ(MustAdmit(*store, testing::Admit("r2", {budget}, 200, t0_)).outcome,
            Outcome::kBudgetExhausted);
  EXPECT_EQ(SpendOf(*store, budget).held, 300);
  EXPECT_EQ(warnings.load(), 1);  // once per outage, not per request
  EXPECT_TRUE(MustSettle(*store, Row("r1", "acme", "k", t0_, 100)));  // spooled

  ASSERT_THAT(servers->redis->Restart(), IsOk());
  ASSERT_TRUE(Eventually([&] { return store->SpooledRows() == 0; }));
  // Back on Redis, rebuilt from the ledger: 700 settled.
  EXPECT_TRUE(MustAdmit(*store, testing::Admit("r3", {budget}, 300, t0_)).admitted());
  EXPECT_EQ(MustAdmit(*store, testing::Admit("r4", {budget}, 1, t0_)).outcome,
            Outcome::kBudgetExhausted);
  // Redis down, the first spooled row, Redis back, the spool written: one line each.
  EXPECT_EQ(warnings.load(), 4);
}

TEST_F(RedisPostgresStoreTest, PostgresDownRowsWaitInTheSpoolAndReplayOnce) {
  absl::StatusOr<testing::ReplicaServers> servers = testing::StartReplicaServers();
  ASSERT_THAT(servers, IsOk());
  const RedisPostgresOptions options =
      testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl");
  std::unique_ptr<RedisPostgresStore> store = MustOpen(options);
  ASSERT_NE(store, nullptr);
  const Limit budget = Budget("acme", "", 10'000, Period::kDay);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        MustAdmit(*store, testing::Admit(absl::StrCat("r", i), {budget}, 1000, t0_)).admitted());
  }
  ASSERT_TRUE(MustSettle(*store, Row("r0", "acme", "k", t0_, 100)));

  ASSERT_THAT(servers->postgres->Stop(), IsOk());
  for (int i = 1; i < 4; ++i) {
    EXPECT_TRUE(MustSettle(*store, Row(absl::StrCat("r", i), "acme", "k", t0_, 100 * (i + 1))));
  }
  EXPECT_FALSE(MustSettle(*store, Row("r1", "acme", "k", t0_, 200)));  // waits already
  // A repeat of a row booked before the outage cannot be told apart now; the replay drops it.
  EXPECT_TRUE(MustSettle(*store, Row("r0", "acme", "k", t0_, 100)));
  EXPECT_EQ(store->SpooledRows(), 4u);
  EXPECT_THAT(store->Usage({"acme", absl::InfinitePast(), absl::InfiniteFuture()}),
              StatusIs(absl::StatusCode::kUnavailable));
  // Budgets hold meanwhile: Redis counted the spooled rows and released their holds.
  Spend during = SpendOf(*store, budget);
  EXPECT_EQ(during.settled, 100 + 200 + 300 + 400 + 100);
  EXPECT_EQ(during.held, 0);
  // The spool is a file: a new process finds the rows.
  store.reset();
  store = MustOpen(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->SpooledRows(), 4u);
  EXPECT_FALSE(MustSettle(*store, Row("r2", "acme", "k", t0_, 300)));
  EXPECT_THAT(store->ReplaySpool(), StatusIs(absl::StatusCode::kUnavailable));

  // Back: the store's replayer writes them, each once.
  ASSERT_THAT(servers->postgres->Resume(), IsOk());
  ASSERT_TRUE(Eventually([&] { return store->SpooledRows() == 0; }));
  UsageBucket total = Total(*store);
  EXPECT_EQ(total.requests, 4);
  EXPECT_EQ(total.cost, 100 + 200 + 300 + 400);
  EXPECT_EQ(SpendOf(*store, budget).settled, total.cost);  // the duplicate's cost came back out
  EXPECT_EQ(*servers->postgres->Sql("SELECT count(*) FROM terse_usage"), "4");
  EXPECT_FALSE(MustSettle(*store, Row("r3", "acme", "k", t0_, 400)));
  EXPECT_EQ(*store->ReplaySpool(), 0);
}

// Rows spooled by one replica are counted in Redis but not in the ledger yet; a counter another
// replica builds meanwhile must count them, and the replay must not count them again.
TEST_F(RedisPostgresStoreTest, ACounterBuiltWhileRowsWaitCountsThemOnce) {
  absl::StatusOr<testing::ReplicaServers> servers = testing::StartReplicaServers();
  ASSERT_THAT(servers, IsOk());
  const RedisPostgresOptions options_a =
      testing::ReplicaOptions(*servers, dir_.path() + "/a.jsonl");
  std::unique_ptr<RedisPostgresStore> a = MustOpen(options_a);
  std::unique_ptr<RedisPostgresStore> b =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/b.jsonl"));
  ASSERT_TRUE(a && b);
  const Limit day = Budget("acme", "", 100'000, Period::kDay);
  const Limit week = Budget("acme", "", 100'000, Period::kWeek);  // built after the outage
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(MustAdmit(*a, testing::Admit(absl::StrCat("r", i), {day}, 1000, t0_)).admitted());
  }
  ASSERT_TRUE(MustSettle(*a, Row("r0", "acme", "k", t0_, 100)));
  ASSERT_THAT(servers->postgres->Stop(), IsOk());
  for (int i = 1; i < 5; ++i)
    ASSERT_TRUE(MustSettle(*a, Row(absl::StrCat("r", i), "acme", "k", t0_, 10)));
  a.reset();  // its rows wait in its spool file; nobody replays them yet
  ASSERT_THAT(servers->postgres->Resume(), IsOk());

  EXPECT_EQ(SpendOf(*b, week).settled, 140);  // 100 from the ledger, 40 pending
  EXPECT_EQ(SpendOf(*b, day).settled, 140);
  EXPECT_EQ(Total(*b).requests, 1);
  a = MustOpen(options_a);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(Eventually([&] { return a->SpooledRows() == 0; }));
  EXPECT_EQ(Total(*b).requests, 5);
  EXPECT_EQ(SpendOf(*b, week).settled, 140);
  EXPECT_EQ(SpendOf(*a, day).settled, 140);
  EXPECT_EQ(*servers->redis->Command({"HLEN", "terse:{acme}:pending"}), "0");
  // A month counter built now comes from the ledger alone.
  EXPECT_EQ(SpendOf(*a, Budget("acme", "", 100'000, Period::kMonth)).settled, 140);
}

// A commit that succeeded although the store saw it fail (the connection dropped on COMMIT):
// the row is in the ledger and counted in Redis, and waits in the spool too. Its replay finds its
// own token in the ledger and keeps it counted once.
TEST_F(RedisPostgresStoreTest, AReplayRecognizesItsOwnCommit) {
  testing::ReplicaServers* servers = testing::SharedReplicaServers();
  ASSERT_NE(servers, nullptr);
  const Limit day = Budget("acme", "", 100'000, Period::kDay);
  std::unique_ptr<RedisPostgresStore> b =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/b.jsonl"));
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(SpendOf(*b, day).settled, 0);  // the table and the counter exist
  // The state the failed-looking settle left behind, made by hand.
  const std::string path = dir_.path() + "/a.jsonl";
  {
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(path);
    ASSERT_THAT(spool, IsOk());
    ASSERT_THAT((*spool)->Add(Row("lost", "acme", "k", t0_, 70), "tok-lost"), IsOk());
  }
  const std::string time_us = absl::StrCat(absl::ToUnixMicros(t0_));
  ASSERT_THAT(servers->postgres->Sql(absl::StrCat(
                  "INSERT INTO terse_usage VALUES ('lost', ", time_us,
                  ", 'acme', 'k', 'default', 'openai', 'gpt-4o', 0, 0, 0, 0, 70, 0, 0, 200, false, "
                  "false, 'tok-lost')")),
              IsOk());
  const Window w = WindowAt(Period::kDay, absl::UTCTimeZone(), t0_);
  const std::string counter = absl::StrCat("terse:{acme}:b:|", w.start_us, "|", w.end_us);
  ASSERT_THAT(servers->redis->Command({"HINCRBY", counter, "settled", "70"}), IsOk());
  ASSERT_THAT(servers->redis->Command({"HSET", "terse:{acme}:pending", "lost",
                                       absl::StrCat("tok-lost|", time_us, "|k|70")}),
              IsOk());

  std::unique_ptr<RedisPostgresStore> a = MustOpen(testing::ReplicaOptions(*servers, path));
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(Eventually([&] { return a->SpooledRows() == 0; }));
  EXPECT_EQ(SpendOf(*a, day).settled, 70);
  EXPECT_EQ(Total(*a).requests, 1);
  EXPECT_EQ(*servers->redis->Command({"HLEN", "terse:{acme}:pending"}), "0");
}

TEST_F(RedisPostgresStoreTest, RedisRestartedEmptyRebuildsCountersFromTheLedger) {
  absl::StatusOr<testing::ReplicaServers> servers = testing::StartReplicaServers();
  ASSERT_THAT(servers, IsOk());
  std::unique_ptr<RedisPostgresStore> store =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl"));
  ASSERT_NE(store, nullptr);
  const Limit monthly = Budget("acme", "", 1000, Period::kMonth);
  const Limit key_total = Budget("acme", "keyaaaaaaaaa", 5000, Period::kTotal);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        MustAdmit(*store, testing::Admit(absl::StrCat("r", i), {monthly, key_total}, 200, t0_))
            .admitted());
  }
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(MustSettle(*store, Row(absl::StrCat("r", i), "acme", "keyaaaaaaaaa", t0_, 150)));
  }
  EXPECT_EQ(SpendOf(*store, monthly).held, 200);

  ASSERT_THAT(servers->redis->Restart(), IsOk());
  ASSERT_EQ(*servers->redis->Command({"DBSIZE"}), "0");
  Spend spend = SpendOf(*store, monthly);
  EXPECT_EQ(spend.settled, 450);
  EXPECT_EQ(spend.held, 0);  // r3's hold went with Redis
  EXPECT_EQ(SpendOf(*store, key_total).settled, 450);
  EXPECT_EQ(*servers->redis->Command({"EXISTS", "terse:{acme}:epoch"}), "1");
  EXPECT_TRUE(MustAdmit(*store, testing::Admit("n1", {monthly, key_total}, 550, t0_)).admitted());
  EXPECT_EQ(MustAdmit(*store, testing::Admit("n2", {monthly, key_total}, 1, t0_)).outcome,
            Outcome::kBudgetExhausted);
  // Settled ids stay settled; the unsettled one books late, once.
  EXPECT_FALSE(MustSettle(*store, Row("r0", "acme", "keyaaaaaaaaa", t0_, 150)));
  EXPECT_TRUE(MustSettle(*store, Row("r3", "acme", "keyaaaaaaaaa", t0_, 10)));
  EXPECT_EQ(SpendOf(*store, monthly).settled, 460);
}

TEST_F(RedisPostgresStoreTest, HoldsExpirePastTheirDeadlineOnAnyReplica) {
  testing::ReplicaServers* servers = testing::SharedReplicaServers();
  ASSERT_NE(servers, nullptr);
  std::unique_ptr<RedisPostgresStore> a =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/a.jsonl"));
  std::unique_ptr<RedisPostgresStore> b =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/b.jsonl"));
  ASSERT_TRUE(a && b);
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  const Limit other = Budget("globex", "", 1000, Period::kDay);
  Decision d = MustAdmit(*a, testing::Admit("crashed", {budget}, 800, t0_, 0, absl::Minutes(1)));
  EXPECT_EQ(d.hold_deadline, t0_ + absl::Minutes(1));
  MustAdmit(*a, testing::Admit("g1", {other}, 100, t0_, 0, absl::Minutes(2)));
  EXPECT_EQ(*b->ExpireHolds(t0_ + absl::Seconds(59)), 0);
  EXPECT_EQ(SpendOf(*b, budget).held, 800);
  EXPECT_EQ(*b->ExpireHolds(t0_ + absl::Minutes(1)), 1);
  EXPECT_EQ(SpendOf(*a, budget).held, 0);
  EXPECT_EQ(SpendOf(*a, other).held, 100);
  EXPECT_EQ(*a->ExpireHolds(t0_ + absl::Minutes(5)), 1);
  // The request that outlived its hold still books what it spent.
  EXPECT_TRUE(MustSettle(*b, Row("crashed", "acme", "k", t0_, 900)));
  EXPECT_EQ(SpendOf(*a, budget).settled, 900);
}

TEST_F(RedisPostgresStoreTest, ATornSpoolLineIsCutOffAndTheRestReplays) {
  testing::ReplicaServers* servers = testing::SharedReplicaServers();
  ASSERT_NE(servers, nullptr);
  const std::string path = dir_.path() + "/spool.jsonl";
  {
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(path);
    ASSERT_THAT(spool, IsOk());
    ASSERT_THAT((*spool)->Add(Row("s1", "acme", "k", t0_, 70), "tok1"), IsOk());
    ASSERT_THAT((*spool)->Add(Row("s2", "acme", "k", t0_, 30), "tok2"), IsOk());
    ASSERT_THAT((*spool)->Remove("s2"), IsOk());
  }
  std::ofstream(path, std::ios::app) << R"({"row": {"request_id": "torn", "time_)";
  std::unique_ptr<RedisPostgresStore> store = MustOpen(testing::ReplicaOptions(*servers, path));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Eventually([&] { return store->SpooledRows() == 0; }));
  UsageBucket total = Total(*store);
  EXPECT_EQ(total.requests, 1);
  EXPECT_EQ(total.cost, 70);
  EXPECT_EQ(SpendOf(*store, Budget("acme", "", 1000, Period::kDay)).settled, 70);
}

TEST_F(RedisPostgresStoreTest, ARowPostgresRefusesIsAnErrorNotASpooledRow) {
  testing::ReplicaServers* servers = testing::SharedReplicaServers();
  ASSERT_NE(servers, nullptr);
  std::unique_ptr<RedisPostgresStore> store =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl"));
  ASSERT_NE(store, nullptr);
  UsageRow row = Row("bad", "acme", "k", t0_, 10);
  row.model = "gpt-\xff";  // not UTF-8
  EXPECT_THAT(store->Settle(row), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(store->SpooledRows(), 0u);
  EXPECT_EQ(SpendOf(*store, Budget("acme", "", 1000, Period::kDay)).settled, 0);
}

TEST_F(RedisPostgresStoreTest, KeysOfOneTenantShareOneHashTag) {
  testing::ReplicaServers* servers = testing::SharedReplicaServers();
  ASSERT_NE(servers, nullptr);
  std::unique_ptr<RedisPostgresStore> store =
      MustOpen(testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl"));
  ASSERT_NE(store, nullptr);
  const Limit budget = Budget("acme", "keyaaaaaaaaa", 1000, Period::kDay);
  const Limit tpm = Rate("acme", "", Limit::Kind::kTokensPerMinute, 10'000);
  MustAdmit(*store, testing::Admit("r1", {budget, tpm}, 100, t0_, 500));
  absl::StatusOr<std::string> keys = servers->redis->Command({"KEYS", "*"});
  ASSERT_THAT(keys, IsOk());
  for (absl::string_view key : absl::StrSplit(*keys, '\n')) {
    if (key == "terse:tenants") continue;
    EXPECT_TRUE(absl::StartsWith(key, "terse:{acme}:")) << key;
  }
  EXPECT_EQ(*servers->redis->Command({"SMEMBERS", "terse:tenants"}), "acme");
  // An admission naming another tenant's limit is refused before it reaches Redis.
  EXPECT_THAT(
      store->Admit(testing::Admit("x", {budget, Budget("globex", "", 1, Period::kDay)}, 1, t0_)),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace terse::tenancy
