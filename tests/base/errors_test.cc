#include "base/errors.h"

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

}  // namespace
}  // namespace terse
