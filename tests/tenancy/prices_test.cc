// The price table and the money of a request: cost, estimate, savings, and their rounding.
#include "tenancy/prices.h"

#include <gtest/gtest.h>

#include "tenancy/money.h"

namespace terse::tenancy {
namespace {

v1::ModelPrice Entry(const std::string& provider, double input, double output,
                     std::optional<double> cached = std::nullopt, uint32_t max_output = 0,
                     uint32_t default_output = 0) {
  v1::ModelPrice p;
  p.set_litellm_provider(provider);
  p.set_input_cost_per_token(input);
  p.set_output_cost_per_token(output);
  if (cached) p.set_cache_read_input_token_cost(*cached);
  p.set_max_output_tokens(max_output);
  p.set_default_output_tokens(default_output);
  return p;
}

class PriceTableTest : public ::testing::Test {
 protected:
  PriceTableTest() {
    auto& m = *table_.mutable_models();
    m["gpt-4o"] = Entry("openai", 2.5e-6, 10e-6, 1.25e-6, 16384);
    m["azure/gpt-4o"] = Entry("azure", 2.75e-6, 11e-6);
    m["echo/*"] = Entry("echo", 0, 0);
    m["echo/gpt-4o-mini"] = Entry("echo", 0.15e-6, 0.6e-6, 0.075e-6, 16384, 500);
    m["meta-llama/Llama-3-8b"] = Entry("openai_compatible", 0.1e-6, 0.1e-6);
  }
  v1::PriceTable table_;
};

TEST_F(PriceTableTest, FindsByProviderAndModel) {
  PriceTable prices(table_.models(), 1024);
  const Price* gpt4o = prices.Find("openai", "gpt-4o");
  ASSERT_NE(gpt4o, nullptr);
  EXPECT_EQ(gpt4o->input, 2'500'000);  // micro-dollars per million tokens
  EXPECT_EQ(gpt4o->cached_input, 1'250'000);
  EXPECT_EQ(gpt4o->output, 10'000'000);
  EXPECT_EQ(gpt4o->max_output_tokens, 16384u);
  // `provider/model` keys belong to that provider only; a bare key to its litellm_provider.
  ASSERT_NE(prices.Find("azure", "gpt-4o"), nullptr);
  EXPECT_EQ(prices.Find("azure", "gpt-4o")->input, 2'750'000);
  EXPECT_EQ(prices.Find("anthropic", "gpt-4o"), nullptr);
  // A slash in a model name is part of the name unless it is the entry's provider.
  ASSERT_NE(prices.Find("openai_compatible", "meta-llama/Llama-3-8b"), nullptr);
  EXPECT_EQ(prices.Find("openai_compatible", "Llama-3-8b"), nullptr);
}

TEST_F(PriceTableTest, ProviderWildcardPricesTheRest) {
  PriceTable prices(table_.models(), 1024);
  ASSERT_NE(prices.Find("echo", "gpt-4o-mini"), nullptr);
  EXPECT_EQ(prices.Find("echo", "gpt-4o-mini")->input, 150'000);
  const Price* other = prices.Find("echo", "anything-else");
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(other->input, 0);
  EXPECT_EQ(prices.Find("openai", "unknown-model"), nullptr);
}

TEST_F(PriceTableTest, NoCachePriceMeansCachedTokensCostAsInput) {
  PriceTable prices(table_.models(), 1024);
  const Price* azure = prices.Find("azure", "gpt-4o");
  ASSERT_NE(azure, nullptr);
  EXPECT_EQ(azure->cached_input, azure->input);
}

TEST_F(PriceTableTest, OutputEstimateFollowsRequestThenModelThenTable) {
  PriceTable prices(table_.models(), 1024);
  const Price* gpt4o = prices.Find("openai", "gpt-4o");
  const Price* mini = prices.Find("echo", "gpt-4o-mini");
  EXPECT_EQ(prices.EstimatedOutputTokens(gpt4o, 300), 300);
  EXPECT_EQ(prices.EstimatedOutputTokens(gpt4o, 100000), 16384);  // capped by the model
  EXPECT_EQ(prices.EstimatedOutputTokens(gpt4o, std::nullopt), 1024);
  EXPECT_EQ(prices.EstimatedOutputTokens(mini, std::nullopt), 500);
  EXPECT_EQ(prices.EstimatedOutputTokens(nullptr, std::nullopt), 1024);
  EXPECT_EQ(prices.EstimatedOutputTokens(nullptr, 7), 7);
  EXPECT_EQ(PriceTable(table_.models(), 20000).EstimatedOutputTokens(gpt4o, std::nullopt), 16384);
}

TEST(MoneyTest, UnitsConvertExactly) {
  EXPECT_EQ(PriceFromUsdPerToken(2.5e-6), 2'500'000);
  EXPECT_EQ(PriceFromUsdPerToken(0.075e-6), 75'000);
  EXPECT_EQ(PriceFromUsdPerToken(0.15e-6), 150'000);
  EXPECT_EQ(PriceFromUsdPerToken(0.005e-6), 5'000);
  EXPECT_EQ(PriceFromUsdPerToken(1e-12), 1);
  EXPECT_EQ(MicrosFromUsd(0.1), 100'000);
  EXPECT_EQ(MicrosFromUsd(12.345678), 12'345'678);
  EXPECT_EQ(MicrosFromUsd(1e12), 1'000'000'000'000'000'000);
}

TEST(MoneyTest, RoundingIsHalfAwayFromZeroForBookingsAndUpForReservations) {
  EXPECT_EQ(RoundToMicros(499'999), 0);
  EXPECT_EQ(RoundToMicros(500'000), 1);
  EXPECT_EQ(RoundToMicros(1'499'999), 1);
  EXPECT_EQ(RoundToMicros(-500'000), -1);
  EXPECT_EQ(RoundToMicros(-499'999), 0);
  EXPECT_EQ(CeilToMicros(1), 1);
  EXPECT_EQ(CeilToMicros(1'000'000), 1);
  EXPECT_EQ(CeilToMicros(1'000'001), 2);
  EXPECT_EQ(CeilToMicros(0), 0);
}

TEST(MoneyTest, CostRoundsOnceOverTheWholeRequest) {
  Price p{.input = 150'000, .cached_input = 75'000, .output = 600'000};  // gpt-4o-mini
  // 3 tokens at $0.15/M is 0.45 micros: rounded away alone, kept when summed with the rest.
  EXPECT_EQ(Cost(p, 3, 0, 0), 0);
  EXPECT_EQ(Cost(p, 3, 0, 1), 1);  // 0.45 + 0.6 = 1.05
  EXPECT_EQ(EstimateCost(p, 3, 0), 1);
  // 1000 prompt tokens, 400 of them cached, 200 completion: 90 + 30 + 120 micros.
  EXPECT_EQ(Cost(p, 1000, 400, 200), 240);
  // Cached tokens above the prompt count as the whole prompt cached.
  EXPECT_EQ(Cost(p, 1000, 5000, 0), 75);
  // A million tokens of gpt-4o output is exactly $10.
  Price gpt4o{.input = 2'500'000, .cached_input = 1'250'000, .output = 10'000'000};
  EXPECT_EQ(Cost(gpt4o, 0, 0, 1'000'000), 10 * kMicrosPerUsd);
  EXPECT_EQ(Cost(gpt4o, 1, 0, 0), 3);  // 2.5 micros, half away from zero
  EXPECT_EQ(EstimateCost(gpt4o, 1, 0), 3);
  EXPECT_EQ(EstimateCost(gpt4o, 1000, 500), 2500 + 5000);
  // Billions of tokens do not overflow.
  EXPECT_EQ(Cost(gpt4o, 4'000'000'000, 0, 4'000'000'000), 50'000 * kMicrosPerUsd);
}

TEST(MoneyTest, SavingsAreRemovedTokensLessTheCacheDiscountLost) {
  Price p{.input = 2'500'000, .cached_input = 1'250'000, .output = 10'000'000};
  EXPECT_EQ(Savings(p, 10'000, 4'000, 0), 15'000);  // 6000 tokens x $2.50/M
  // 2000 tokens that would have been cache reads are now paid in full: 2000 x $1.25/M lost.
  EXPECT_EQ(Savings(p, 10'000, 4'000, 2'000), 15'000 - 2'500);
  EXPECT_EQ(Savings(p, 1'000, 1'000, 0), 0);
  EXPECT_EQ(Savings(p, 1'000, 1'000, 1'000), -1'250);  // nothing removed, cache lost: a loss
}

TEST(ProviderNameTest, MatchesLitellmProviders) {
  EXPECT_EQ(ProviderName(v1::Provider::OPENAI), "openai");
  EXPECT_EQ(ProviderName(v1::Provider::AZURE_OPENAI), "azure");
  EXPECT_EQ(ProviderName(v1::Provider::ANTHROPIC), "anthropic");
  EXPECT_EQ(ProviderName(v1::Provider::OPENAI_COMPATIBLE), "openai_compatible");
  EXPECT_EQ(ProviderName(v1::Provider::ECHO), "echo");
}

}  // namespace
}  // namespace terse::tenancy
