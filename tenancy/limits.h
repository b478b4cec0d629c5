// What a request is checked against: budgets over calendar windows and per-minute rates (GCRA),
// as plain values and pure functions, so every store computes them the same way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tenancy/money.h"

namespace terse::tenancy {

enum class Period { kDay, kWeek, kMonth, kTotal };

// day | week | month | total; kInvalidArgument otherwise.
absl::StatusOr<Period> ParsePeriod(std::string_view text);
std::string_view PeriodName(Period period);

// A half-open span of Unix microseconds, [start_us, end_us).
struct Window {
  int64_t start_us = 0;
  int64_t end_us = 0;
  bool Contains(int64_t t_us) const { return start_us <= t_us && t_us < end_us; }
  friend bool operator==(const Window&, const Window&) = default;
};

// The calendar window of `period` holding `t` in `zone`: a day from local midnight, a week from
// Monday's midnight, a month from the 1st's; kTotal is all of time. A midnight that a DST change
// skips starts the day at the first instant after the gap, so a day lasts 23, 24 or 25 hours.
Window WindowAt(Period period, const absl::TimeZone& zone, absl::Time t);

// One limit on one scope: a tenant, or a key within it.
struct Limit {
  enum class Kind { kBudget, kRequestsPerMinute, kTokensPerMinute };
  Kind kind = Kind::kBudget;
  std::string tenant_id;
  std::string key_id;              // empty: the whole tenant
  int64_t amount = 0;              // micros per window (budgets), or units per minute; > 0
  Period period = Period::kTotal;  // budgets
  absl::TimeZone time_zone = absl::UTCTimeZone();  // budgets
  bool shadow = false;                             // counted and reported, never refuses
  std::string name;  // for messages and metrics, e.g. "tenant acme: day budget"
};

// GCRA (the generic cell rate algorithm) for `per_minute` units a minute with a burst of a whole
// minute's worth. Time is kept scaled by `per_minute` (ns x per_minute) so the emission interval,
// 60 s / per_minute, is an exact integer (60e9) and counts stay exact for any rate.
using ScaledTime = __int128;

struct GcraStep {
  bool allowed = false;
  bool never = false;          // cost above per_minute: no wait would admit it
  ScaledTime new_tat = 0;      // the state after counting the cost (whether allowed or not)
  absl::Duration retry_after;  // when not allowed: the wait until it would be, rounded up
};

// Counts `cost` units at `now` against the theoretical arrival time `tat` (0 for a fresh limit).
GcraStep GcraTry(ScaledTime tat, int64_t per_minute, int64_t cost, absl::Time now);
// How many units would be admitted at `now`.
int64_t GcraRemaining(ScaledTime tat, int64_t per_minute, absl::Time now);
// `now` on the scaled clock of a `per_minute` limit.
ScaledTime GcraScaledNow(int64_t per_minute, absl::Time now);
// The scaled length of `units` emission intervals.
inline ScaledTime GcraUnits(int64_t units) {
  return static_cast<ScaledTime>(units) * 60'000'000'000;
}

}  // namespace terse::tenancy
