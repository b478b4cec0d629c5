// The price table and every money computation on tokens: booked cost, admission estimate and
// savings. Prices come from config/prices.yaml with the config's overrides applied (config/
// merges them at load, so `v1::Tenancy::prices` is already the effective table).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "tenancy/money.h"
#include "terse/v1/config.pb.h"

namespace terse::tenancy {

struct Price {
  MicrosPerMTok input = 0;
  MicrosPerMTok cached_input = 0;  // input's when the table gives no cache price
  MicrosPerMTok output = 0;
  uint32_t max_output_tokens = 0;      // 0: unknown
  uint32_t default_output_tokens = 0;  // 0: the table's default
};

// Immutable after construction; thread-safe.
class PriceTable {
 public:
  // Keys as in v1::PriceTable: `model` (for its litellm_provider), `provider/model` (when the
  // prefix is the entry's litellm_provider), `provider/*` (that provider's other models).
  // `default_output_tokens` is the fallback of EstimatedOutputTokens.
  PriceTable(const google::protobuf::Map<std::string, v1::ModelPrice>& models,
             uint32_t default_output_tokens);

  // The price of `model` served by `provider` (a litellm_provider name, see ProviderName):
  // the exact entry, else the provider's `*` entry, else nullptr (unpriced).
  const Price* Find(std::string_view provider, std::string_view model) const;

  // The completion tokens an admission reserves for: the request's own limit if it set one,
  // else the model's default, else the table's; never above the model's max_output_tokens.
  int64_t EstimatedOutputTokens(const Price* price, std::optional<int64_t> requested) const;

 private:
  absl::flat_hash_map<std::string, Price> prices_;  // by "provider/model"
  uint32_t default_output_tokens_;
};

// The litellm_provider name of a provider kind: openai, azure, anthropic, openai_compatible,
// echo ("" for an unspecified kind).
std::string_view ProviderName(v1::Provider::Kind kind);

// What a call cost: uncached prompt tokens at the input price, cached ones at the cache price,
// completion at the output price; rounded once, to the nearest micro.
Micros Cost(const Price& price, int64_t sent_prompt_tokens, int64_t cached_prompt_tokens,
            int64_t completion_tokens);

// What an admission reserves: every prompt token at the full input price (the cache is unknown
// before the call) plus the expected completion; rounded up.
Micros EstimateCost(const Price& price, int64_t sent_prompt_tokens, int64_t output_tokens);

// What compression saved: the prompt tokens it removed at the input price, less the prompt-cache
// discount it cost (`cache_lost_tokens`: tokens the provider would have read from its cache had
// the prompt been sent unchanged, when the caller can tell). May be negative.
Micros Savings(const Price& price, int64_t original_prompt_tokens, int64_t sent_prompt_tokens,
               int64_t cache_lost_tokens);

}  // namespace terse::tenancy
