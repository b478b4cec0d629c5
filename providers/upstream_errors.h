// Failures of upstream calls as statuses of base/errors.h, each marked with what may help: a
// retry on the same provider, a fallback to the next one, or nothing. The mark is set where the
// failure is understood (the HTTP engine, the adapters) and read by ProviderSet.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace terse::providers {

enum class Recovery {
  kNone,      // the request itself is at fault, or the call was cancelled: report it
  kFallBack,  // this provider will not do (bad key, hung upstream): try the next one
  kRetry,     // transient (connect error, reset, 429, 5xx): retry, then fall back
};

// `status` with its recovery attached.
absl::Status WithRecovery(absl::Status status, Recovery recovery);
// kNone for statuses without a mark.
Recovery RecoveryOf(const absl::Status& status);

// An upstream error response. 4xx keep the upstream's HTTP status, message, type, code and param
// (429 and 408 may be retried; 401, 403 and 404 fall back); 5xx become UpstreamFailed (502) with
// the upstream's message, retryable.
absl::Status UpstreamHttpError(int http_status, std::string_view message, std::string_view type,
                               std::string_view code, std::string_view param);

// An error response body in OpenAI's shape (`{"error": {...}}`), Anthropic's
// (`{"type": "error", "error": {...}}`) or anything else, as UpstreamHttpError.
absl::Status UpstreamErrorFromBody(int http_status, std::string_view body);

}  // namespace terse::providers
