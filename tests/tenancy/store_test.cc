// The Store contract, run against every store: budgets and rates checked together, holds and
// their expiry, idempotent settlement, windows in time zones, concurrency, usage queries.
#include "tenancy/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tenancy/memory_store.h"
#include "tenancy/redis_postgres_store.h"
#include "tenancy/sqlite_store.h"
#include "tests/support/status_matchers.h"
#include "tests/tenancy/replica_servers.h"
#include "tests/tenancy/tenancy_testing.h"

namespace terse::tenancy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using testing::At;
using testing::Budget;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::Rate;
using testing::Row;
using testing::Zone;

using Outcome = Decision::Outcome;
constexpr Limit::Kind kRpm = Limit::Kind::kRequestsPerMinute;
constexpr Limit::Kind kTpm = Limit::Kind::kTokensPerMinute;

enum class StoreKind { kMemory, kSqlite, kRedisPostgres };

class StoreTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { Open(); }

  void Open() {
    if (GetParam() == StoreKind::kMemory) {
      store_ = std::make_unique<InMemoryStore>();
      return;
    }
    if (GetParam() == StoreKind::kRedisPostgres) {
      testing::ReplicaServers* servers = testing::SharedReplicaServers();
      ASSERT_NE(servers, nullptr);
      absl::StatusOr<std::unique_ptr<RedisPostgresStore>> store =
          RedisPostgresStore::Open(testing::ReplicaOptions(*servers, dir_.path() + "/spool.jsonl"));
      ASSERT_THAT(store, IsOk());
      store_ = std::move(*store);
      return;
    }
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(dir_.path() + "/t.db");
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
  }

  Decision MustAdmit(const Admission& a) {
    absl::StatusOr<Decision> d = store_->Admit(a);
    EXPECT_THAT(d, IsOk());
    return d.ok() ? *d : Decision{};
  }

  // Admits `a`, expecting the outcome.
  Decision Expect(Outcome outcome, const Admission& a) {
    Decision d = MustAdmit(a);
    EXPECT_EQ(d.outcome, outcome) << a.request_id;
    return d;
  }

  bool MustSettle(const UsageRow& row) {
    absl::StatusOr<bool> booked = store_->Settle(row);
    EXPECT_THAT(booked, IsOk());
    return booked.ok() && *booked;
  }

  Spend SpendOf(const Limit& budget, absl::Time now) {
    absl::StatusOr<Spend> spend = store_->BudgetSpend(budget, now);
    EXPECT_THAT(spend, IsOk());
    return spend.ok() ? *spend : Spend{};
  }

  std::vector<UsageBucket> UsageOf(UsageQuery q) {
    absl::StatusOr<std::vector<UsageBucket>> usage = store_->Usage(q);
    EXPECT_THAT(usage, IsOk());
    return usage.ok() ? *usage : std::vector<UsageBucket>{};
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  const absl::Time t0_ = At("2026-05-04T12:00:00Z");
};

TEST_P(StoreTest, ABudgetAdmitsWhatFitsAndRefusesTheRestForGood) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  for (int i = 0; i < 3; ++i)
    Expect(Outcome::kAdmitted, testing::Admit(absl::StrCat("r", i), {budget}, 300, t0_));
  Decision refused = Expect(Outcome::kBudgetExhausted, testing::Admit("r3", {budget}, 300, t0_));
  EXPECT_EQ(refused.refused_by, 0);
  EXPECT_EQ(refused.retry_after, absl::ZeroDuration());
  EXPECT_THAT(refused.remaining, ElementsAre(100));
  // The refusal held nothing.
  Spend spend = SpendOf(budget, t0_);
  EXPECT_EQ(spend.held, 900);
  EXPECT_EQ(spend.settled, 0);
  // A smaller estimate still fits exactly.
  Expect(Outcome::kAdmitted, testing::Admit("r4", {budget}, 100, t0_));
}

TEST_P(StoreTest, BudgetsAreExactToTheMicroUpToATrillionDollars) {
  const Micros trillion_usd = 1'000'000'000'000 * kMicrosPerUsd;  // the config's largest budget
  const Limit budget = Budget("acme", "", trillion_usd, Period::kTotal);
  Expect(Outcome::kAdmitted, testing::Admit("r1", {budget}, trillion_usd - 1, t0_));
  Decision last = Expect(Outcome::kAdmitted, testing::Admit("r2", {budget}, 1, t0_));
  EXPECT_THAT(last.remaining, ElementsAre(0));
  Expect(Outcome::kBudgetExhausted, testing::Admit("r3", {budget}, 1, t0_));
  EXPECT_EQ(SpendOf(budget, t0_).held, trillion_usd);
}

TEST_P(StoreTest, SettlementReplacesTheEstimateByTheCost) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  Decision d = Expect(Outcome::kAdmitted, testing::Admit("r1", {budget}, 600, t0_));
  EXPECT_EQ(d.hold_deadline, t0_ + absl::Minutes(10));
  EXPECT_THAT(d.remaining, ElementsAre(400));
  EXPECT_TRUE(MustSettle(Row("r1", "acme", "k", t0_ + absl::Seconds(3), 250)));
  Spend spend = SpendOf(budget, t0_);
  EXPECT_EQ(spend.settled, 250);
  EXPECT_EQ(spend.held, 0);
  Expect(Outcome::kAdmitted, testing::Admit("r2", {budget}, 750, t0_));
  Expect(Outcome::kBudgetExhausted, testing::Admit("r3", {budget}, 1, t0_));
}

TEST_P(StoreTest, SettleIsIdempotentPerRequestId) {
  const Limit budget = Budget("acme", "", 1000, Period::kTotal);
  Expect(Outcome::kAdmitted, testing::Admit("r1", {budget}, 500, t0_));
  EXPECT_TRUE(MustSettle(Row("r1", "acme", "k", t0_, 400)));
  EXPECT_FALSE(MustSettle(Row("r1", "acme", "k", t0_, 400)));
  EXPECT_FALSE(MustSettle(Row("r1", "acme", "k", t0_, 999)));  // a different row, same id
  EXPECT_EQ(SpendOf(budget, t0_).settled, 400);
  std::vector<UsageBucket> usage = UsageOf({"acme", t0_ - absl::Hours(1), t0_ + absl::Hours(1)});
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].requests, 1);
  EXPECT_EQ(usage[0].cost, 400);
}

TEST_P(StoreTest, AnExpiredHoldIsReleasedWithoutBeingAsked) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  Expect(Outcome::kAdmitted, testing::Admit("crashed", {budget}, 1000, t0_, 0, absl::Minutes(1)));
  Expect(Outcome::kBudgetExhausted, testing::Admit("r1", {budget}, 1, t0_ + absl::Seconds(59)));
  // At its deadline the hold is gone: the next admission sees the budget whole.
  Decision d =
      Expect(Outcome::kAdmitted, testing::Admit("r2", {budget}, 1000, t0_ + absl::Seconds(60)));
  EXPECT_THAT(d.remaining, ElementsAre(0));
  absl::StatusOr<int> released = store_->ExpireHolds(t0_ + absl::Minutes(20));
  ASSERT_THAT(released, IsOk());
  EXPECT_EQ(*released, 1);  // r2's; "crashed" went at the admission above
  EXPECT_EQ(SpendOf(budget, t0_ + absl::Minutes(20)).held, 0);
}

TEST_P(StoreTest, ASettleAfterExpiryStillBooksTheMoneySpent) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  Expect(Outcome::kAdmitted, testing::Admit("slow", {budget}, 400, t0_, 0, absl::Minutes(1)));
  ASSERT_THAT(store_->ExpireHolds(t0_ + absl::Minutes(2)), IsOk());
  EXPECT_EQ(SpendOf(budget, t0_).held, 0);
  EXPECT_TRUE(MustSettle(Row("slow", "acme", "k", t0_, 350)));
  EXPECT_FALSE(MustSettle(Row("slow", "acme", "k", t0_, 350)));
  Spend spend = SpendOf(budget, t0_);
  EXPECT_EQ(spend.settled, 350);
  EXPECT_EQ(spend.held, 0);
}

TEST_P(StoreTest, ARowWithoutAdmissionIsBookedToo) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  Expect(Outcome::kAdmitted, testing::Admit("r1", {budget}, 100, t0_));
  EXPECT_TRUE(MustSettle(Row("unheld", "acme", "k", t0_, 300)));
  EXPECT_EQ(SpendOf(budget, t0_).settled, 300);
  EXPECT_EQ(SpendOf(budget, t0_).held, 100);
}

TEST_P(StoreTest, TenantAndKeyBudgetsAreCheckedInOneStep) {
  const Limit tenant = Budget("acme", "", 1000, Period::kMonth);
  const Limit key_a = Budget("acme", "keyaaaaaaaaa", 500, Period::kMonth);
  const Limit key_b = Budget("acme", "keybbbbbbbbb", 800, Period::kMonth);
  Expect(Outcome::kAdmitted, testing::Admit("a1", {tenant, key_a}, 250, t0_));
  Expect(Outcome::kAdmitted, testing::Admit("a2", {tenant, key_a}, 250, t0_));
  Decision by_key =
      Expect(Outcome::kBudgetExhausted, testing::Admit("a3", {tenant, key_a}, 250, t0_));
  EXPECT_EQ(by_key.refused_by, 1);
  EXPECT_THAT(by_key.remaining, ElementsAre(500, 0));
  // Key B has room of its own but shares the tenant's.
  Expect(Outcome::kAdmitted, testing::Admit("b1", {tenant, key_b}, 250, t0_));
  Expect(Outcome::kAdmitted, testing::Admit("b2", {tenant, key_b}, 250, t0_));
  Decision by_tenant =
      Expect(Outcome::kBudgetExhausted, testing::Admit("b3", {tenant, key_b}, 250, t0_));
  EXPECT_EQ(by_tenant.refused_by, 0);
  EXPECT_EQ(SpendOf(key_b, t0_).held, 500);
  // Settling a key's row counts for the key and for the tenant, not for the other key.
  UsageRow row = Row("a1", "acme", "keyaaaaaaaaa", t0_, 100);
  EXPECT_TRUE(MustSettle(row));
  EXPECT_EQ(SpendOf(tenant, t0_).settled, 100);
  EXPECT_EQ(SpendOf(key_a, t0_).settled, 100);
  EXPECT_EQ(SpendOf(key_b, t0_).settled, 0);
  EXPECT_EQ(SpendOf(tenant, t0_).held, 750);
}

TEST_P(StoreTest, AllLimitsPassOrNothingIsCounted) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  const Limit rpm = Rate("acme", "", kRpm, 1);
  Expect(Outcome::kAdmitted, testing::Admit("r1", {budget, rpm}, 100, t0_));
  Decision d = Expect(Outcome::kRateLimited, testing::Admit("r2", {budget, rpm}, 100, t0_));
  EXPECT_EQ(d.refused_by, 1);
  EXPECT_EQ(d.retry_after, absl::Minutes(1));
  EXPECT_EQ(SpendOf(budget, t0_).held, 100);  // r2 held nothing
  // Budget refusals win over rate refusals: no retry would help.
  Decision both = Expect(Outcome::kBudgetExhausted, testing::Admit("r3", {budget, rpm}, 1000, t0_));
  EXPECT_EQ(both.refused_by, 0);
  EXPECT_EQ(both.retry_after, absl::ZeroDuration());
  // The rate refusal did not count either: one minute later exactly one more passes.
  Expect(Outcome::kAdmitted, testing::Admit("r4", {budget, rpm}, 100, t0_ + absl::Minutes(1)));
}

TEST_P(StoreTest, RequestsPerMinuteAreExactWithRetryAfter) {
  const Limit rpm = Rate("acme", "keyaaaaaaaaa", kRpm, 3);
  for (int i = 0; i < 3; ++i)
    Expect(Outcome::kAdmitted, testing::Admit(absl::StrCat("r", i), {rpm}, 0, t0_));
  Decision d =
      Expect(Outcome::kRateLimited, testing::Admit("r3", {rpm}, 0, t0_ + absl::Seconds(5)));
  EXPECT_EQ(d.retry_after, absl::Seconds(15));
  EXPECT_THAT(d.remaining, ElementsAre(0));
  Expect(Outcome::kRateLimited,
         testing::Admit("r4", {rpm}, 0, t0_ + absl::Seconds(20) - absl::Nanoseconds(1)));
  Decision next =
      Expect(Outcome::kAdmitted, testing::Admit("r5", {rpm}, 0, t0_ + absl::Seconds(20)));
  EXPECT_THAT(next.remaining, ElementsAre(0));
}

TEST_P(StoreTest, TokensPerMinuteCountTheEstimateThenTheActualTokens) {
  const Limit tpm = Rate("acme", "", kTpm, 1000);
  Expect(Outcome::kAdmitted, testing::Admit("r1", {tpm}, 0, t0_, 800));
  Decision d = Expect(Outcome::kRateLimited, testing::Admit("r2", {tpm}, 0, t0_, 800));
  EXPECT_EQ(d.retry_after, absl::Seconds(36));  // 600 tokens at 60 ms each
  UsageRow row = Row("r1", "acme", "k", t0_, 0);
  row.sent_prompt_tokens = 150;
  row.completion_tokens = 50;
  EXPECT_TRUE(MustSettle(row));
  // 800 counted became 200: 800 more fit now.
  Expect(Outcome::kAdmitted, testing::Admit("r3", {tpm}, 0, t0_, 800));
  Expect(Outcome::kRateLimited, testing::Admit("r4", {tpm}, 0, t0_, 1));
  // A request larger than the whole minute is refused for good.
  Decision large =
      Expect(Outcome::kTooLarge, testing::Admit("r5", {tpm}, 0, t0_ + absl::Hours(1), 1001));
  EXPECT_EQ(large.refused_by, 0);
  EXPECT_EQ(large.retry_after, absl::ZeroDuration());
}

TEST_P(StoreTest, ShadowLimitsCountAndReportButNeverRefuse) {
  const Limit shadow_budget = Budget("acme", "", 100, Period::kDay, absl::UTCTimeZone(), true);
  const Limit shadow_rpm = Rate("acme", "", kRpm, 1, true);
  Decision first =
      Expect(Outcome::kAdmitted, testing::Admit("r1", {shadow_budget, shadow_rpm}, 60, t0_));
  EXPECT_THAT(first.shadow_exceeded, IsEmpty());
  Decision second =
      Expect(Outcome::kAdmitted, testing::Admit("r2", {shadow_budget, shadow_rpm}, 60, t0_));
  EXPECT_THAT(second.shadow_exceeded, ElementsAre(0, 1));
  EXPECT_THAT(second.remaining, ElementsAre(-20, 0));
  // A shadow rate counts only what a real one would have admitted: a minute later it is clear.
  Decision later =
      Expect(Outcome::kAdmitted, testing::Admit("r3", {shadow_rpm}, 0, t0_ + absl::Minutes(1)));
  EXPECT_THAT(later.shadow_exceeded, IsEmpty());
}

TEST_P(StoreTest, ARequestIdHoldsOnce) {
  const Limit budget = Budget("acme", "", 1000, Period::kDay);
  Expect(Outcome::kAdmitted, testing::Admit("r1", {budget}, 100, t0_));
  EXPECT_THAT(store_->Admit(testing::Admit("r1", {budget}, 100, t0_)),
              StatusIs(absl::StatusCode::kAlreadyExists));
}

TEST_P(StoreTest, DailyBudgetsResetAtLocalMidnightAcrossDst) {
  const Limit daily = Budget("acme", "", 1000, Period::kDay, Zone("America/New_York"));
  const absl::Time saturday_late = At("2026-03-07T23:30:00-05:00");
  Expect(Outcome::kAdmitted, testing::Admit("sat", {daily}, 900, saturday_late));
  EXPECT_TRUE(MustSettle(Row("sat", "acme", "k", saturday_late, 900)));
  Expect(Outcome::kBudgetExhausted,
         testing::Admit("sat2", {daily}, 200, At("2026-03-07T23:59:59-05:00")));
  // Sunday, the 23-hour day of the change: a fresh window from 00:00 EST to 00:00 EDT.
  const absl::Time sunday = At("2026-03-08T00:30:00-05:00");
  Expect(Outcome::kAdmitted, testing::Admit("sun", {daily}, 900, sunday));
  EXPECT_TRUE(MustSettle(Row("sun", "acme", "k", sunday, 900)));
  Expect(Outcome::kBudgetExhausted,
         testing::Admit("sun2", {daily}, 200, At("2026-03-08T23:59:59-04:00")));
  Expect(Outcome::kAdmitted, testing::Admit("mon", {daily}, 200, At("2026-03-09T00:00:00-04:00")));
  EXPECT_EQ(SpendOf(daily, sunday).settled, 900);
  EXPECT_EQ(SpendOf(daily, saturday_late).settled, 900);
}

TEST_P(StoreTest, MonthlyBudgetsTurnAtTheZonesMonthEnd) {
  const Limit monthly = Budget("acme", "", 1000, Period::kMonth, Zone("Asia/Kolkata"));
  const absl::Time january_last = At("2026-01-31T23:59:00+05:30");
  Expect(Outcome::kAdmitted, testing::Admit("jan", {monthly}, 1000, january_last));
  EXPECT_TRUE(MustSettle(Row("jan", "acme", "k", january_last, 1000)));
  Expect(Outcome::kBudgetExhausted,
         testing::Admit("jan2", {monthly}, 1, At("2026-01-31T18:29:59Z")));
  Expect(Outcome::kAdmitted, testing::Admit("feb", {monthly}, 1000, At("2026-01-31T18:30:00Z")));
  const Limit weekly = Budget("acme", "", 1000, Period::kWeek, Zone("Asia/Kolkata"));
  // Saturday 31 January and Sunday 1 February are the same week: January's row counts.
  EXPECT_EQ(SpendOf(weekly, At("2026-02-01T12:00:00+05:30")).settled, 1000);
  EXPECT_EQ(SpendOf(weekly, At("2026-02-02T00:00:00+05:30")).settled, 0);
}

TEST_P(StoreTest, HundredThreadsAgainstTenEstimatesAdmitExactlyTen) {
  const Limit budget = Budget("acme", "", 10 * 700, Period::kTotal);
  const Limit key_rpm = Rate("acme", "keyaaaaaaaaa", kRpm, 1000);
  std::atomic<int> admitted{0}, refused{0};
  std::vector<std::string> admitted_ids(100);
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<Decision> d =
          store_->Admit(testing::Admit(absl::StrCat("c", i), {budget, key_rpm}, 700, t0_));
      ASSERT_THAT(d, IsOk());
      if (d->admitted()) {
        admitted_ids[i] = absl::StrCat("c", i);
        ++admitted;
      } else {
        EXPECT_EQ(d->outcome, Outcome::kBudgetExhausted);
        ++refused;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 10);
  EXPECT_EQ(refused.load(), 90);
  EXPECT_EQ(SpendOf(budget, t0_).held, 7000);
  // Settle concurrently, each at its own cost, and a few twice.
  threads.clear();
  for (int i = 0; i < 100; ++i) {
    if (admitted_ids[i].empty()) continue;
    for (int copy = 0; copy < 2; ++copy) {
      threads.emplace_back([&, i] {
        EXPECT_THAT(store_->Settle(Row(admitted_ids[i], "acme", "keyaaaaaaaaa", t0_, 100 + i)),
                    IsOk());
      });
    }
  }
  for (std::thread& t : threads) t.join();
  Spend spend = SpendOf(budget, t0_);
  EXPECT_EQ(spend.held, 0);
  std::vector<UsageBucket> usage = UsageOf({"acme", absl::InfinitePast(), absl::InfiniteFuture()});
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].requests, 10);
  EXPECT_EQ(spend.settled, usage[0].cost);
  Micros expected = 0;
  for (int i = 0; i < 100; ++i) expected += admitted_ids[i].empty() ? 0 : 100 + i;
  EXPECT_EQ(spend.settled, expected);
}

TEST_P(StoreTest, HundredThreadsAgainstARateAdmitExactlyTheRate) {
  const Limit rpm = Rate("acme", "", kRpm, 25);
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&, i] {
      absl::StatusOr<Decision> d =
          store_->Admit(testing::Admit(absl::StrCat("c", i), {rpm}, 0, t0_));
      ASSERT_THAT(d, IsOk());
      if (d->admitted()) ++admitted;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 25);
}

TEST_P(StoreTest, UsageGroupsByDayModelRouteAndKey) {
  const absl::TimeZone kolkata = Zone("Asia/Kolkata");
  auto row = [](std::string id, std::string key, std::string time, std::string model,
                std::string route, Micros cost) {
    UsageRow r = Row(std::move(id), "acme", std::move(key), At(time), cost);
    r.model = std::move(model);
    r.route = std::move(route);
    r.original_prompt_tokens = 1000;
    r.sent_prompt_tokens = 400;
    r.completion_tokens = 50;
    r.cached_tokens = 100;
    r.savings = 15;
    return r;
  };
  // 18:29 UTC is 23:59 in Kolkata; 18:30 UTC is the next day there.
  for (const UsageRow& r : {
           row("u1", "keyaaaaaaaaa", "2026-03-01T18:29:00Z", "gpt-4o", "chat", 100),
           row("u2", "keyaaaaaaaaa", "2026-03-01T18:30:00Z", "gpt-4o-mini", "chat", 10),
           row("u3", "keybbbbbbbbb", "2026-03-02T10:00:00Z", "gpt-4o", "rag", 200),
           row("u4", "keybbbbbbbbb", "2026-03-05T10:00:00Z", "gpt-4o", "rag", 1000),  // after `to`
       }) {
    EXPECT_TRUE(MustSettle(r));
  }
  EXPECT_TRUE(MustSettle(Row("other", "globex", "k", At("2026-03-02T10:00:00Z"), 5000)));
  UsageQuery q{"acme", At("2026-03-01T00:00:00Z"), At("2026-03-05T10:00:00Z"), GroupBy::kDay,
               kolkata};
  std::vector<UsageBucket> days = UsageOf(q);
  ASSERT_EQ(days.size(), 2u);
  EXPECT_EQ(days[0].group, "2026-03-01");
  EXPECT_EQ(days[0].requests, 1);
  EXPECT_EQ(days[0].cost, 100);
  EXPECT_EQ(days[1].group, "2026-03-02");
  EXPECT_EQ(days[1].requests, 2);
  EXPECT_EQ(days[1].cost, 210);
  EXPECT_EQ(days[1].original_prompt_tokens, 2000);
  EXPECT_EQ(days[1].sent_prompt_tokens, 800);
  EXPECT_EQ(days[1].completion_tokens, 100);
  EXPECT_EQ(days[1].cached_tokens, 200);
  EXPECT_EQ(days[1].savings, 30);
  q.time_zone = absl::UTCTimeZone();  // in UTC all three fall on 1 and 2 March differently
  days = UsageOf(q);
  ASSERT_EQ(days.size(), 2u);
  EXPECT_EQ(days[0].cost, 110);
  EXPECT_EQ(days[1].cost, 200);

  q.group_by = GroupBy::kModel;
  std::vector<UsageBucket> models = UsageOf(q);
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[0].group, "gpt-4o");
  EXPECT_EQ(models[0].cost, 300);
  EXPECT_EQ(models[1].group, "gpt-4o-mini");
  EXPECT_EQ(models[1].cost, 10);
  q.group_by = GroupBy::kRoute;
  std::vector<UsageBucket> routes = UsageOf(q);
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].group, "chat");
  EXPECT_EQ(routes[0].cost, 110);
  EXPECT_EQ(routes[1].group, "rag");
  EXPECT_EQ(routes[1].cost, 200);
  q.group_by = GroupBy::kKey;
  std::vector<UsageBucket> keys = UsageOf(q);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].group, "keyaaaaaaaaa");
  EXPECT_EQ(keys[0].requests, 2);
  EXPECT_EQ(keys[1].group, "keybbbbbbbbb");
  EXPECT_EQ(keys[1].cost, 200);
  q.group_by = GroupBy::kNone;
  std::vector<UsageBucket> total = UsageOf(q);
  ASSERT_EQ(total.size(), 1u);
  EXPECT_EQ(total[0].group, "");
  EXPECT_EQ(total[0].requests, 3);
  EXPECT_EQ(total[0].cost, 310);
  EXPECT_THAT(UsageOf({"nobody", absl::InfinitePast(), absl::InfiniteFuture()}), IsEmpty());
}

TEST_P(StoreTest, MalformedRowsAreRefused) {
  UsageRow row = Row("r1", "acme", "k", t0_, 1);
  row.request_id.clear();
  EXPECT_THAT(store_->Settle(row), StatusIs(absl::StatusCode::kInvalidArgument));
  row = Row("r1", "", "k", t0_, 1);
  EXPECT_THAT(store_->Settle(row), StatusIs(absl::StatusCode::kInvalidArgument));
  row = Row("r1", "acme", "k", t0_, -1);
  EXPECT_THAT(store_->Settle(row), StatusIs(absl::StatusCode::kInvalidArgument));
  row = Row("r1", "acme", "k", t0_, 1);
  row.completion_tokens = -5;
  EXPECT_THAT(store_->Settle(row), StatusIs(absl::StatusCode::kInvalidArgument));
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest,
                         ::testing::Values(StoreKind::kMemory, StoreKind::kSqlite,
                                           StoreKind::kRedisPostgres),
                         [](const ::testing::TestParamInfo<StoreKind>& info) {
                           switch (info.param) {
                             case StoreKind::kMemory:
                               return "Memory";
                             case StoreKind::kSqlite:
                               return "Sqlite";
                             case StoreKind::kRedisPostgres:
                               return "RedisPostgres";
                           }
                           return "";
                         });

}  // namespace
}  // namespace terse::tenancy
