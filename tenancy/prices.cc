// Price lookup and the token-to-money arithmetic.
#include "tenancy/prices.h"

#include <algorithm>

namespace terse::tenancy {

PriceTable::PriceTable(const google::protobuf::Map<std::string, v1::ModelPrice>& models,
                       uint32_t default_output_tokens)
    : default_output_tokens_(default_output_tokens) {
  for (const auto& [key, entry] : models) {
    const std::string& provider = entry.litellm_provider();
    std::string_view model = key;
    // `meta-llama/Llama-3` stays whole unless its litellm_provider is `meta-llama`.
    if (model.starts_with(provider + "/")) model.remove_prefix(provider.size() + 1);
    Price price;
    price.input = PriceFromUsdPerToken(entry.input_cost_per_token());
    price.output = PriceFromUsdPerToken(entry.output_cost_per_token());
    price.cached_input = entry.has_cache_read_input_token_cost()
                             ? PriceFromUsdPerToken(entry.cache_read_input_token_cost())
                             : price.input;
    price.max_output_tokens = entry.max_output_tokens();
    price.default_output_tokens = entry.default_output_tokens();
    prices_[provider + "/" + std::string(model)] = price;
  }
}

const Price* PriceTable::Find(std::string_view provider, std::string_view model) const {
  std::string key(provider);
  key.append("/").append(model);
  if (auto it = prices_.find(key); it != prices_.end()) return &it->second;
  key.resize(provider.size() + 1);
  key.append("*");
  if (auto it = prices_.find(key); it != prices_.end()) {
    return &it->second;
  }
  return nullptr;
}

int64_t PriceTable::EstimatedOutputTokens(const Price* price,
                                          std::optional<int64_t> requested) const {
  int64_t tokens = default_output_tokens_;
  if (price != nullptr && price->default_output_tokens > 0) tokens = price->default_output_tokens;
  if (requested) tokens = std::max<int64_t>(*requested, 0);
  if (price != nullptr && price->max_output_tokens > 0) {
    tokens = std::min<int64_t>(tokens, price->max_output_tokens);
  }
  return tokens;
}

std::string_view ProviderName(v1::Provider::Kind kind) {
  switch (kind) {
    case v1::Provider::OPENAI:
      return "openai";
    case v1::Provider::AZURE_OPENAI:
      return "azure";
    case v1::Provider::ANTHROPIC:
      return "anthropic";
    case v1::Provider::OPENAI_COMPATIBLE:
      return "openai_compatible";
    case v1::Provider::ECHO:
      return "echo";
    default:
      return "";
  }
}

Micros Cost(const Price& price, int64_t sent_prompt_tokens, int64_t cached_prompt_tokens,
            int64_t completion_tokens) {
  const int64_t cached = std::clamp<int64_t>(cached_prompt_tokens, 0, sent_prompt_tokens);
  return RoundToMicros(TokensTimesPrice(sent_prompt_tokens - cached, price.input) +
                       TokensTimesPrice(cached, price.cached_input) +
                       TokensTimesPrice(completion_tokens, price.output));
}

Micros EstimateCost(const Price& price, int64_t sent_prompt_tokens, int64_t output_tokens) {
  return CeilToMicros(TokensTimesPrice(sent_prompt_tokens, price.input) +
                      TokensTimesPrice(output_tokens, price.output));
}

Micros Savings(const Price& price, int64_t original_prompt_tokens, int64_t sent_prompt_tokens,
               int64_t cache_lost_tokens) {
  return RoundToMicros(
      TokensTimesPrice(original_prompt_tokens - sent_prompt_tokens, price.input) -
      TokensTimesPrice(std::max<int64_t>(cache_lost_tokens, 0), price.input - price.cached_input));
}

}  // namespace terse::tenancy
