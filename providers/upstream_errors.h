// Failures of upstream calls as statuses of base/errors.h, each marked with what may help: a
// retry on the same provider, a fallback to the next one, or nothing; the delay the upstream asked
// for before a retry travels beside it (base/errors.h, WithRetryAfter). The marks are set where
// the failure is understood (the HTTP engine, the adapters) and read by ProviderSet.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace terse::providers {

enum class Recovery {
  kNone,      // the request itself is at fault, or the call was cancelled: report it
  kFallBack,  // this provider will not do (bad key, hung upstream): try the next one
  kRetry,     // transient (connect error, reset, 429, 5xx): retry, then fall back
};

// How an exchange failed in the transport, in one wording for both of the engine's clients;
// `detail` says what the client saw.
// No response head within the exchange's first-byte timeout (UpstreamTimedOut, kFallBack: the
// upstream hangs, another one may not).
absl::Status FirstByteTimedOut(absl::Duration timeout);
// The upstream could not be reached (UpstreamFailed, kRetry: a retry may find it).
absl::Status ConnectFailed(std::string_view detail);
// No connection within the time allowed (UpstreamTimedOut, kRetry).
absl::Status ConnectTimedOut(std::string_view detail);
// The response did not end within the exchange's total timeout (UpstreamTimedOut, kFallBack).
absl::Status ResponseTimedOut(std::string_view detail);
// The connection failed during the exchange (UpstreamFailed, kRetry).
absl::Status ConnectionFailed(std::string_view detail);

// `status` with its recovery attached.
absl::Status WithRecovery(absl::Status status, Recovery recovery);
// kNone for statuses without a mark.
Recovery RecoveryOf(const absl::Status& status);

// The delay asked for by an upstream answer's headers (their values; "" when absent):
// `retry-after-ms` (OpenAI's: milliseconds, fraction allowed) when it is valid, else
// `retry-after` as delta-seconds or an HTTP-date (then the time left from `now`; zero when it has
// passed). Garbage in either is ignored; nullopt when neither gives a delay. A number too large to
// mean anything becomes InfiniteDuration.
std::optional<absl::Duration> ParseRetryAfter(std::string_view retry_after_ms,
                                              std::string_view retry_after, absl::Time now);

// An upstream error response. 4xx keep the upstream's HTTP status, message, type, code and param
// (429 and 408 may be retried; 401, 403 and 404 fall back); 5xx become UpstreamFailed (502) with
// the upstream's message, retryable.
absl::Status UpstreamHttpError(int http_status, std::string_view message, std::string_view type,
                               std::string_view code, std::string_view param);

// An error response body in OpenAI's shape (`{"error": {...}}`), Anthropic's
// (`{"type": "error", "error": {...}}`) or anything else, as UpstreamHttpError.
absl::Status UpstreamErrorFromBody(int http_status, std::string_view body);

}  // namespace terse::providers
