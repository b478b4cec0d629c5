#include "base/errors.h"

#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace terse {
namespace {

TEST(ErrorsTest, ExplicitDetailSurvivesCopies) {
  absl::Status s = ModelNotFound("gpt-x");
  absl::Status copy = s;
  ErrorDetail d = DetailOf(copy);
  EXPECT_EQ(d.http_status, 404);
  EXPECT_EQ(d.type, "invalid_request_error");
  EXPECT_EQ(d.code, "model_not_found");
  EXPECT_EQ(d.param, "model");
}

TEST(ErrorsTest, DerivedFromCodeWhenNothingAttached) {
  EXPECT_EQ(DetailOf(absl::UnauthenticatedError("no key")).http_status, 401);
  EXPECT_EQ(DetailOf(absl::UnauthenticatedError("no key")).code, "invalid_api_key");
  EXPECT_EQ(DetailOf(absl::ResourceExhaustedError("slow")).type, "rate_limit_error");
  EXPECT_EQ(DetailOf(UpstreamFailed("boom")).http_status, 502);
  EXPECT_EQ(DetailOf(UpstreamTimedOut("slow")).type, "upstream_error");
  EXPECT_EQ(DetailOf(PayloadTooLarge("big")).http_status, 413);
}

TEST(ErrorsTest, OpenAiBodyHasNullsForMissingParamAndCode) {
  Json body = OpenAiErrorBody(absl::InternalError("bad"));
  EXPECT_EQ(body["error"]["message"], "bad");
  EXPECT_EQ(body["error"]["type"], "server_error");
  EXPECT_TRUE(body["error"]["param"].is_null());
  EXPECT_TRUE(body["error"]["code"].is_null());
}

// What a face passes on to its client: whole milliseconds, nothing for no delay or a day or more.
TEST(ErrorsTest, RetryAfterReachesTheDetailInWholeMillisecondsBelowADay) {
  using ::testing::Optional;
  const absl::Status status = MakeError(absl::StatusCode::kResourceExhausted, "slow down",
                                        {.http_status = 429, .type = "rate_limit_error"});
  EXPECT_EQ(DetailOf(status).retry_after_ms, std::nullopt);
  EXPECT_EQ(RetryAfterOf(status), std::nullopt);
  EXPECT_THAT(DetailOf(WithRetryAfter(status, absl::Microseconds(2500500))).retry_after_ms,
              Optional(2500));
  EXPECT_THAT(DetailOf(WithRetryAfter(status, absl::ZeroDuration())).retry_after_ms, Optional(0));
  EXPECT_EQ(DetailOf(WithRetryAfter(status, absl::Hours(24))).retry_after_ms, std::nullopt);
  EXPECT_EQ(DetailOf(WithRetryAfter(status, absl::InfiniteDuration())).retry_after_ms,
            std::nullopt);
  // The delay leaves the rest of the detail as it was.
  const ErrorDetail detail = DetailOf(WithRetryAfter(status, absl::Seconds(1)));
  EXPECT_EQ(detail.http_status, 429);
  EXPECT_EQ(detail.type, "rate_limit_error");
}

TEST(ErrorsTest, ResponseFieldsTravelWithTheStatusInOrder) {
  using Fields = std::vector<std::pair<std::string, std::string>>;
  const absl::Status status = absl::ResourceExhaustedError("slow down");
  EXPECT_TRUE(ResponseFieldsOf(status).empty());
  const Fields fields = {{"x-ratelimit-limit-requests", "2"},
                         {"x-ratelimit-remaining-requests", "0"},
                         {"x-ratelimit-reset-requests", "29.5s"}};
  const absl::Status with = WithRetryAfter(WithResponseFields(status, fields), absl::Seconds(1));
  EXPECT_EQ(ResponseFieldsOf(with), fields);
  EXPECT_EQ(with.code(), status.code());
  EXPECT_EQ(with.message(), status.message());
  // A field that could break a header line is left out; OK stays OK.
  EXPECT_EQ(ResponseFieldsOf(WithResponseFields(status, {{"a", "1\nb: 2"}, {"c", "3"}})),
            (Fields{{"c", "3"}}));
  EXPECT_TRUE(WithResponseFields(absl::OkStatus(), fields).ok());
}

}  // namespace
}  // namespace terse
