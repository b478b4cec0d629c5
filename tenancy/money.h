// Money as integers: amounts in micro-dollars, prices in micro-dollars per million tokens, so
// every sum in the ledger is exact and rounding happens in the few functions below.
#pragma once

#include <cmath>
#include <cstdint>

namespace terse::tenancy {

// An amount of money: 1 USD = 1'000'000 micros.
using Micros = int64_t;
inline constexpr Micros kMicrosPerUsd = 1'000'000;

// A price: micro-dollars per million tokens (= picodollars per token). Exact for every price
// written with at most 12 decimals in USD per token, which covers any published price.
using MicrosPerMTok = int64_t;

// A sum of tokens x prices before rounding, in picodollars (micros / 1e6). 128 bits: a billion
// tokens at $1000 per token is 1e24 picodollars.
using Picodollars = __int128;
inline constexpr Picodollars kPicosPerMicro = 1'000'000;

// USD as written in a config (`usd: 12.5`), rounded to the nearest micro.
inline Micros MicrosFromUsd(double usd) { return std::llround(usd * kMicrosPerUsd); }

// LiteLLM's unit (USD per token) to ours, rounded to the nearest picodollar per token.
inline MicrosPerMTok PriceFromUsdPerToken(double usd_per_token) {
  return std::llround(usd_per_token * 1e12);
}

inline Picodollars TokensTimesPrice(int64_t tokens, MicrosPerMTok price) {
  return static_cast<Picodollars>(tokens) * price;
}

// To micros, halves away from zero: what is booked.
inline Micros RoundToMicros(Picodollars p) {
  const Picodollars half = kPicosPerMicro / 2;
  return static_cast<Micros>(p >= 0 ? (p + half) / kPicosPerMicro
                                    : -((-p + half) / kPicosPerMicro));
}

// To micros, rounded up: what is reserved, so a reservation never falls short of the booking.
inline Micros CeilToMicros(Picodollars p) {
  if (p <= 0) return static_cast<Micros>(p / kPicosPerMicro);
  return static_cast<Micros>((p + kPicosPerMicro - 1) / kPicosPerMicro);
}

}  // namespace terse::tenancy
