// The recovery mark travels as a status payload, so it survives copies and does not change the
// status's code, message or wire detail.
#include "providers/upstream_errors.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/strings/cord.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "base/json.h"
#include "json/codec.h"

namespace terse::providers {
namespace {

constexpr std::string_view kRecoveryUrl = "type.terse.dev/UpstreamRecovery";

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::StatusCode CodeOfHttp(int http_status) {
  switch (http_status) {
    case 400:
    case 413:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 408:
      return absl::StatusCode::kDeadlineExceeded;
    case 409:
      return absl::StatusCode::kAborted;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kFailedPrecondition;
  }
}

std::string StringField(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) return "";
  const Json& value = object[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number()) return value.dump();
  return "";
}

bool AllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A non-negative decimal number of `unit`s: digits, and when `fraction` is allowed an optional
// '.' and more digits. Signs, exponents, inner spaces and empty strings are not numbers.
std::optional<absl::Duration> ParseDecimal(std::string_view s, absl::Duration unit, bool fraction) {
  s = AsciiTrim(s);
  size_t dot = fraction ? s.find('.') : std::string_view::npos;
  std::string_view whole = s.substr(0, dot);
  std::string_view part = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  if (whole.empty() || !AllDigits(whole)) return std::nullopt;
  if (dot != std::string_view::npos && (part.empty() || !AllDigits(part))) return std::nullopt;
  // Far beyond any backoff limit: no need to compute it (or overflow doing so).
  if (whole.size() > 12) return absl::InfiniteDuration();
  int64_t n = 0;
  for (char c : whole) n = n * 10 + (c - '0');
  absl::Duration delay = unit * n;
  absl::Duration scale = unit;
  for (char c : part.substr(0, 6)) {
    scale /= 10;
    delay += scale * (c - '0');
  }
  return delay;
}

// An HTTP-date in any of the three forms recipients must accept (RFC 9110, 5.6.7): IMF-fixdate,
// and the obsolete RFC 850 and asctime forms.
std::optional<absl::Time> ParseHttpDate(std::string_view s) {
  s = AsciiTrim(s);
  static constexpr const char* kFormats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",  // Sun, 06 Nov 1994 08:49:37 GMT
      "%A, %d-%b-%y %H:%M:%S GMT",  // Sunday, 06-Nov-94 08:49:37 GMT
      "%a %b %e %H:%M:%S %Y",       // Sun Nov  6 08:49:37 1994
  };
  for (const char* format : kFormats) {
    absl::Time time;
    std::string error;
    if (absl::ParseTime(format, ToAbsl(s), absl::UTCTimeZone(), &time, &error)) return time;
  }
  return std::nullopt;
}

}  // namespace

std::optional<absl::Duration> ParseRetryAfter(std::string_view retry_after_ms,
                                              std::string_view retry_after, absl::Time now) {
  if (auto ms = ParseDecimal(retry_after_ms, absl::Milliseconds(1), /*fraction=*/true)) return ms;
  if (auto seconds = ParseDecimal(retry_after, absl::Seconds(1), /*fraction=*/false)) {
    return seconds;
  }
  if (auto date = ParseHttpDate(retry_after)) return std::max(*date - now, absl::ZeroDuration());
  return std::nullopt;
}

absl::Status FirstByteTimedOut(absl::Duration timeout) {
  return WithRecovery(UpstreamTimedOut("no response from the upstream within " +
                                       std::to_string(absl::ToInt64Milliseconds(timeout)) + " ms"),
                      Recovery::kFallBack);
}

absl::Status ConnectFailed(std::string_view detail) {
  return WithRecovery(UpstreamFailed("could not connect to the upstream: " + std::string(detail)),
                      Recovery::kRetry);
}

absl::Status ConnectTimedOut(std::string_view detail) {
  return WithRecovery(
      UpstreamTimedOut("connecting to the upstream timed out (" + std::string(detail) + ")"),
      Recovery::kRetry);
}

absl::Status ResponseTimedOut(std::string_view detail) {
  return WithRecovery(
      UpstreamTimedOut("the upstream response timed out (" + std::string(detail) + ")"),
      Recovery::kFallBack);
}

absl::Status ConnectionFailed(std::string_view detail) {
  return WithRecovery(UpstreamFailed("the upstream connection failed: " + std::string(detail)),
                      Recovery::kRetry);
}

absl::Status WithRecovery(absl::Status status, Recovery recovery) {
  if (status.ok()) return status;
  const char* mark = recovery == Recovery::kRetry      ? "retry"
                     : recovery == Recovery::kFallBack ? "fallback"
                                                       : "none";
  status.SetPayload(ToAbsl(kRecoveryUrl), absl::Cord(mark));
  return status;
}

Recovery RecoveryOf(const absl::Status& status) {
  auto payload = status.GetPayload(ToAbsl(kRecoveryUrl));
  if (!payload) return Recovery::kNone;
  if (*payload == "retry") return Recovery::kRetry;
  if (*payload == "fallback") return Recovery::kFallBack;
  return Recovery::kNone;
}

absl::Status UpstreamHttpError(int http_status, std::string_view message, std::string_view type,
                               std::string_view code, std::string_view param) {
  std::string text(message);
  if (http_status >= 500 || http_status < 400) {
    if (text.empty()) text = "no message";
    return WithRecovery(
        UpstreamFailed("upstream returned HTTP " + std::to_string(http_status) + ": " + text),
        Recovery::kRetry);
  }
  if (text.empty()) text = "upstream returned HTTP " + std::to_string(http_status);
  absl::Status status = MakeError(CodeOfHttp(http_status), text,
                                  {.http_status = http_status,
                                   .type = std::string(type),
                                   .code = std::string(code),
                                   .param = std::string(param)});
  Recovery recovery = Recovery::kNone;
  if (http_status == 429 || http_status == 408) recovery = Recovery::kRetry;
  if (http_status == 401 || http_status == 403 || http_status == 404) {
    recovery = Recovery::kFallBack;
  }
  return WithRecovery(std::move(status), recovery);
}

absl::Status UpstreamErrorFromBody(int http_status, std::string_view body) {
  const Json j = json::ParseJson(body).value_or(Json());
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const Json& e = j["error"];
    std::string type = StringField(e, "type");
    // Anthropic's error types that OpenAI clients do not know.
    if (type == "not_found_error") type = "invalid_request_error";
    if (type == "api_error" || type == "overloaded_error") type = "server_error";
    return UpstreamHttpError(http_status, StringField(e, "message"), type, StringField(e, "code"),
                             StringField(e, "param"));
  }
  if (j.is_object() && j.contains("error") && j["error"].is_string()) {
    return UpstreamHttpError(http_status, j["error"].get<std::string>(), "", "", "");
  }
  // Not JSON (an HTML error page of a load balancer, say): a short excerpt is enough.
  std::string excerpt(body.substr(0, 200));
  return UpstreamHttpError(http_status, excerpt, "", "", "");
}

}  // namespace terse::providers
