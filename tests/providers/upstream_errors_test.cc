// The upstream's retry delay: reading retry-after-ms / retry-after, and carrying it on a status
// next to the recovery mark.
#include "providers/upstream_errors.h"

#include <optional>

#include "base/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace terse::providers {
namespace {

using ::terse::testing::StatusIs;
using ::testing::Optional;

// 1994-11-06 08:49:37 UTC, the example date of RFC 9110.
absl::Time ExampleDate() {
  return absl::FromCivil(absl::CivilSecond(1994, 11, 6, 8, 49, 37), absl::UTCTimeZone());
}

TEST(ParseRetryAfterTest, MillisecondsComeFirst) {
  absl::Time now = absl::Now();
  EXPECT_THAT(ParseRetryAfter("150", "", now), Optional(absl::Milliseconds(150)));
  EXPECT_THAT(ParseRetryAfter("150", "20", now), Optional(absl::Milliseconds(150)));
  EXPECT_THAT(ParseRetryAfter(" 22.5 ", "", now), Optional(absl::Microseconds(22500)));
  EXPECT_THAT(ParseRetryAfter("0", "", now), Optional(absl::ZeroDuration()));
}

TEST(ParseRetryAfterTest, DeltaSeconds) {
  absl::Time now = absl::Now();
  EXPECT_THAT(ParseRetryAfter("", "1", now), Optional(absl::Seconds(1)));
  EXPECT_THAT(ParseRetryAfter("", "120", now), Optional(absl::Seconds(120)));
  // A garbage retry-after-ms does not hide a good retry-after.
  EXPECT_THAT(ParseRetryAfter("soon", "3", now), Optional(absl::Seconds(3)));
  // Absurdly large: as good as never.
  EXPECT_THAT(ParseRetryAfter("", "99999999999999999999999", now),
              Optional(absl::InfiniteDuration()));
}

TEST(ParseRetryAfterTest, HttpDatesInAllThreeForms) {
  absl::Time now = ExampleDate() - absl::Seconds(30);
  EXPECT_THAT(ParseRetryAfter("", "Sun, 06 Nov 1994 08:49:37 GMT", now),
              Optional(absl::Seconds(30)));
  EXPECT_THAT(ParseRetryAfter("", "Sunday, 06-Nov-94 08:49:37 GMT", now),
              Optional(absl::Seconds(30)));
  EXPECT_THAT(ParseRetryAfter("", "Sun Nov  6 08:49:37 1994", now), Optional(absl::Seconds(30)));
  // A date already past: retry now.
  EXPECT_THAT(ParseRetryAfter("", "Sun, 06 Nov 1994 08:49:37 GMT", ExampleDate() + absl::Hours(1)),
              Optional(absl::ZeroDuration()));
}

TEST(ParseRetryAfterTest, GarbageIsIgnored) {
  absl::Time now = absl::Now();
  for (const char* bad : {"", "soon", "-5", "+5", "1.5", "1e3", "5s", "0x10", "1 2", ".5",
                          "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Nov 1994"}) {
    EXPECT_EQ(ParseRetryAfter("", bad, now), std::nullopt) << bad;
  }
  for (const char* bad : {"soon", "-5", "1e3", "150ms", "5.", "nan", "inf"}) {
    EXPECT_EQ(ParseRetryAfter(bad, "", now), std::nullopt) << bad;
  }
}

TEST(RetryAfterPayloadTest, TravelsWithTheStatusAndLeavesItAsItWas) {
  absl::Status status = UpstreamHttpError(429, "slow down", "rate_limit_error", "", "");
  EXPECT_EQ(RetryAfterOf(status), std::nullopt);
  absl::Status marked = WithRetryAfter(status, absl::Milliseconds(150));
  EXPECT_THAT(RetryAfterOf(marked), Optional(absl::Milliseconds(150)));
  EXPECT_EQ(RecoveryOf(marked), Recovery::kRetry);
  EXPECT_THAT(marked, StatusIs(absl::StatusCode::kResourceExhausted, "slow down"));
  EXPECT_EQ(DetailOf(marked).http_status, 429);
  EXPECT_EQ(DetailOf(marked).type, "rate_limit_error");

  absl::Status copy = marked;  // a payload survives copies
  EXPECT_THAT(RetryAfterOf(copy), Optional(absl::Milliseconds(150)));
  EXPECT_THAT(RetryAfterOf(WithRetryAfter(status, absl::InfiniteDuration())),
              Optional(absl::InfiniteDuration()));
  EXPECT_TRUE(WithRetryAfter(absl::OkStatus(), absl::Seconds(1)).ok());
}

}  // namespace
}  // namespace terse::providers
