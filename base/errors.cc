// The error table of openai-wire.md, in one place.
#include "base/errors.h"

#include <algorithm>

#include "absl/strings/cord.h"

namespace terse {
namespace {

constexpr std::string_view kPayloadUrl = "type.terse.dev/ErrorDetail";
constexpr std::string_view kRetryAfterUrl = "type.terse.dev/UpstreamRetryAfter";
constexpr std::string_view kResponseFieldsUrl = "type.terse.dev/ResponseFields";

absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string_view DefaultType(int http_status) {
  switch (http_status) {
    case 400: case 404: case 413: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 502: case 504: return "upstream_error";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kFailedPrecondition: return 400;
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists: return 409;
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

absl::Status MakeError(absl::StatusCode code, std::string_view message,
                       const ErrorDetail& detail) {
  absl::Status status(code, absl::string_view(message.data(), message.size()));
  Json j = {{"http", detail.http_status}, {"type", detail.type}, {"code", detail.code},
            {"param", detail.param}, {"retryable", detail.retryable}};
  status.SetPayload(absl::string_view(kPayloadUrl.data(), kPayloadUrl.size()), absl::Cord(j.dump()));
  return status;
}

absl::Status InvalidRequest(std::string_view message, std::string_view param) {
  return MakeError(absl::StatusCode::kInvalidArgument, message,
                   {.http_status = 400, .param = std::string(param)});
}
absl::Status ModelNotFound(std::string_view model) {
  return MakeError(absl::StatusCode::kNotFound,
                   "The model `" + std::string(model) + "` does not exist or no route serves it.",
                   {.http_status = 404, .code = "model_not_found", .param = "model"});
}
absl::Status UpstreamFailed(std::string_view message) {
  return MakeError(absl::StatusCode::kUnavailable, message, {.http_status = 502});
}
absl::Status UpstreamTimedOut(std::string_view message) {
  return MakeError(absl::StatusCode::kDeadlineExceeded, message, {.http_status = 504});
}
absl::Status Overloaded(std::string_view message) {
  return MakeError(absl::StatusCode::kUnavailable, message, {.http_status = 503});
}
absl::Status PayloadTooLarge(std::string_view message) {
  return MakeError(absl::StatusCode::kInvalidArgument, message, {.http_status = 413});
}

absl::Status WithRetryAfter(absl::Status status, absl::Duration delay) {
  if (status.ok()) return status;
  status.SetPayload(ToAbsl(kRetryAfterUrl),
                    absl::Cord(absl::FormatDuration(std::max(delay, absl::ZeroDuration()))));
  return status;
}

absl::Status WithResponseFields(absl::Status status,
                                const std::vector<std::pair<std::string, std::string>>& fields) {
  if (status.ok() || fields.empty()) return status;
  // One "name\nvalue\n" per field; a field with a line break (which would end a header line) is
  // left out.
  std::string encoded;
  for (const auto& [name, value] : fields) {
    if (name.find_first_of("\r\n") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      continue;
    }
    encoded.append(name).append("\n").append(value).append("\n");
  }
  status.SetPayload(ToAbsl(kResponseFieldsUrl), absl::Cord(encoded));
  return status;
}

std::vector<std::pair<std::string, std::string>> ResponseFieldsOf(const absl::Status& status) {
  std::vector<std::pair<std::string, std::string>> fields;
  auto payload = status.GetPayload(ToAbsl(kResponseFieldsUrl));
  if (!payload) return fields;
  const std::string text(*payload);
  size_t at = 0;
  while (at < text.size()) {
    const size_t name_end = text.find('\n', at);
    if (name_end == std::string::npos) break;
    const size_t value_end = text.find('\n', name_end + 1);
    if (value_end == std::string::npos) break;
    fields.emplace_back(text.substr(at, name_end - at),
                        text.substr(name_end + 1, value_end - name_end - 1));
    at = value_end + 1;
  }
  return fields;
}

std::optional<absl::Duration> RetryAfterOf(const absl::Status& status) {
  auto payload = status.GetPayload(ToAbsl(kRetryAfterUrl));
  if (!payload) return std::nullopt;
  absl::Duration delay;
  if (!absl::ParseDuration(std::string(*payload), &delay)) return std::nullopt;
  return delay;
}

ErrorDetail DetailOf(const absl::Status& status) {
  ErrorDetail detail;
  if (auto payload = status.GetPayload(absl::string_view(kPayloadUrl.data(), kPayloadUrl.size()))) {
    Json j = Json::parse(std::string(*payload), nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      detail.http_status = j.value("http", 0);
      detail.type = j.value("type", "");
      detail.code = j.value("code", "");
      detail.param = j.value("param", "");
      detail.retryable = j.value("retryable", true);
    }
  }
  if (detail.http_status == 0) detail.http_status = HttpStatusOf(status.code());
  if (detail.type.empty()) detail.type = std::string(DefaultType(detail.http_status));
  if (detail.code.empty() && detail.http_status == 401) detail.code = "invalid_api_key";
  if (std::optional<absl::Duration> delay = RetryAfterOf(status);
      delay.has_value() && *delay < absl::Hours(24)) {
    detail.retry_after_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(*delay));
  }
  return detail;
}

Json OpenAiErrorBody(const absl::Status& status) {
  ErrorDetail d = DetailOf(status);
  Json error = {{"message", std::string(status.message())},
                {"type", d.type},
                {"param", d.param.empty() ? Json(nullptr) : Json(d.param)},
                {"code", d.code.empty() ? Json(nullptr) : Json(d.code)}};
  return Json{{"error", std::move(error)}};
}

}  // namespace terse
