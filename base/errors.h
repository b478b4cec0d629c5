// The one error table: every failure is an absl::Status whose code maps to a gRPC status, and
// whose HTTP status and OpenAI error `type`/`code`/`param` either follow from the code or are
// attached explicitly (an upstream 400 stays a 400 with the upstream's message).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/json.h"

namespace terse {

struct ErrorDetail {
  int http_status = 0;   // 0: derived from the status code
  std::string type;      // OpenAI error type; empty: derived
  std::string code;      // OpenAI error code; empty: null on the wire
  std::string param;     // the offending request field; empty: null on the wire
  bool retryable = true; // false adds `x-should-retry: false`
  // The delay an upstream asked for before a retry, in whole milliseconds, for the client's SDK
  // to honour (`retry-after-ms`/`retry-after` over HTTP, trailing metadata over gRPC); nullopt
  // when none was asked for or it is a day or more (no client waits that long).
  std::optional<int64_t> retry_after_ms;
};

// A status with an explicit detail attached (as a payload, so it survives copies).
absl::Status MakeError(absl::StatusCode code, std::string_view message, const ErrorDetail& detail);

// Common errors of the wire table in openai-wire.md.
absl::Status InvalidRequest(std::string_view message, std::string_view param = {});
absl::Status ModelNotFound(std::string_view model);
absl::Status UpstreamFailed(std::string_view message);     // 502 upstream_error
absl::Status UpstreamTimedOut(std::string_view message);   // 504 upstream_error
absl::Status Overloaded(std::string_view message);         // 503 server_error
absl::Status PayloadTooLarge(std::string_view message);    // 413

// `status` with the delay an upstream asked for before the next attempt attached (a payload
// beside the detail: the code, message and detail stay as they are). OK stays OK.
absl::Status WithRetryAfter(absl::Status status, absl::Duration delay);
// The attached delay; nullopt when none was asked for.
std::optional<absl::Duration> RetryAfterOf(const absl::Status& status);

// `status` with response fields attached that both faces send with the error (HTTP headers, gRPC
// trailing metadata): a refusal's x-ratelimit-* state. OK stays OK.
absl::Status WithResponseFields(absl::Status status,
                                const std::vector<std::pair<std::string, std::string>>& fields);
// The attached fields, in order; empty when none.
std::vector<std::pair<std::string, std::string>> ResponseFieldsOf(const absl::Status& status);

// The full detail of a status: the attached one, with blanks filled from the code, and the
// retry delay.
ErrorDetail DetailOf(const absl::Status& status);

// HTTP status of a status code when nothing explicit is attached.
int HttpStatusOf(absl::StatusCode code);

// `{"error": {"message", "type", "param", "code"}}` for a non-OK status.
Json OpenAiErrorBody(const absl::Status& status);

}  // namespace terse
