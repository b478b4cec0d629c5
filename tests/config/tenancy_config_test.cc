// The `tenancy:` section: its defaults, the price file merged under the config's overrides, and
// validation with exact paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "absl/strings/str_split.h"
#include "config/config.h"
#include "tests/support/status_matchers.h"

namespace terse::config {
namespace {

using ::terse::testing::IsOk;
using ::terse::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRoutes[] = R"(
providers:
  - {name: openai, kind: openai}
  - {name: echo, kind: echo}
routes:
  - {name: chat, model: "gpt-4o*", provider: openai}
  - {name: cheap, model: "*", provider: echo, compression: {enabled: true, rate: 0.3}}
)";

// A valid key as tenancy/keys.h makes them (id, and the hash of some secret).
constexpr char kHash[] =
    "sha256$0123456789abcdef0123456789abcdef$"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::vector<std::string> Problems(const std::string& yaml) {
  auto config = LoadConfigText(yaml);
  EXPECT_THAT(config, StatusIs(absl::StatusCode::kInvalidArgument));
  if (config.ok()) return {};
  return absl::StrSplit(std::string(config.status().message()), '\n');
}

TEST(TenancyConfigTest, AbsentMeansOff) {
  auto loaded = LoadConfigText(kRoutes);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_FALSE((*loaded)->proto().has_tenancy());
}

TEST(TenancyConfigTest, AnEmptySectionGetsEveryDefaultAndTheShippedPrices) {
  auto loaded = LoadConfigText(std::string(kRoutes) + "tenancy: {}\n");
  ASSERT_THAT(loaded, IsOk());
  const v1::Tenancy& t = (*loaded)->proto().tenancy();
  EXPECT_EQ(t.data_dir(), "data");
  EXPECT_EQ(t.prices_file(), "config/prices.yaml");
  EXPECT_EQ(t.default_output_tokens(), 1024u);
  EXPECT_EQ(t.hold_lease_ms(), 660000u);  // the request timeout and a minute
  EXPECT_EQ(t.time_zone(), "UTC");
  EXPECT_EQ(t.store().kind(), v1::TenancyStore::SQLITE);
  EXPECT_EQ(t.store().fail_mode(), "closed");
  EXPECT_EQ(t.durability(), "process");
  EXPECT_FALSE(t.strict_prices());
  EXPECT_EQ(t.prices_as_of(), "2025-11-30");
  ASSERT_TRUE(t.prices().contains("gpt-4o"));
  EXPECT_DOUBLE_EQ(t.prices().at("gpt-4o").input_cost_per_token(), 2.5e-6);
  EXPECT_TRUE(t.prices().contains("echo/*"));
}

TEST(TenancyConfigTest, MapsAFullSection) {
  auto loaded = LoadConfigText(std::string(kRoutes) + R"(
limits: {request_timeout_ms: 30000}
tenancy:
  data_dir: /var/lib/terse
  admin_key_env: TERSE_ADMIN_KEY
  strict_prices: true
  time_zone: Europe/Paris
  store: {kind: redis_postgres, redis_url: "redis://127.0.0.1:6379/0", postgres_url_env: PG_DSN, fail_mode: open}
  prices:
    gpt-4o: {litellm_provider: openai, input_cost_per_token: 2.0e-6, output_cost_per_token: 8.0e-6}
    openai_compatible/*: {litellm_provider: openai_compatible, input_cost_per_token: 0, output_cost_per_token: 0}
  tenants:
    - id: acme
      name: Acme Corp
      allowed_routes: [chat]
      allowed_models: ["gpt-4o*"]
      compression: {rate: 0.25}
      limits: {requests_per_minute: 600, tokens_per_minute: 200000, shadow: true}
      budgets:
        - {period: day, usd: 25, time_zone: America/New_York}
        - {period: month, usd: 500}
      keys:
        - id: abcdefabcdef
          hash: ")" + std::string(kHash) +
                               R"("
          name: backend
          limits: {requests_per_minute: 60}
          budgets: [{period: total, usd: 100, shadow: true}]
        - {id: 0123456789ab, hash: ")" +
                               std::string(kHash) + R"(", revoked: true}
    - {id: globex, disabled: true, compression: {policy: cheap}}
)");
  ASSERT_THAT(loaded, IsOk());
  const v1::Tenancy& t = (*loaded)->proto().tenancy();
  EXPECT_EQ(t.hold_lease_ms(), 90000u);
  EXPECT_EQ(t.store().kind(), v1::TenancyStore::REDIS_POSTGRES);
  EXPECT_EQ(t.store().fail_mode(), "open");
  ASSERT_EQ(t.tenants_size(), 2);
  const v1::Tenant& acme = t.tenants(0);
  EXPECT_EQ(acme.limits().tokens_per_minute(), 200000u);
  EXPECT_TRUE(acme.limits().shadow());
  EXPECT_EQ(acme.budgets(0).time_zone(), "America/New_York");
  EXPECT_DOUBLE_EQ(acme.budgets(1).usd(), 500);
  EXPECT_EQ(acme.keys(0).hash(), kHash);
  EXPECT_EQ(acme.keys(0).limits().requests_per_minute(), 60u);
  EXPECT_TRUE(acme.keys(0).budgets(0).shadow());
  EXPECT_TRUE(acme.keys(1).revoked());
  EXPECT_EQ(t.tenants(1).compression().policy(), "cheap");
  // An override replaces the file's entry whole (no cache price left), and adds new keys.
  const v1::ModelPrice& gpt4o = t.prices().at("gpt-4o");
  EXPECT_DOUBLE_EQ(gpt4o.input_cost_per_token(), 2.0e-6);
  EXPECT_FALSE(gpt4o.has_cache_read_input_token_cost());
  EXPECT_EQ(gpt4o.max_output_tokens(), 0u);
  EXPECT_TRUE(t.prices().contains("openai_compatible/*"));
  EXPECT_TRUE(t.prices().contains("gpt-4o-mini"));  // the file's others stay
}

TEST(TenancyConfigTest, DurabilityIsProcessOrPower) {
  auto power = LoadConfigText(std::string(kRoutes) + "tenancy: {durability: power}\n");
  ASSERT_THAT(power, IsOk());
  EXPECT_EQ((*power)->proto().tenancy().durability(), "power");
  EXPECT_THAT(Problems(std::string(kRoutes) + "tenancy: {durability: disk}\n"),
              ElementsAre("tenancy.durability: unknown value \"disk\"; expected one of: process, "
                          "power"));
}

TEST(TenancyConfigTest, EveryProblemHasItsPath) {
  EXPECT_THAT(
      Problems(std::string(kRoutes) + R"(
tenancy:
  admin_key_env: sk-admin-123
  time_zone: Mars/Olympus
  hold_lease_ms: 0
  store: {kind: redis_postgres, fail_mode: ajar}
  prices:
    gpt-9: {input_cost_per_token: -1, output_cost_per_token: 1.0e-6, max_output_tokens: 10, default_output_tokens: 20}
    "*": {litellm_provider: openai}
  tenants:
    - id: Acme Corp
      allowed_routes: [chta]
      allowed_models: ["gpt-[4"]
      compression: {policy: nope, rate: 1.5}
      budgets:
        - {period: fortnight, usd: 0}
        - {usd: 10, time_zone: Nowhere/Land}
      keys:
        - {id: short, hash: sk-terse-abcdefabcdef-SECRETSECRET}
        - {id: abcdefabcdef, hash: ")" +
               std::string(kHash) + R"("}
    - id: beta
      limits: {tokens_per_minute: 2000000000000000}
      keys:
        - {id: abcdefabcdef, hash: ")" +
               std::string(kHash) + R"("}
    - {id: beta}
    - {}
)"),
      ElementsAre(
          "tenancy.admin_key_env: expected the name of an environment variable (letters, digits "
          "and _), not a key (value not shown)",
          "tenancy.time_zone: unknown time zone \"Mars/Olympus\" (an IANA name such as "
          "\"Europe/Paris\" or \"UTC\"; is tzdata installed?)",
          "tenancy.hold_lease_ms: must be at least 1",
          "tenancy.store.redis_url: expected a redis://host[:port][/db] URL for kind "
          "redis_postgres",
          "tenancy.store.postgres_url_env: required for kind redis_postgres: the name of the "
          "environment variable holding the PostgreSQL connection string",
          "tenancy.store.fail_mode: unknown value \"ajar\"; expected one of: open, closed",
          // Document order: a field the YAML does not mention sits at its entry.
          "tenancy.prices.gpt-9.litellm_provider: required; expected one of: openai, azure, "
          "anthropic, openai_compatible, echo",
          "tenancy.prices.gpt-9.input_cost_per_token: -1 must not be negative",
          "tenancy.prices.gpt-9.default_output_tokens: 20 is above max_output_tokens 10",
          "tenancy.prices.*: the only pattern is \"<litellm_provider>/*\" (here \"openai/*\"): "
          "other models of that provider",
          "tenancy.tenants[0].id: expected 1 to 64 of a-z, 0-9, _ and -, got \"Acme Corp\"",
          "tenancy.tenants[0].allowed_routes[0]: unknown route \"chta\" (did you mean \"chat\"?)",
          "tenancy.tenants[0].allowed_models[0]: invalid glob \"gpt-[4\": unterminated \"[\" at "
          "offset 4",
          "tenancy.tenants[0].compression: policy and rate are both set; set only one",
          "tenancy.tenants[0].compression.policy: unknown route \"nope\"",
          "tenancy.tenants[0].compression.rate: 1.5 is out of range; expected a fraction in (0, 1]",
          "tenancy.tenants[0].budgets[0].period: unknown value \"fortnight\"; expected one of: "
          "day, week, month, total",
          "tenancy.tenants[0].budgets[0].usd: 0 is out of range; expected more than 0 and at "
          "most 1e12",
          "tenancy.tenants[0].budgets[1].period: required; expected one of: day, week, month, "
          "total",
          "tenancy.tenants[0].budgets[1].time_zone: unknown time zone \"Nowhere/Land\" (an IANA "
          "name such as \"Europe/Paris\" or \"UTC\"; is tzdata installed?)",
          "tenancy.tenants[0].keys[0].id: expected the key's public id (12 of a-z and 0-9), got "
          "\"short\"",
          "tenancy.tenants[0].keys[0].hash: expected sha256$<32 hex>$<64 hex> as the key "
          "generator prints it, not the key itself (value not shown)",
          "tenancy.tenants[1].limits.tokens_per_minute: 2000000000000000 is out of range (at "
          "most 1e15)",
          "tenancy.tenants[1].keys[0].id: duplicate key id \"abcdefabcdef\" (also "
          "tenancy.tenants[0].keys[1])",
          "tenancy.tenants[2].id: duplicate tenant id \"beta\" (also tenancy.tenants[1])",
          "tenancy.tenants[3].id: required"));
}

TEST(TenancyConfigTest, TheRedisUrlHasAHostAndNoTls) {
  for (const char* url : {"redis://", "rediss://cache:6380/0"}) {
    EXPECT_THAT(Problems(std::string(kRoutes) + R"(
tenancy:
  store: {kind: redis_postgres, redis_url: ")" +
                         url + R"(", postgres_url_env: PG_DSN}
)"),
                ElementsAre(HasSubstr("tenancy.store.redis_url: ")))
        << url;
  }
}

TEST(TenancyConfigTest, AKeyPastedAsAHashIsNeverEchoed) {
  const std::string secret = "sk-terse-abcdefabcdef-Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo";
  auto loaded = LoadConfigText(
      std::string(kRoutes) +
      "tenancy: {tenants: [{id: a, keys: [{id: abcdefabcdef, hash: " + secret + "}]}]}\n");
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(std::string(loaded.status().message()), Not(HasSubstr("Zm9vYmFy")));
}

TEST(TenancyConfigTest, PriceFileProblemsNameTheFile) {
  EXPECT_THAT(Problems(std::string(kRoutes) + "tenancy: {prices_file: no/such/prices.yaml}\n"),
              ElementsAre("tenancy.prices_file: cannot read \"no/such/prices.yaml\""));
  const std::string path = ::testing::TempDir() + "/bad_prices.yaml";
  std::ofstream(path) << "models:\n"
                         "  gpt-4o: {litellm_provider: openai, input_cost_per_token: cheap}\n"
                         "  claude-x: {litellm_provider: anthropc, output_cost_per_token: 1}\n";
  EXPECT_THAT(
      Problems(std::string(kRoutes) + "tenancy: {prices_file: " + path + "}\n"),
      ElementsAre(
          path + ": models.gpt-4o.input_cost_per_token: expected a number, got \"cheap\"",
          path + ": as_of: required: the date the prices were checked",
          path + ": models.claude-x.litellm_provider: unknown provider \"anthropc\" (did you mean "
                 "\"anthropic\"?); expected one of: openai, azure, anthropic, openai_compatible, "
                 "echo"));
}

TEST(TenancyConfigTest, TheShippedPriceFileIsValidAndCoversTheExamples) {
  const char* dir = getenv("TERSE_SOURCE_DIR");
  auto table = LoadPriceTableFile(std::string(dir ? dir : ".") + "/config/prices.yaml");
  ASSERT_THAT(table, IsOk());
  EXPECT_FALSE(table->as_of().empty());
  for (const char* model :
       {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3", "o4-mini", "azure/gpt-4o",
        "azure/gpt-4o-mini", "claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5",
        "claude-3-5-haiku-latest", "echo/gpt-4o", "echo/gpt-4o-mini", "echo/*"}) {
    ASSERT_TRUE(table->models().contains(model)) << model;
    const v1::ModelPrice& p = table->models().at(model);
    EXPECT_GE(p.output_cost_per_token(), p.input_cost_per_token()) << model;
    if (p.has_cache_read_input_token_cost()) {
      EXPECT_LE(p.cache_read_input_token_cost(), p.input_cost_per_token()) << model;
    }
  }
  // The echo stand-ins cost what the model they stand for costs at OpenAI.
  EXPECT_EQ(table->models().at("echo/gpt-4o-mini").input_cost_per_token(),
            table->models().at("gpt-4o-mini").input_cost_per_token());
}

}  // namespace
}  // namespace terse::config
