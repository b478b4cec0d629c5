// Calendar windows in a time zone and the GCRA arithmetic.
#include "tenancy/limits.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"

namespace terse::tenancy {

absl::StatusOr<Period> ParsePeriod(std::string_view text) {
  if (text == "day") return Period::kDay;
  if (text == "week") return Period::kWeek;
  if (text == "month") return Period::kMonth;
  if (text == "total") return Period::kTotal;
  return absl::InvalidArgumentError("unknown budget period \"" + std::string(text) +
                                    "\"; expected day, week, month or total");
}

std::string_view PeriodName(Period period) {
  switch (period) {
    case Period::kDay:
      return "day";
    case Period::kWeek:
      return "week";
    case Period::kMonth:
      return "month";
    case Period::kTotal:
      return "total";
  }
  return "";
}

Window WindowAt(Period period, const absl::TimeZone& zone, absl::Time t) {
  // FromCivil takes a skipped local time at the pre-transition offset, which lands after the gap.
  auto micros = [&](absl::CivilDay day) { return absl::ToUnixMicros(absl::FromCivil(day, zone)); };
  const absl::CivilDay day = absl::ToCivilDay(t, zone);
  switch (period) {
    case Period::kDay:
      return {micros(day), micros(day + 1)};
    case Period::kWeek: {
      // absl::Weekday counts from Monday = 0.
      const absl::CivilDay monday = day - static_cast<int>(absl::GetWeekday(day));
      return {micros(monday), micros(monday + 7)};
    }
    case Period::kMonth: {
      const absl::CivilMonth month(day);
      return {micros(absl::CivilDay(month)), micros(absl::CivilDay(month + 1))};
    }
    case Period::kTotal:
      break;
  }
  return {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
}

ScaledTime GcraScaledNow(int64_t per_minute, absl::Time now) {
  return static_cast<ScaledTime>(absl::ToUnixNanos(now)) * per_minute;
}

GcraStep GcraTry(ScaledTime tat, int64_t per_minute, int64_t cost, absl::Time now) {
  const ScaledTime scaled_now = GcraScaledNow(per_minute, now);
  const ScaledTime burst = GcraUnits(per_minute);  // a whole minute's worth at once
  GcraStep step;
  step.new_tat = std::max(tat, scaled_now) + GcraUnits(cost);
  step.never = cost > per_minute;
  const ScaledTime allowed_at = step.new_tat - burst;  // scaled instant the cost would fit
  step.allowed = !step.never && allowed_at <= scaled_now;
  if (!step.allowed && !step.never) {
    const ScaledTime wait = allowed_at - scaled_now;  // > 0, in ns x per_minute
    step.retry_after =
        absl::Nanoseconds(static_cast<int64_t>((wait + per_minute - 1) / per_minute));
  }
  return step;
}

int64_t GcraRemaining(ScaledTime tat, int64_t per_minute, absl::Time now) {
  const ScaledTime scaled_now = GcraScaledNow(per_minute, now);
  const ScaledTime used = std::max<ScaledTime>(tat - scaled_now, 0);
  const ScaledTime free = GcraUnits(per_minute) - used;
  return free <= 0 ? 0 : static_cast<int64_t>(free / GcraUnits(1));
}

}  // namespace terse::tenancy
