// The policy layer on a real store: authentication, authorization, the limits of a key, the
// estimate of an admission, the money of a settlement, and the errors refusals answer with.
#include "tenancy/tenancy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/errors.h"
#include "tenancy/keys.h"
#include "tenancy/memory_store.h"
#include "tests/support/status_matchers.h"
#include "tests/tenancy/tenancy_testing.h"

namespace terse::tenancy {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using testing::At;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

using Outcome = Decision::Outcome;

class TenancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    acme_key_ = *GenerateKey();
    acme_second_ = *GenerateKey();
    revoked_ = *GenerateKey();
    globex_key_ = *GenerateKey();

    v1::Tenancy& c = config_;
    c.set_time_zone("Europe/Paris");
    c.set_default_output_tokens(1000);
    c.set_hold_lease_ms(60000);
    v1::ModelPrice& gpt4o = (*c.mutable_prices())["gpt-4o"];
    gpt4o.set_litellm_provider("openai");
    gpt4o.set_input_cost_per_token(2.5e-6);
    gpt4o.set_cache_read_input_token_cost(1.25e-6);
    gpt4o.set_output_cost_per_token(10e-6);
    gpt4o.set_max_output_tokens(16384);

    v1::Tenant& acme = *c.add_tenants();
    acme.set_id("acme");
    acme.add_allowed_routes("chat");
    acme.add_allowed_models("gpt-4o*");
    acme.mutable_compression()->set_rate(0.3);
    acme.mutable_limits()->set_requests_per_minute(100);
    v1::Budget& daily = *acme.add_budgets();
    daily.set_period("day");
    daily.set_usd(1.0);
    AddKey(acme, acme_key_);
    v1::TenantKey& second = AddKey(acme, acme_second_);
    v1::Budget& key_total = *second.add_budgets();
    key_total.set_period("total");
    key_total.set_usd(0.10);
    second.mutable_limits()->set_tokens_per_minute(20000);
    AddKey(acme, revoked_).set_revoked(true);

    v1::Tenant& globex = *c.add_tenants();
    globex.set_id("globex");
    globex.set_disabled(true);
    AddKey(globex, globex_key_);
    Rebuild();
  }

  static v1::TenantKey& AddKey(v1::Tenant& tenant, const GeneratedKey& key) {
    v1::TenantKey& k = *tenant.add_keys();
    k.set_id(key.id);
    k.set_hash(key.hash);
    return k;
  }

  void Rebuild() {
    absl::StatusOr<std::unique_ptr<Tenancy>> tenancy = Tenancy::Create(config_, store_);
    ASSERT_THAT(tenancy, IsOk());
    tenancy_ = std::move(*tenancy);
  }

  Principal Who(const GeneratedKey& key) {
    absl::StatusOr<Principal> who = tenancy_->Authenticate(key.text);
    EXPECT_THAT(who, IsOk());
    return who.ok() ? *who : Principal{};
  }

  static RequestInfo Request(std::string id, int64_t prompt_tokens,
                             std::optional<int64_t> max_tokens = std::nullopt) {
    return RequestInfo{std::move(id), "chat", "openai", "gpt-4o", prompt_tokens, max_tokens};
  }

  GeneratedKey acme_key_, acme_second_, revoked_, globex_key_;
  v1::Tenancy config_;
  InMemoryStore store_;
  std::unique_ptr<Tenancy> tenancy_;
  const absl::Time t0_ = At("2026-05-04T12:00:00Z");
};

TEST_F(TenancyTest, AuthenticatesByPublicIdAndSecret) {
  Principal who = Who(acme_key_);
  EXPECT_EQ(who.tenant_id(), "acme");
  EXPECT_EQ(who.key_id(), acme_key_.id);
  EXPECT_DOUBLE_EQ(who.tenant->compression().rate(), 0.3);
  EXPECT_EQ(Who(acme_second_).key_id(), acme_second_.id);
}

TEST_F(TenancyTest, RefusesWrongUnknownRevokedAndDisabledWithoutTheSecret) {
  const std::string secret = acme_key_.text.substr(22);
  std::string wrong = acme_key_.text;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  std::string unknown = acme_key_.text;
  unknown[9] = unknown[9] == 'a' ? 'b' : 'a';
  for (const std::string& key : {wrong, unknown, std::string("sk-terse-nope"),
                                 acme_second_.text.substr(0, 22) + secret, std::string("")}) {
    absl::StatusOr<Principal> who = tenancy_->Authenticate(key);
    EXPECT_THAT(who, StatusIs(absl::StatusCode::kUnauthenticated)) << key;
    EXPECT_THAT(std::string(who.status().message()), Not(HasSubstr(secret.substr(0, 10))));
    EXPECT_EQ(DetailOf(who.status()).code, "invalid_api_key");
  }
  absl::StatusOr<Principal> revoked = tenancy_->Authenticate(revoked_.text);
  EXPECT_THAT(revoked, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("revoked")));
  EXPECT_THAT(std::string(revoked.status().message()), HasSubstr(revoked_.id));
  EXPECT_THAT(std::string(revoked.status().message()),
              Not(HasSubstr(revoked_.text.substr(22, 10))));
  EXPECT_THAT(tenancy_->Authenticate(globex_key_.text),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("disabled")));
}

TEST_F(TenancyTest, AuthorizesRoutesAndModelGlobs) {
  Principal who = Who(acme_key_);
  EXPECT_THAT(tenancy_->Authorize(who, "chat", "gpt-4o"), IsOk());
  EXPECT_THAT(tenancy_->Authorize(who, "chat", "gpt-4o-mini"), IsOk());
  absl::Status model = tenancy_->Authorize(who, "chat", "claude-sonnet-4-5");
  EXPECT_THAT(model, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(DetailOf(model).http_status, 403);
  EXPECT_EQ(DetailOf(model).code, "model_not_allowed");
  EXPECT_THAT(tenancy_->Authorize(who, "rag", "gpt-4o"),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("route rag")));
}

TEST_F(TenancyTest, AKeysLimitsAreItsTenantsThenItsOwn) {
  const std::vector<Limit>& limits = tenancy_->LimitsOf(Who(acme_second_));
  ASSERT_EQ(limits.size(), 4u);
  EXPECT_EQ(limits[0].kind, Limit::Kind::kRequestsPerMinute);
  EXPECT_EQ(limits[0].amount, 100);
  EXPECT_EQ(limits[0].key_id, "");
  EXPECT_EQ(limits[1].kind, Limit::Kind::kBudget);
  EXPECT_EQ(limits[1].amount, 1'000'000);
  EXPECT_EQ(limits[1].period, Period::kDay);
  EXPECT_EQ(limits[1].time_zone.name(), "Europe/Paris");  // the tenancy's default zone
  EXPECT_EQ(limits[1].name, "tenant acme: day budget");
  EXPECT_EQ(limits[2].kind, Limit::Kind::kTokensPerMinute);
  EXPECT_EQ(limits[2].key_id, acme_second_.id);
  EXPECT_EQ(limits[3].amount, 100'000);
  EXPECT_EQ(limits[3].period, Period::kTotal);
  EXPECT_EQ(tenancy_->LimitsOf(Who(acme_key_)).size(), 2u);
}

TEST_F(TenancyTest, TheEstimateIsThePromptAndTheExpectedCompletion) {
  Principal who = Who(acme_key_);
  // 10,000 prompt tokens at $2.50/M + 1000 (the default) at $10/M = 25,000 + 10,000 micros.
  absl::StatusOr<Admitted> a = tenancy_->Admit(who, Request("r1", 10'000), t0_);
  ASSERT_THAT(a, IsOk());
  EXPECT_TRUE(a->decision.admitted());
  EXPECT_TRUE(a->priced);
  EXPECT_EQ(a->estimate, 35'000);
  EXPECT_EQ(a->tokens, 11'000);
  EXPECT_EQ(a->decision.hold_deadline, t0_ + absl::Minutes(1));
  // max_tokens wins, capped by the model's limit.
  EXPECT_EQ(tenancy_->Admit(who, Request("r2", 0, 200), t0_)->estimate, 2'000);
  EXPECT_EQ(tenancy_->Admit(who, Request("r3", 0, 1'000'000), t0_)->estimate, 163'840);
}

TEST_F(TenancyTest, SettlementBooksCostAndSavingsAtTheTablesPrices) {
  Principal who = Who(acme_key_);
  RequestInfo request = Request("r1", 4'000, 500);
  ASSERT_TRUE(tenancy_->Admit(who, request, t0_)->decision.admitted());
  RequestOutcome outcome{.original_prompt_tokens = 10'000,
                         .sent_prompt_tokens = 4'000,
                         .completion_tokens = 300,
                         .cached_tokens = 1'000,
                         .cache_lost_tokens = 2'000,
                         .latency = absl::Milliseconds(850),
                         .http_status = 200,
                         .compressed = true};
  EXPECT_TRUE(*tenancy_->Settle(who, request, t0_, outcome));
  EXPECT_FALSE(*tenancy_->Settle(who, request, t0_, outcome));
  std::vector<UsageRow> rows = store_.Rows();
  ASSERT_EQ(rows.size(), 1u);
  const UsageRow& row = rows[0];
  EXPECT_EQ(row.tenant_id, "acme");
  EXPECT_EQ(row.key_id, acme_key_.id);
  EXPECT_EQ(row.route, "chat");
  EXPECT_EQ(row.provider, "openai");
  // 3000 x 2.5 + 1000 x 1.25 + 300 x 10 = 7500 + 1250 + 3000 micros.
  EXPECT_EQ(row.cost, 11'750);
  // 6000 removed x 2.5 = 15,000, less 2000 x 1.25 of cache discount lost.
  EXPECT_EQ(row.savings, 12'500);
  EXPECT_EQ(row.latency_ms, 850);
  EXPECT_TRUE(row.compressed);
  EXPECT_EQ(row.time, t0_);
}

TEST_F(TenancyTest, UnpricedModelsAreRefusedWhenPricesAreStrict) {
  Principal who = Who(acme_key_);
  RequestInfo request = Request("r1", 1000);
  request.model = "gpt-4o-experimental";
  absl::StatusOr<Admitted> lenient = tenancy_->Admit(who, request, t0_);
  ASSERT_THAT(lenient, IsOk());
  EXPECT_TRUE(lenient->decision.admitted());
  EXPECT_FALSE(lenient->priced);
  EXPECT_EQ(lenient->estimate, 0);
  EXPECT_TRUE(*tenancy_->Settle(who, request, t0_, {.sent_prompt_tokens = 1000}));
  EXPECT_EQ(store_.Rows().back().cost, 0);

  config_.set_strict_prices(true);
  Rebuild();
  request.request_id = "r2";
  absl::StatusOr<Admitted> strict = tenancy_->Admit(Who(acme_key_), request, t0_);
  EXPECT_THAT(strict, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no price")));
  EXPECT_EQ(DetailOf(strict.status()).code, "model_not_priced");
  EXPECT_FALSE(DetailOf(strict.status()).retryable);
}

TEST_F(TenancyTest, RefusalsSayWhetherToRetry) {
  Principal who = Who(acme_second_);  // $0.10 in total, 20k tokens a minute
  // 16,384 tokens of output would cost $0.16: past the key's budget.
  absl::StatusOr<Admitted> budget = tenancy_->Admit(who, Request("r1", 0, 16'384), t0_);
  ASSERT_THAT(budget, IsOk());
  EXPECT_EQ(budget->decision.outcome, Outcome::kBudgetExhausted);
  EXPECT_EQ(budget->refused_by, "tenant acme key " + acme_second_.id + ": total budget");
  absl::Status status = RefusalStatus(*budget);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("total budget")));
  EXPECT_EQ(DetailOf(status).http_status, 429);
  EXPECT_EQ(DetailOf(status).type, "insufficient_quota");
  EXPECT_FALSE(DetailOf(status).retryable);

  ASSERT_TRUE(tenancy_->Admit(who, Request("r2", 1'000, 100), t0_)->decision.admitted());
  absl::StatusOr<Admitted> rate = tenancy_->Admit(who, Request("r3", 19'000, 100), t0_);
  ASSERT_THAT(rate, IsOk());
  EXPECT_EQ(rate->decision.outcome, Outcome::kRateLimited);
  status = RefusalStatus(*rate);
  EXPECT_EQ(DetailOf(status).code, "rate_limit_exceeded");
  EXPECT_TRUE(DetailOf(status).retryable);
  // 1,100 + 19,100 tokens is 200 over the minute's 20,000: 200 x 3 ms.
  EXPECT_THAT(std::string(status.message()), HasSubstr("Retry in 600 ms"));
  EXPECT_EQ(rate->decision.retry_after, absl::Milliseconds(600));

  absl::StatusOr<Admitted> large = tenancy_->Admit(who, Request("r4", 30'000, 1), t0_);
  EXPECT_EQ(large->decision.outcome, Outcome::kTooLarge);
  EXPECT_FALSE(DetailOf(RefusalStatus(*large)).retryable);
  EXPECT_THAT(RefusalStatus(*tenancy_->Admit(who, Request("r5", 10, 1), t0_ + absl::Minutes(5))),
              IsOk());
}

TEST_F(TenancyTest, ABadConfigIsRefusedAtCreation) {
  config_.mutable_tenants(0)->mutable_budgets(0)->set_time_zone("Mars/Olympus_Mons");
  EXPECT_THAT(Tenancy::Create(config_, store_), StatusIs(absl::StatusCode::kInvalidArgument));
  config_.Clear();
  SetUp();
  *config_.mutable_tenants(1)->add_keys() = config_.tenants(0).keys(0);
  EXPECT_THAT(Tenancy::Create(config_, store_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
}

TEST(OpenStoreTest, MakesTheConfiguredStore) {
  testing::TempDir dir;
  v1::Tenancy config;
  config.set_data_dir(dir.path() + "/data");
  config.mutable_store()->set_kind(v1::TenancyStore::SQLITE);
  absl::StatusOr<std::unique_ptr<Store>> sqlite = OpenStore(config);
  ASSERT_THAT(sqlite, IsOk());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/data/tenancy.db"));
  config.mutable_store()->set_kind(v1::TenancyStore::MEMORY);
  EXPECT_THAT(OpenStore(config), IsOk());
  // The replica store needs its connection string from the environment; it opens without
  // reaching either server.
  config.mutable_store()->set_kind(v1::TenancyStore::REDIS_POSTGRES);
  config.mutable_store()->set_redis_url("redis://127.0.0.1:1/0");
  config.mutable_store()->set_postgres_url_env("TERSE_TEST_UNSET_PG_DSN");
  unsetenv("TERSE_TEST_UNSET_PG_DSN");
  EXPECT_THAT(OpenStore(config), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("TERSE_TEST_UNSET_PG_DSN")));
  setenv("TERSE_TEST_UNSET_PG_DSN", "host=127.0.0.1 port=1", 1);
  EXPECT_THAT(OpenStore(config), IsOk());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/data/tenancy-spool.jsonl"));
  unsetenv("TERSE_TEST_UNSET_PG_DSN");
}

}  // namespace
}  // namespace terse::tenancy
