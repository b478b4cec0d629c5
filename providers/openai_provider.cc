// OpenAI, Azure OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, LM Studio): the
// same JSON both ways; they differ in the URL and the auth header.
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "base/errors.h"
#include "json/codec.h"
#include "providers/adapters.h"
#include "providers/exchange.h"
#include "providers/upstream_errors.h"

namespace terse::providers {
namespace {

const char* PathOf(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kChatCompletions:
      return "/chat/completions";
    case Endpoint::kCompletions:
      return "/completions";
    case Endpoint::kEmbeddings:
      return "/embeddings";
  }
  return "/chat/completions";
}

// Whether `object` is an object whose `key` is the boolean `value`.
bool IsBool(const Json& object, const char* key, bool value) {
  if (!object.is_object()) return false;
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>() == value;
}

// Percent-encodes a URL path segment (an Azure deployment name comes from the client's `model`).
std::string EncodeSegment(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

class OpenAiProvider : public Provider {
 public:
  OpenAiProvider(ProviderSettings settings, HttpClient& client)
      : settings_(std::move(settings)), client_(client) {}

  const std::string& name() const override { return settings_.name; }

  std::unique_ptr<Call> Send(const Request& request, std::shared_ptr<ResponseSink> sink) override {
    bool needs_key = settings_.kind != v1::Provider::OPENAI_COMPATIBLE;
    if (needs_key && settings_.api_key.empty()) {
      return FailedCall(
          client_,
          WithRecovery(UpstreamFailed("provider \"" + settings_.name + "\" has no API key (" +
                                      (settings_.api_key_env.empty()
                                           ? std::string("api_key_env is not set")
                                           : "$" + settings_.api_key_env + " is empty") +
                                      ")"),
                       Recovery::kFallBack),
          std::move(sink));
    }
    absl::StatusOr<HttpRequest> http = NewHttpRequest(settings_, request);
    if (!http.ok()) return FailedCall(client_, http.status(), std::move(sink));

    const Json& request_body = request.body.json();
    if (!request_body.is_object()) {
      return FailedCall(client_, InvalidRequest("the request body must be a JSON object"),
                        std::move(sink));
    }
    // The request's body is relayed as it is unless a field below must change; the pipeline
    // usually set them already, and every attempt then sends the text the call keeps, uncopied.
    std::optional<json::WireJson> changed;
    auto edit = [&]() -> json::WireJson& {
      if (!changed.has_value()) changed = request.body;
      return *changed;
    };
    bool stream = request.stream && request.endpoint != Endpoint::kEmbeddings;
    if (auto it = request_body.find("stream");
        (stream || it != request_body.end()) && !IsBool(request_body, "stream", stream)) {
      edit().SetMember("stream", stream);
    }
    if (stream && !AsksForUsage(request_body)) AskForUsage(edit());
    const json::WireJson& body = changed.has_value() ? *changed : request.body;

    if (settings_.kind == v1::Provider::AZURE_OPENAI) {
      std::string deployment = StringField(body.json(), "model");
      if (deployment.empty()) {
        return FailedCall(client_, InvalidRequest("`model` names the Azure deployment", "model"),
                          std::move(sink));
      }
      http->url = settings_.base_url + "/openai/deployments/" + EncodeSegment(deployment) +
                  PathOf(request.endpoint) + "?api-version=" + settings_.api_version;
      http->headers.emplace_back("api-key", settings_.api_key);
    } else {
      http->url = settings_.base_url + PathOf(request.endpoint);
      if (!settings_.api_key.empty()) {
        http->headers.emplace_back("Authorization", "Bearer " + settings_.api_key);
      }
    }
    http->headers.emplace_back("Content-Type", "application/json");
    http->headers.emplace_back("Accept", stream ? "text/event-stream" : "application/json");
    http->method = "POST";
    http->body = HttpBody(body.SharedText());
    return StartExchange(client_, *std::move(http), stream, nullptr, nullptr, std::move(sink));
  }

 private:
  const ProviderSettings settings_;
  HttpClient& client_;
};

}  // namespace

std::unique_ptr<Provider> NewOpenAiProvider(ProviderSettings settings, HttpClient& client) {
  return std::make_unique<OpenAiProvider>(std::move(settings), client);
}

}  // namespace terse::providers
