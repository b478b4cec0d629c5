// Settings resolution and the pieces every adapter shares.
#include "providers/adapters.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "absl/time/clock.h"
#include "base/ascii.h"
#include "base/errors.h"
#include "providers/upstream_errors.h"

namespace terse::providers {
namespace {

absl::Duration MsOr(uint32_t ms, int64_t default_ms) {
  return absl::Milliseconds(ms == 0 ? default_ms : ms);
}

// Headers an adapter sets itself, or that would leak a client's credentials upstream.
bool IsReservedHeader(std::string_view name) {
  static const char* const kReserved[] = {
      "authorization", "api-key",           "x-api-key",  "content-type", "content-length",
      "host",          "transfer-encoding", "connection", "expect",       "anthropic-version"};
  std::string lower = AsciiLower(name);
  return std::any_of(std::begin(kReserved), std::end(kReserved),
                     [&](const char* r) { return lower == r; });
}

}  // namespace

absl::StatusOr<ProviderSettings> ResolveSettings(const v1::Provider& config) {
  ProviderSettings s;
  s.name = config.name();
  if (s.name.empty()) return absl::InvalidArgumentError("a provider has no name");
  s.kind = config.kind();
  s.base_url = config.base_url();
  while (!s.base_url.empty() && s.base_url.back() == '/') s.base_url.pop_back();
  s.api_version = config.api_version();
  switch (s.kind) {
    case v1::Provider::OPENAI:
      if (s.base_url.empty()) s.base_url = "https://api.openai.com/v1";
      break;
    case v1::Provider::ANTHROPIC:
      if (s.base_url.empty()) s.base_url = "https://api.anthropic.com/v1";
      if (s.api_version.empty()) s.api_version = "2023-06-01";
      break;
    case v1::Provider::AZURE_OPENAI:
      if (s.api_version.empty()) s.api_version = "2024-10-21";
      [[fallthrough]];
    case v1::Provider::OPENAI_COMPATIBLE:
      if (s.base_url.empty()) {
        return absl::InvalidArgumentError("provider \"" + s.name + "\" needs a base_url");
      }
      break;
    case v1::Provider::ECHO:
      break;
    default:
      return absl::InvalidArgumentError("provider \"" + s.name + "\" has no kind");
  }
  s.api_key_env = config.api_key_env();
  if (!s.api_key_env.empty()) {
    if (const char* key = std::getenv(s.api_key_env.c_str())) s.api_key = key;
  }
  for (const auto& [k, v] : config.headers()) s.headers.emplace_back(k, v);
  std::sort(s.headers.begin(), s.headers.end());
  s.connect_timeout = MsOr(config.timeouts().connect_ms(), 5000);
  s.first_byte_timeout = MsOr(config.timeouts().first_byte_ms(), 60000);
  s.total_timeout = MsOr(config.timeouts().total_ms(), 600000);
  s.ca_bundle = config.ca_bundle();
  s.insecure_skip_verify = config.insecure_skip_verify();
  s.libcurl_only = config.libcurl_only();
  s.echo_delay = absl::Milliseconds(config.echo_delay_ms());
  return s;
}

absl::StatusOr<HttpRequest> NewHttpRequest(const ProviderSettings& settings,
                                           const Request& request) {
  HttpRequest http;
  http.connect_timeout = settings.connect_timeout;
  http.first_byte_timeout = settings.first_byte_timeout;
  http.total_timeout = settings.total_timeout;
  if (request.deadline != absl::InfiniteFuture()) {
    absl::Duration left = request.deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return UpstreamTimedOut("the request's deadline passed before the upstream call");
    }
    http.total_timeout = std::min(http.total_timeout, left);
    http.first_byte_timeout = std::min(http.first_byte_timeout, left);
    http.connect_timeout = std::min(http.connect_timeout, left);
  }
  http.ca_bundle = settings.ca_bundle;
  http.insecure_skip_verify = settings.insecure_skip_verify;
  http.libcurl_only = settings.libcurl_only;
  for (const auto& [k, v] : settings.headers) {
    if (!IsReservedHeader(k)) http.headers.emplace_back(k, v);
  }
  for (const auto& [k, v] : request.headers) {
    if (!IsReservedHeader(k)) http.headers.emplace_back(k, v);
  }
  return http;
}

int ApproxTokens(std::string_view text) {
  int words = 0;
  bool in_word = false;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++words;
    }
  }
  return words;
}

absl::StatusOr<std::unique_ptr<Provider>> NewProvider(ProviderSettings settings,
                                                      HttpClient& client) {
  switch (settings.kind) {
    case v1::Provider::OPENAI:
    case v1::Provider::AZURE_OPENAI:
    case v1::Provider::OPENAI_COMPATIBLE:
      return NewOpenAiProvider(std::move(settings), client);
    case v1::Provider::ANTHROPIC:
      return NewAnthropicProvider(std::move(settings), client);
    case v1::Provider::ECHO:
      return NewEchoProvider(std::move(settings), client);
    default:
      return absl::InvalidArgumentError("provider \"" + settings.name + "\" has no kind");
  }
}

}  // namespace terse::providers
