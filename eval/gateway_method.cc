// Chat completions through the providers' OpenAI-compatible adapter, waited for one by one.
#include "eval/gateway_method.h"

#include <future>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "providers/adapters.h"
#include "providers/http_client.h"
#include "providers/provider.h"

namespace terse::eval {
namespace {

// Collects one non-streaming answer; the promise is kept once, by OnDone.
class WaitingSink : public providers::ResponseSink {
 public:
  void OnResponse(json::WireJson body) override { body_ = body.json(); }
  void OnChunks(std::span<json::WireJson>) override {}
  void OnDone(absl::Status status) override {
    if (status.ok()) {
      done_.set_value(std::move(body_));
    } else {
      done_.set_value(std::move(status));
    }
  }
  std::future<absl::StatusOr<Json>> Future() { return done_.get_future(); }

 private:
  Json body_;
  std::promise<absl::StatusOr<Json>> done_;
};

}  // namespace

struct GatewayClient::Impl {
  GatewayOptions options;
  std::unique_ptr<providers::HttpClient> http;  // declared before the provider that uses it
  std::unique_ptr<providers::Provider> provider;
};

GatewayClient::GatewayClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GatewayClient::~GatewayClient() {
  impl_->provider.reset();
  impl_->http.reset();
}

absl::StatusOr<std::shared_ptr<GatewayClient>> GatewayClient::Create(GatewayOptions options) {
  if (options.base_url.empty())
    return absl::InvalidArgumentError("the gateway's base URL is empty");
  while (!options.base_url.empty() && options.base_url.back() == '/') options.base_url.pop_back();
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->http, providers::HttpClient::Create());
  providers::ProviderSettings settings;
  settings.name = "eval-gateway";
  settings.kind = v1::Provider::OPENAI_COMPATIBLE;
  settings.base_url = options.base_url;
  settings.api_key = options.api_key;
  settings.total_timeout = absl::Seconds(options.timeout_seconds);
  settings.first_byte_timeout = absl::Seconds(options.timeout_seconds);
  ASSIGN_OR_RETURN(impl->provider, providers::NewProvider(std::move(settings), *impl->http));
  impl->options = std::move(options);
  return std::shared_ptr<GatewayClient>(new GatewayClient(std::move(impl)));
}

Method GatewayClient::AsMethod() {
  Impl* impl = impl_.get();
  return [impl](const Item& item, double rate) -> absl::StatusOr<CompressedPrompt> {
    providers::Request request;
    request.body = json::WireJson(
        Json{{"model", impl->options.model}, {"messages", ItemMessages(item)}, {"temperature", 0}});
    if (impl->options.compress) {
      request.headers.emplace_back("x-terse-rate", absl::StrFormat("%.6g", rate));
    } else {
      request.headers.emplace_back("x-terse-compress", "off");
    }
    request.deadline = absl::Now() + absl::Seconds(impl->options.timeout_seconds);
    auto sink = std::make_shared<WaitingSink>();
    std::future<absl::StatusOr<Json>> answer = sink->Future();
    std::unique_ptr<providers::Call> call = impl->provider->Send(request, sink);
    ASSIGN_OR_RETURN(Json body, answer.get());
    std::optional<std::string> content;
    if (body.is_object() && body.contains("choices") && body["choices"].is_array() &&
        !body["choices"].empty() && body["choices"][0].is_object()) {
      const Json message = body["choices"][0].value("message", Json());
      if (message.is_object() && message.contains("content") && message["content"].is_string()) {
        content = message["content"].get<std::string>();
      }
    }
    if (!content.has_value()) {
      return absl::DataLossError(absl::StrCat("the gateway's answer has no message content: ",
                                              body.dump().substr(0, 200)));
    }
    CompressedPrompt out;
    if (impl->options.llm_answers) {
      out.reply = *std::move(content);
      const Json usage = body.value("usage", Json());
      if (usage.is_object() && usage.value("prompt_tokens", Json()).is_number_unsigned()) {
        out.billed_prompt_tokens = usage["prompt_tokens"].get<size_t>();
      }
    } else {
      out.prompt = *std::move(content);
    }
    return out;
  };
}

}  // namespace terse::eval
