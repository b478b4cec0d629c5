// The adapters, one per upstream API, and the settings they are built from. ProviderSet is the
// usual way to get them; tests build single adapters directly.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "providers/http_client.h"
#include "providers/provider.h"
#include "terse/v1/config.pb.h"

namespace terse::providers {

// One provider's configuration with every default filled in and its key read from the
// environment. Constant after construction.
struct ProviderSettings {
  std::string name;
  v1::Provider::Kind kind = v1::Provider::KIND_UNSPECIFIED;
  std::string base_url;     // without a trailing '/'
  std::string api_key;      // from $api_key_env; never logged
  std::string api_key_env;  // the variable's name, for error messages
  std::string api_version;  // azure `api-version`, anthropic `anthropic-version`
  std::vector<std::pair<std::string, std::string>> headers;  // extra upstream headers
  absl::Duration connect_timeout = absl::Milliseconds(5000);
  absl::Duration first_byte_timeout = absl::Milliseconds(60000);
  absl::Duration total_timeout = absl::Milliseconds(600000);
  std::string ca_bundle;
  bool insecure_skip_verify = false;
  bool libcurl_only = false;
  absl::Duration echo_delay = absl::ZeroDuration();
};

// Defaults of the config schema: timeouts as above; base URLs https://api.openai.com/v1 (openai)
// and https://api.anthropic.com/v1 (anthropic); api-version 2024-10-21 (azure) and
// anthropic-version 2023-06-01. kInvalidArgument names what is missing (a base URL for azure and
// openai_compatible, a kind).
absl::StatusOr<ProviderSettings> ResolveSettings(const v1::Provider& config);

// `client` must outlive the adapters. openai, azure_openai and openai_compatible share one
// adapter; they differ in URL and auth header.
std::unique_ptr<Provider> NewOpenAiProvider(ProviderSettings settings, HttpClient& client);
std::unique_ptr<Provider> NewAnthropicProvider(ProviderSettings settings, HttpClient& client);
std::unique_ptr<Provider> NewEchoProvider(ProviderSettings settings, HttpClient& client);
// The adapter for settings.kind.
absl::StatusOr<std::unique_ptr<Provider>> NewProvider(ProviderSettings settings,
                                                      HttpClient& client);

// An HTTP request carrying the settings' timeouts and TLS options (the total timeout cut to the
// request's deadline) and the extra headers of the settings and the request, minus any that carry
// credentials or framing. UpstreamTimedOut when the deadline has already passed.
absl::StatusOr<HttpRequest> NewHttpRequest(const ProviderSettings& settings,
                                           const Request& request);

// Approximate token count of text: whitespace-separated words. The echo provider's usage until
// exact BPE counting replaces it.
int ApproxTokens(std::string_view text);

}  // namespace terse::providers
