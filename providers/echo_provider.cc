// The local echo provider: no network; it answers with the text of the prompt it received, so a
// newcomer sees what terse would send upstream. Streaming runs word by word on the HTTP engine's
// loop thread (timers), like a real upstream stream, with a usage that counts whitespace words.
#include <atomic>
#include <cctype>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "base/errors.h"
#include "providers/adapters.h"
#include "providers/exchange.h"

namespace terse::providers {
namespace {

std::string ContentText(const Json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string text;
  if (content.is_array()) {
    for (const Json& part : content) {
      if (StringField(part, "type") != "text") continue;
      if (!text.empty()) text += "\n";
      text += StringField(part, "text");
    }
  }
  return text;
}

// The text of every message, in order, one message per paragraph.
std::string PromptOfChat(const Json& body) {
  std::string text;
  if (!body.is_object() || !body.contains("messages") || !body["messages"].is_array()) return text;
  for (const Json& message : body["messages"]) {
    if (!message.is_object() || !message.contains("content")) continue;
    std::string part = ContentText(message["content"]);
    if (part.empty()) continue;
    if (!text.empty()) text += "\n\n";
    text += part;
  }
  return text;
}

std::string PromptOfCompletion(const Json& body) {
  if (!body.is_object() || !body.contains("prompt")) return "";
  const Json& prompt = body["prompt"];
  if (prompt.is_string()) return prompt.get<std::string>();
  std::string text;
  if (prompt.is_array()) {
    for (const Json& p : prompt) {
      if (!p.is_string()) continue;
      if (!text.empty()) text += "\n\n";
      text += p.get<std::string>();
    }
  }
  return text;
}

// Words with the whitespace before the next word: the pieces concatenate back to the text.
std::vector<std::string> SplitWords(const std::string& text) {
  std::vector<std::string> pieces;
  size_t start = 0;
  auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  for (size_t i = 1; i <= text.size(); ++i) {
    if (i == text.size() || (space(text[i - 1]) && !space(text[i]))) {
      pieces.push_back(text.substr(start, i - start));
      start = i;
    }
  }
  return pieces;
}

Json Usage(int prompt, int completion) {
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion}};
}

// A deterministic unit-free vector per input, so embeddings through echo are repeatable.
Json PseudoEmbedding(const std::string& text) {
  Json v = Json::array();
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 8; ++i) {
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    h ^= static_cast<uint64_t>(i);
    v.push_back(static_cast<double>(h % 2001) / 1000.0 - 1.0);
  }
  return v;
}

std::atomic<uint64_t> next_echo_id{1};

// One echo call. Touched only on the loop thread (Cancel posts there), so it needs no lock.
class EchoCall : public std::enable_shared_from_this<EchoCall> {
 public:
  EchoCall(HttpClient& client, absl::Duration delay, Request request,
           std::shared_ptr<ResponseSink> sink)
      : client_(client), delay_(delay), request_(std::move(request)), sink_(std::move(sink)) {}

  void Start() {
    Json& body = request_.body.mutable_json();
    model_ = StringField(body, "model", "echo");
    n_ = std::max(1, IntField(body, "n", 1));
    include_usage_ = AsksForUsage(body);
    id_ = std::to_string(next_echo_id.fetch_add(1));
    switch (request_.endpoint) {
      case Endpoint::kChatCompletions:
        text_ = PromptOfChat(body);
        prompt_tokens_ = ApproxTokens(text_);
        break;
      case Endpoint::kCompletions:
        text_ = PromptOfCompletion(body);
        prompt_tokens_ = ApproxTokens(text_);
        break;
      case Endpoint::kEmbeddings:
        break;
    }
    completion_tokens_ = ApproxTokens(text_);
    pieces_ = SplitWords(text_);
    Next(absl::ZeroDuration(), [self = shared_from_this()] { self->Begin(); });
  }

  void Cancel() {
    client_.Schedule(absl::ZeroDuration(), [self = shared_from_this()](bool) {
      self->Finish(absl::CancelledError("upstream call cancelled"));
    });
  }

 private:
  // Runs `step` on the loop thread after `delay`, unless the call ended meanwhile; a shutdown
  // ends it with kCancelled.
  void Next(absl::Duration delay, std::function<void()> step) {
    client_.Schedule(delay, [self = shared_from_this(), step = std::move(step)](bool stopping) {
      if (self->done_) return;
      if (stopping) return self->Finish(absl::CancelledError("HTTP client shut down"));
      step();
    });
  }

  void Finish(absl::Status status) {
    if (done_) return;
    done_ = true;
    sink_->OnDone(std::move(status));
  }

  bool chat() const { return request_.endpoint == Endpoint::kChatCompletions; }

  void Begin() {
    if (request_.endpoint == Endpoint::kEmbeddings) return AnswerEmbeddings();
    if (!request_.stream) return AnswerWhole();
    if (chat()) {
      std::vector<json::WireJson> chunks;
      for (int i = 0; i < n_; ++i) {
        chunks.emplace_back(Chunk(i, {{"role", "assistant"}, {"content", ""}}, nullptr));
      }
      sink_->OnChunks(chunks);
    }
    StreamPiece(0);
  }

  void StreamPiece(size_t index) {
    if (index >= pieces_.size()) return EndStream();
    std::vector<json::WireJson> chunks;
    for (int i = 0; i < n_; ++i) {
      chunks.emplace_back(Chunk(i, {{"content", pieces_[index]}}, nullptr));
    }
    sink_->OnChunks(chunks);
    Next(index + 1 < pieces_.size() ? delay_ : absl::ZeroDuration(),
         [this, index] { StreamPiece(index + 1); });
  }

  void EndStream() {
    std::vector<json::WireJson> chunks;
    for (int i = 0; i < n_; ++i) chunks.emplace_back(Chunk(i, Json::object(), "stop"));
    if (include_usage_) {
      Json usage_chunk = Base(chat() ? "chat.completion.chunk" : "text_completion");
      usage_chunk["choices"] = Json::array();
      usage_chunk["usage"] = Usage(prompt_tokens_, completion_tokens_ * n_);
      chunks.emplace_back(std::move(usage_chunk));
    }
    sink_->OnChunks(chunks);
    Finish(absl::OkStatus());
  }

  void AnswerWhole() {
    Json body = Base(chat() ? "chat.completion" : "text_completion");
    Json choices = Json::array();
    for (int i = 0; i < n_; ++i) {
      if (chat()) {
        choices.push_back({{"index", i},
                           {"message", {{"role", "assistant"}, {"content", text_}}},
                           {"logprobs", nullptr},
                           {"finish_reason", "stop"}});
      } else {
        choices.push_back(
            {{"text", text_}, {"index", i}, {"logprobs", nullptr}, {"finish_reason", "stop"}});
      }
    }
    body["choices"] = std::move(choices);
    body["usage"] = Usage(prompt_tokens_, completion_tokens_ * n_);
    sink_->OnResponse(json::WireJson(std::move(body)));
    Finish(absl::OkStatus());
  }

  void AnswerEmbeddings() {
    std::vector<std::string> inputs;
    const Json& body = request_.body.json();
    if (body.is_object() && body.contains("input")) {
      const Json& input = body["input"];
      if (input.is_string()) inputs.push_back(input.get<std::string>());
      if (input.is_array()) {
        for (const Json& item : input) {
          inputs.push_back(item.is_string() ? item.get<std::string>() : item.dump());
        }
      }
    }
    Json data = Json::array();
    int tokens = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      tokens += ApproxTokens(inputs[i]);
      data.push_back(
          {{"object", "embedding"}, {"index", i}, {"embedding", PseudoEmbedding(inputs[i])}});
    }
    sink_->OnResponse(
        json::WireJson(Json{{"object", "list"},
                            {"data", std::move(data)},
                            {"model", model_},
                            {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}}));
    Finish(absl::OkStatus());
  }

  Json Base(const char* object) const {
    return {{"id", (chat() ? "chatcmpl-echo-" : "cmpl-echo-") + id_},
            {"object", object},
            {"created", created_},
            {"model", model_}};
  }

  Json Chunk(int index, Json delta, Json finish_reason) const {
    Json chunk = Base(chat() ? "chat.completion.chunk" : "text_completion");
    if (chat()) {
      chunk["choices"] = Json::array({{{"index", index},
                                       {"delta", std::move(delta)},
                                       {"logprobs", nullptr},
                                       {"finish_reason", std::move(finish_reason)}}});
    } else {
      std::string text =
          delta.is_object() && delta.contains("content") ? delta["content"].get<std::string>() : "";
      chunk["choices"] = Json::array({{{"text", text},
                                       {"index", index},
                                       {"logprobs", nullptr},
                                       {"finish_reason", std::move(finish_reason)}}});
    }
    return chunk;
  }

  HttpClient& client_;
  const absl::Duration delay_;
  Request request_;
  std::shared_ptr<ResponseSink> sink_;
  const int64_t created_ = absl::ToUnixSeconds(absl::Now());

  std::string id_;
  std::string model_;
  int n_ = 1;
  bool include_usage_ = false;
  std::string text_;
  std::vector<std::string> pieces_;
  int prompt_tokens_ = 0;
  int completion_tokens_ = 0;
  bool done_ = false;
};

class EchoHandle : public Call {
 public:
  explicit EchoHandle(std::shared_ptr<EchoCall> call) : call_(std::move(call)) {}
  void Cancel() override { call_->Cancel(); }

 private:
  std::shared_ptr<EchoCall> call_;
};

class EchoProvider : public Provider {
 public:
  EchoProvider(ProviderSettings settings, HttpClient& client)
      : settings_(std::move(settings)), client_(client) {}

  const std::string& name() const override { return settings_.name; }

  std::unique_ptr<Call> Send(const Request& request, std::shared_ptr<ResponseSink> sink) override {
    auto call = std::make_shared<EchoCall>(client_, settings_.echo_delay, request, std::move(sink));
    call->Start();
    return std::make_unique<EchoHandle>(std::move(call));
  }

 private:
  const ProviderSettings settings_;
  HttpClient& client_;
};

}  // namespace

std::unique_ptr<Provider> NewEchoProvider(ProviderSettings settings, HttpClient& client) {
  return std::make_unique<EchoProvider>(std::move(settings), client);
}

}  // namespace terse::providers
