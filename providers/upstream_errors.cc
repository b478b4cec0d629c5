// The recovery mark travels as a status payload, so it survives copies and does not change the
// status's code, message or wire detail.
#include "providers/upstream_errors.h"

#include <string>

#include "absl/strings/cord.h"
#include "base/errors.h"
#include "base/json.h"

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

}  // namespace

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
  Json j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
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
