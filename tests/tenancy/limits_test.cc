// Calendar windows in named time zones (DST changes, month ends) and GCRA's exact arithmetic.
#include "tenancy/limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"
#include "tests/tenancy/tenancy_testing.h"

namespace terse::tenancy {
namespace {

using ::terse::testing::StatusIs;
using testing::At;
using testing::Zone;

Window Span(const std::string& from, const std::string& to) {
  return {absl::ToUnixMicros(At(from)), absl::ToUnixMicros(At(to))};
}

absl::Duration Length(const Window& w) { return absl::Microseconds(w.end_us - w.start_us); }

TEST(PeriodTest, ParsesTheFourNames) {
  EXPECT_EQ(*ParsePeriod("day"), Period::kDay);
  EXPECT_EQ(*ParsePeriod("week"), Period::kWeek);
  EXPECT_EQ(*ParsePeriod("month"), Period::kMonth);
  EXPECT_EQ(*ParsePeriod("total"), Period::kTotal);
  EXPECT_THAT(ParsePeriod("daily"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(PeriodName(Period::kWeek), "week");
}

TEST(WindowTest, DaysFollowLocalMidnightAcrossDstChanges) {
  const absl::TimeZone ny = Zone("America/New_York");
  // 2026-03-08: clocks go from 02:00 EST to 03:00 EDT, a 23-hour day.
  Window spring = WindowAt(Period::kDay, ny, At("2026-03-08T12:00:00-04:00"));
  EXPECT_EQ(spring, Span("2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"));
  EXPECT_EQ(Length(spring), absl::Hours(23));
  // The last second before the change and the first after are in the same day.
  EXPECT_EQ(WindowAt(Period::kDay, ny, At("2026-03-08T01:59:59-05:00")), spring);
  EXPECT_EQ(WindowAt(Period::kDay, ny, At("2026-03-08T03:00:00-04:00")), spring);
  // The day before is an ordinary 24 hours and ends where this one starts.
  Window before = WindowAt(Period::kDay, ny, At("2026-03-07T23:59:59-05:00"));
  EXPECT_EQ(before.end_us, spring.start_us);
  EXPECT_EQ(Length(before), absl::Hours(24));
  // 2026-11-01: 02:00 EDT back to 01:00 EST, a 25-hour day.
  Window fall = WindowAt(Period::kDay, ny, At("2026-11-01T01:30:00-05:00"));
  EXPECT_EQ(fall, Span("2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"));
  EXPECT_EQ(Length(fall), absl::Hours(25));
}

TEST(WindowTest, AMidnightSkippedByDstStartsTheDayAfterTheGap) {
  // Santiago moved clocks from 24:00 to 01:00 on 2026-09-06: that day has no midnight.
  const absl::TimeZone santiago = Zone("America/Santiago");
  Window day = WindowAt(Period::kDay, santiago, At("2026-09-06T12:00:00-03:00"));
  EXPECT_EQ(day.start_us, absl::ToUnixMicros(At("2026-09-06T01:00:00-03:00")));
  EXPECT_EQ(Length(day), absl::Hours(23));
  EXPECT_EQ(WindowAt(Period::kDay, santiago, At("2026-09-05T23:59:59-04:00")).end_us, day.start_us);
}

TEST(WindowTest, WeeksStartOnMonday) {
  const absl::TimeZone paris = Zone("Europe/Paris");
  // Sunday 2026-03-29 is the day Paris moves to summer time: the week is an hour short.
  Window week = WindowAt(Period::kWeek, paris, At("2026-03-29T23:00:00+02:00"));
  EXPECT_EQ(week, Span("2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"));
  EXPECT_EQ(Length(week), absl::Hours(7 * 24 - 1));
  EXPECT_EQ(WindowAt(Period::kWeek, paris, At("2026-03-23T00:00:00+01:00")), week);
  EXPECT_NE(WindowAt(Period::kWeek, paris, At("2026-03-22T23:59:59+01:00")), week);
}

TEST(WindowTest, MonthsEndAtLocalMidnightOfTheFirst) {
  // Kolkata is UTC+5:30: January ends at 18:30 UTC on the 31st.
  const absl::TimeZone kolkata = Zone("Asia/Kolkata");
  Window january = WindowAt(Period::kMonth, kolkata, At("2026-01-31T18:29:59Z"));
  EXPECT_EQ(january, Span("2026-01-01T00:00:00+05:30", "2026-02-01T00:00:00+05:30"));
  Window february = WindowAt(Period::kMonth, kolkata, At("2026-01-31T18:30:00Z"));
  EXPECT_EQ(february.start_us, january.end_us);
  EXPECT_EQ(Length(february), absl::Hours(28 * 24));
  // A leap February, and December into January.
  EXPECT_EQ(Length(WindowAt(Period::kMonth, kolkata, At("2028-02-15T00:00:00Z"))),
            absl::Hours(29 * 24));
  EXPECT_EQ(WindowAt(Period::kMonth, absl::UTCTimeZone(), At("2026-12-31T23:59:59Z")),
            Span("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"));
  // A month holding a DST change is an hour short in New York.
  EXPECT_EQ(Length(WindowAt(Period::kMonth, Zone("America/New_York"), At("2026-03-15T00:00:00Z"))),
            absl::Hours(31 * 24 - 1));
}

TEST(WindowTest, TotalIsAllOfTime) {
  Window total = WindowAt(Period::kTotal, absl::UTCTimeZone(), At("2026-01-01T00:00:00Z"));
  EXPECT_TRUE(total.Contains(0));
  EXPECT_TRUE(total.Contains(absl::ToUnixMicros(At("2300-01-01T00:00:00Z"))));
  EXPECT_EQ(total, WindowAt(Period::kTotal, Zone("Asia/Tokyo"), At("1999-01-01T00:00:00Z")));
}

TEST(GcraTest, AMinutesWorthAtOnceThenOneInterval) {
  const absl::Time t0 = At("2026-05-01T10:00:00Z");
  ScaledTime tat = 0;
  for (int i = 0; i < 10; ++i) {
    GcraStep step = GcraTry(tat, 10, 1, t0);
    ASSERT_TRUE(step.allowed) << i;
    tat = step.new_tat;
  }
  EXPECT_EQ(GcraRemaining(tat, 10, t0), 0);
  GcraStep refused = GcraTry(tat, 10, 1, t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_FALSE(refused.never);
  EXPECT_EQ(refused.retry_after, absl::Seconds(6));
  // Exactly one interval later, exactly one more.
  EXPECT_FALSE(GcraTry(tat, 10, 1, t0 + absl::Seconds(6) - absl::Nanoseconds(1)).allowed);
  GcraStep next = GcraTry(tat, 10, 1, t0 + absl::Seconds(6));
  EXPECT_TRUE(next.allowed);
  EXPECT_EQ(GcraTry(next.new_tat, 10, 1, t0 + absl::Seconds(6)).retry_after, absl::Seconds(6));
  // A minute of quiet refills all of it.
  EXPECT_EQ(GcraRemaining(next.new_tat, 10, t0 + absl::Seconds(66)), 10);
}

TEST(GcraTest, RatesThatDoNotDivideAMinuteStayExact) {
  const absl::Time t0 = At("2026-05-01T10:00:00Z");
  ScaledTime tat = 0;
  for (int i = 0; i < 7; ++i) tat = GcraTry(tat, 7, 1, t0).new_tat;
  // 60 s / 7 = 8.571428571428... s, rounded up to the nanosecond.
  EXPECT_EQ(GcraTry(tat, 7, 1, t0).retry_after, absl::Nanoseconds(8'571'428'572));
  // 70 intervals are exactly 600 s, with no drift: the 70th fits at 600 s to the nanosecond.
  int admitted = 0;
  for (int s = 0; s <= 600; ++s) {
    GcraStep step = GcraTry(tat, 7, 1, t0 + absl::Seconds(s));
    if (step.allowed) {
      tat = step.new_tat;
      ++admitted;
    }
  }
  EXPECT_EQ(admitted, 70);
}

TEST(GcraTest, TokensAreUnitsAndAnOversizedCostNeverFits) {
  const absl::Time t0 = At("2026-05-01T10:00:00Z");
  GcraStep first = GcraTry(0, 100, 60, t0);
  ASSERT_TRUE(first.allowed);
  EXPECT_EQ(GcraRemaining(first.new_tat, 100, t0), 40);
  GcraStep second = GcraTry(first.new_tat, 100, 60, t0);
  EXPECT_FALSE(second.allowed);
  EXPECT_EQ(second.retry_after, absl::Seconds(12));  // 20 more tokens at 0.6 s each
  EXPECT_TRUE(GcraTry(first.new_tat, 100, 40, t0).allowed);
  GcraStep huge = GcraTry(0, 100, 101, t0);
  EXPECT_FALSE(huge.allowed);
  EXPECT_TRUE(huge.never);
  EXPECT_TRUE(GcraTry(0, 100, 100, t0).allowed);
  EXPECT_TRUE(GcraTry(0, 100, 0, t0).allowed);
}

}  // namespace
}  // namespace terse::tenancy
