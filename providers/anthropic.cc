// The Anthropic adapter: OpenAI's shape in, the Messages API on the wire, OpenAI's shape out.
#include "providers/anthropic.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "base/errors.h"
#include "json/codec.h"
#include "providers/adapters.h"
#include "providers/upstream_errors.h"

namespace terse::providers {
namespace {

std::string Param(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

// The text of a system/developer message: a string or text parts.
absl::StatusOr<std::string> PlainText(const Json& content, const std::string& param) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return std::string();
  if (!content.is_array()) return InvalidRequest("content must be a string or an array", param);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    if (!part.is_object() || StringField(part, "type", "") != "text" || !part.contains("text") ||
        !part["text"].is_string()) {
      return InvalidRequest("only text parts are allowed here", Param(param, i));
    }
    if (!text.empty()) text += "\n";
    text += part["text"].get<std::string>();
  }
  return text;
}

// An OpenAI image_url part as an Anthropic image block (base64 data URL or plain URL).
Json ImageBlock(const std::string& url) {
  constexpr std::string_view kData = "data:";
  if (url.rfind(kData, 0) == 0) {
    size_t semi = url.find(';');
    size_t comma = url.find(',');
    if (semi != std::string::npos && comma != std::string::npos && semi < comma) {
      return {{"type", "image"},
              {"source",
               {{"type", "base64"},
                {"media_type", url.substr(kData.size(), semi - kData.size())},
                {"data", url.substr(comma + 1)}}}};
    }
  }
  return {{"type", "image"}, {"source", {{"type", "url"}, {"url", url}}}};
}

// User or assistant content as Anthropic content blocks.
absl::StatusOr<Json> ContentBlocks(const Json& content, const std::string& param) {
  Json blocks = Json::array();
  if (content.is_null()) return blocks;
  if (content.is_string()) {
    if (!content.get<std::string>().empty()) {
      blocks.push_back({{"type", "text"}, {"text", content}});
    }
    return blocks;
  }
  if (!content.is_array()) return InvalidRequest("content must be a string or an array", param);
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    std::string type = part.is_object() ? StringField(part, "type", "") : "";
    if (type == "text" && part.contains("text") && part["text"].is_string()) {
      blocks.push_back({{"type", "text"}, {"text", part["text"]}});
    } else if (type == "image_url" && part.contains("image_url")) {
      const Json& image = part["image_url"];
      std::string url = image.is_string()   ? image.get<std::string>()
                        : image.is_object() ? StringField(image, "url", "")
                                            : "";
      if (url.empty()) return InvalidRequest("image_url has no url", Param(param, i));
      blocks.push_back(ImageBlock(url));
    } else {
      return InvalidRequest("content part of type \"" + type + "\" cannot be sent to Anthropic",
                            Param(param, i));
    }
  }
  return blocks;
}

// Appends a message, merging it into the previous one when the roles are the same (the Messages
// API wants user and assistant turns to alternate).
void AppendMessage(Json& messages, const std::string& role, Json blocks) {
  if (!messages.empty() && messages.back()["role"] == role) {
    for (Json& block : blocks) messages.back()["content"].push_back(std::move(block));
    return;
  }
  messages.push_back({{"role", role}, {"content", std::move(blocks)}});
}

absl::StatusOr<Json> TranslateTools(const Json& tools) {
  Json out = Json::array();
  if (!tools.is_array()) return InvalidRequest("tools must be an array", "tools");
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& tool = tools[i];
    if (!tool.is_object() || StringField(tool, "type", "function") != "function" ||
        !tool.contains("function") || !tool["function"].is_object()) {
      return InvalidRequest("only function tools can be sent to Anthropic", Param("tools", i));
    }
    const Json& f = tool["function"];
    Json t = {{"name", StringField(f, "name", "")}};
    if (f.contains("description")) t["description"] = f["description"];
    t["input_schema"] = f.contains("parameters")
                            ? f["parameters"]
                            : Json{{"type", "object"}, {"properties", Json::object()}};
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<Json> TranslateToolChoice(const Json& choice) {
  if (choice.is_string()) {
    std::string c = choice.get<std::string>();
    if (c == "auto") return Json{{"type", "auto"}};
    if (c == "required") return Json{{"type", "any"}};
    if (c == "none") return Json{{"type", "none"}};
  } else if (choice.is_object() && choice.contains("function") && choice["function"].is_object()) {
    return Json{{"type", "tool"}, {"name", StringField(choice["function"], "name", "")}};
  }
  return InvalidRequest("unsupported tool_choice", "tool_choice");
}

std::string FinishReason(const Json& stop_reason) {
  if (!stop_reason.is_string()) return "stop";
  std::string r = stop_reason.get<std::string>();
  if (r == "max_tokens") return "length";
  if (r == "tool_use") return "tool_calls";
  if (r == "refusal") return "content_filter";
  return "stop";  // end_turn, stop_sequence, pause_turn
}

Json OpenAiUsage(int input, int cache_creation, int cache_read, int output) {
  int prompt = input + cache_creation + cache_read;
  Json usage = {
      {"prompt_tokens", prompt}, {"completion_tokens", output}, {"total_tokens", prompt + output}};
  usage["prompt_tokens_details"] = {{"cached_tokens", cache_read}};
  return usage;
}

int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

class AnthropicStreamTranslator : public StreamTranslator {
 public:
  absl::Status OnEvent(SseEvent event,
                       absl::FunctionRef<void(json::WireJson)> emit_chunk) override {
    if (done_) return absl::OkStatus();
    auto emit = [&](Json chunk) { emit_chunk(json::WireJson(std::move(chunk))); };
    std::optional<Json> parsed = json::ParseJson(event.data);
    if (!parsed.has_value() || !parsed->is_object()) {
      return UpstreamFailed("Anthropic sent an invalid stream event");
    }
    Json& data = *parsed;
    std::string type = StringField(data, "type", event.event);
    if (type == "message_start") {
      const Json& message = data.contains("message") ? data["message"] : Json::object();
      id_ = StringField(message, "id", "");
      model_ = StringField(message, "model", "");
      ReadUsage(message.contains("usage") ? message["usage"] : Json::object());
      emit(Chunk(Json::array({{{"index", 0},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}})));
    } else if (type == "content_block_start") {
      const Json& block = data.contains("content_block") ? data["content_block"] : Json::object();
      int index = IntField(data, "index");
      std::string block_type = StringField(block, "type", "");
      if (block_type == "tool_use") {
        int tool_index = next_tool_index_++;
        tool_index_of_block_.emplace_back(index, tool_index);
        emit(Delta(
            {{"tool_calls",
              Json::array({{{"index", tool_index},
                            {"id", StringField(block, "id", "")},
                            {"type", "function"},
                            {"function",
                             {{"name", StringField(block, "name", "")}, {"arguments", ""}}}}})}}));
      } else if (block_type == "text" && block.contains("text") && block["text"].is_string() &&
                 !block["text"].get<std::string>().empty()) {
        emit(Delta({{"content", block["text"]}}));
      }
    } else if (type == "content_block_delta") {
      const Json& delta = data.contains("delta") ? data["delta"] : Json::object();
      std::string delta_type = StringField(delta, "type", "");
      if (delta_type == "text_delta") {
        emit(Delta({{"content", StringField(delta, "text", "")}}));
      } else if (delta_type == "input_json_delta") {
        int index = IntField(data, "index");
        for (const auto& [block, tool] : tool_index_of_block_) {
          if (block != index) continue;
          emit(Delta(
              {{"tool_calls",
                Json::array(
                    {{{"index", tool},
                      {"function", {{"arguments", StringField(delta, "partial_json", "")}}}}})}}));
        }
      }
      // thinking and signature deltas have no OpenAI counterpart.
    } else if (type == "message_delta") {
      if (data.contains("usage")) ReadUsage(data["usage"]);
      const Json& delta = data.contains("delta") ? data["delta"] : Json::object();
      if (delta.contains("stop_reason") && !delta["stop_reason"].is_null()) {
        emit(Chunk(Json::array({{{"index", 0},
                                 {"delta", Json::object()},
                                 {"logprobs", nullptr},
                                 {"finish_reason", FinishReason(delta["stop_reason"])}}})));
      }
    } else if (type == "message_stop") {
      Json usage_chunk = Chunk(Json::array());
      usage_chunk["usage"] = OpenAiUsage(input_, cache_creation_, cache_read_, output_);
      emit(std::move(usage_chunk));
      done_ = true;
    } else if (type == "error") {
      std::string error_type = data.contains("error") && data["error"].is_object()
                                   ? StringField(data["error"], "type", "")
                                   : "";
      int status = error_type == "overloaded_error"        ? 529
                   : error_type == "rate_limit_error"      ? 429
                   : error_type == "invalid_request_error" ? 400
                                                           : 500;
      return UpstreamErrorFromBody(status, event.data);
    }
    // ping and unknown events: nothing to say.
    return absl::OkStatus();
  }

  absl::Status OnEnd(absl::FunctionRef<void(json::WireJson)>) override {
    if (done_) return absl::OkStatus();
    return UpstreamFailed("the Anthropic stream ended before message_stop");
  }

 private:
  void ReadUsage(const Json& usage) {
    // message_delta usage is cumulative; keep the largest value seen of each count.
    input_ = std::max(input_, IntField(usage, "input_tokens"));
    cache_creation_ = std::max(cache_creation_, IntField(usage, "cache_creation_input_tokens"));
    cache_read_ = std::max(cache_read_, IntField(usage, "cache_read_input_tokens"));
    output_ = std::max(output_, IntField(usage, "output_tokens"));
  }

  Json Chunk(Json choices) const {
    return {{"id", id_},
            {"object", "chat.completion.chunk"},
            {"created", created_},
            {"model", model_},
            {"choices", std::move(choices)}};
  }
  Json Delta(Json delta) const {
    return Chunk(Json::array({{{"index", 0},
                               {"delta", std::move(delta)},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}}));
  }

  const int64_t created_ = NowSeconds();
  std::string id_;
  std::string model_;
  int input_ = 0;
  int cache_creation_ = 0;
  int cache_read_ = 0;
  int output_ = 0;
  int next_tool_index_ = 0;
  std::vector<std::pair<int, int>> tool_index_of_block_;  // content block index -> tool index
  bool done_ = false;
};

class AnthropicProvider : public Provider {
 public:
  AnthropicProvider(ProviderSettings settings, HttpClient& client)
      : settings_(std::move(settings)), client_(client) {}

  const std::string& name() const override { return settings_.name; }

  std::unique_ptr<Call> Send(const Request& request, std::shared_ptr<ResponseSink> sink) override {
    if (request.endpoint != Endpoint::kChatCompletions) {
      return FailedCall(client_,
                        InvalidRequest("provider \"" + settings_.name +
                                       "\" (Anthropic) serves chat completions only"),
                        std::move(sink));
    }
    if (settings_.api_key.empty()) {
      return FailedCall(
          client_,
          WithRecovery(UpstreamFailed("provider \"" + settings_.name + "\" has no API key ($" +
                                      settings_.api_key_env + " is empty)"),
                       Recovery::kFallBack),
          std::move(sink));
    }
    absl::StatusOr<HttpRequest> http = NewHttpRequest(settings_, request);
    if (!http.ok()) return FailedCall(client_, http.status(), std::move(sink));
    absl::StatusOr<Json> body = InvalidRequest("the request cannot be sent to Anthropic");
    try {
      body = ToAnthropicRequest(request.body.json(), request.stream);
    } catch (const std::exception& e) {
      body = InvalidRequest(std::string("the request cannot be sent to Anthropic: ") + e.what());
    }
    if (!body.ok()) return FailedCall(client_, body.status(), std::move(sink));

    http->method = "POST";
    http->url = settings_.base_url + "/messages";
    http->headers.emplace_back("x-api-key", settings_.api_key);
    http->headers.emplace_back("anthropic-version", settings_.api_version);
    http->headers.emplace_back("Content-Type", "application/json");
    http->headers.emplace_back("Accept", request.stream ? "text/event-stream" : "application/json");
    http->body = json::DumpJson(*body);
    return StartExchange(
        client_, *std::move(http), request.stream,
        [](Json message) { return FromAnthropicResponse(message); },
        request.stream ? NewAnthropicStreamTranslator() : nullptr, std::move(sink));
  }

 private:
  const ProviderSettings settings_;
  HttpClient& client_;
};

}  // namespace

absl::StatusOr<Json> ToAnthropicRequest(const Json& openai, bool stream) {
  if (!openai.is_object()) return InvalidRequest("the request body must be a JSON object");
  if (!openai.contains("messages") || !openai["messages"].is_array()) {
    return InvalidRequest("`messages` must be an array", "messages");
  }
  Json out = Json::object();
  out["model"] = StringField(openai, "model", "");

  std::string system;
  Json messages = Json::array();
  const Json& in = openai["messages"];
  for (size_t i = 0; i < in.size(); ++i) {
    const Json& m = in[i];
    std::string param = Param("messages", i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return InvalidRequest("each message needs a role", param);
    }
    std::string role = m["role"].get<std::string>();
    const Json& content = m.contains("content") ? m["content"] : Json(nullptr);
    if (role == "system" || role == "developer") {
      absl::StatusOr<std::string> text = PlainText(content, param + ".content");
      if (!text.ok()) return text.status();
      if (!system.empty() && !text->empty()) system += "\n\n";
      system += *text;
    } else if (role == "user") {
      absl::StatusOr<Json> blocks = ContentBlocks(content, param + ".content");
      if (!blocks.ok()) return blocks.status();
      AppendMessage(messages, "user", *std::move(blocks));
    } else if (role == "assistant") {
      absl::StatusOr<Json> blocks = ContentBlocks(content, param + ".content");
      if (!blocks.ok()) return blocks.status();
      if (m.contains("tool_calls") && m["tool_calls"].is_array()) {
        for (const Json& call : m["tool_calls"]) {
          const Json& f = call.contains("function") ? call["function"] : Json::object();
          std::string arguments = StringField(f, "arguments", "");
          std::optional<Json> input =
              arguments.empty() ? std::optional<Json>(Json::object()) : json::ParseJson(arguments);
          if (!input.has_value()) {
            return InvalidRequest("tool call arguments are not JSON", param + ".tool_calls");
          }
          blocks->push_back({{"type", "tool_use"},
                             {"id", StringField(call, "id", "")},
                             {"name", StringField(f, "name", "")},
                             {"input", *std::move(input)}});
        }
      }
      AppendMessage(messages, "assistant", *std::move(blocks));
    } else if (role == "tool") {
      absl::StatusOr<std::string> text = PlainText(content, param + ".content");
      if (!text.ok()) return text.status();
      AppendMessage(messages, "user",
                    Json::array({{{"type", "tool_result"},
                                  {"tool_use_id", StringField(m, "tool_call_id", "")},
                                  {"content", *text}}}));
    } else {
      return InvalidRequest("role \"" + role + "\" cannot be sent to Anthropic", param + ".role");
    }
  }
  if (!system.empty()) out["system"] = system;
  out["messages"] = std::move(messages);

  if (openai.contains("max_completion_tokens") && openai["max_completion_tokens"].is_number()) {
    out["max_tokens"] = openai["max_completion_tokens"];
  } else if (openai.contains("max_tokens") && openai["max_tokens"].is_number()) {
    out["max_tokens"] = openai["max_tokens"];
  } else {
    out["max_tokens"] = kAnthropicDefaultMaxTokens;
  }
  if (openai.contains("temperature") && openai["temperature"].is_number()) {
    // OpenAI allows up to 2, Anthropic up to 1.
    out["temperature"] = std::min(openai["temperature"].get<double>(), 1.0);
  }
  if (openai.contains("top_p") && openai["top_p"].is_number()) out["top_p"] = openai["top_p"];
  if (openai.contains("top_k") && openai["top_k"].is_number()) out["top_k"] = openai["top_k"];
  if (openai.contains("stop")) {
    const Json& stop = openai["stop"];
    if (stop.is_string()) out["stop_sequences"] = Json::array({stop});
    if (stop.is_array() && !stop.empty()) out["stop_sequences"] = stop;
  }
  if (openai.contains("user") && openai["user"].is_string()) {
    out["metadata"] = {{"user_id", openai["user"]}};
  }
  if (openai.contains("tools") && !openai["tools"].is_null()) {
    absl::StatusOr<Json> tools = TranslateTools(openai["tools"]);
    if (!tools.ok()) return tools.status();
    if (!tools->empty()) out["tools"] = *std::move(tools);
  }
  if (openai.contains("tool_choice") && !openai["tool_choice"].is_null() && out.contains("tools")) {
    absl::StatusOr<Json> choice = TranslateToolChoice(openai["tool_choice"]);
    if (!choice.ok()) return choice.status();
    if (openai.contains("parallel_tool_calls") && openai["parallel_tool_calls"] == false &&
        (*choice)["type"] != "none") {
      (*choice)["disable_parallel_tool_use"] = true;
    }
    out["tool_choice"] = *std::move(choice);
  }
  if (stream) out["stream"] = true;
  return out;
}

absl::StatusOr<Json> FromAnthropicResponse(const Json& message) {
  if (!message.is_object() || !message.contains("content") || !message["content"].is_array()) {
    return UpstreamFailed("Anthropic answered without message content");
  }
  std::string text;
  bool has_text = false;
  Json tool_calls = Json::array();
  for (const Json& block : message["content"]) {
    std::string type = StringField(block, "type", "");
    if (type == "text") {
      text += StringField(block, "text", "");
      has_text = true;
    } else if (type == "tool_use") {
      tool_calls.push_back(
          {{"id", StringField(block, "id", "")},
           {"type", "function"},
           {"function",
            {{"name", StringField(block, "name", "")},
             {"arguments", block.contains("input") ? block["input"].dump() : "{}"}}}});
    }
  }
  Json reply = {{"role", "assistant"}, {"content", has_text ? Json(text) : Json(nullptr)}};
  if (!tool_calls.empty()) reply["tool_calls"] = std::move(tool_calls);
  const Json& usage = message.contains("usage") ? message["usage"] : Json::object();
  return Json{
      {"id", StringField(message, "id", "")},
      {"object", "chat.completion"},
      {"created", NowSeconds()},
      {"model", StringField(message, "model", "")},
      {"choices", Json::array({{{"index", 0},
                                {"message", std::move(reply)},
                                {"logprobs", nullptr},
                                {"finish_reason", FinishReason(message.contains("stop_reason")
                                                                   ? message["stop_reason"]
                                                                   : Json(nullptr))}}})},
      {"usage",
       OpenAiUsage(IntField(usage, "input_tokens"), IntField(usage, "cache_creation_input_tokens"),
                   IntField(usage, "cache_read_input_tokens"), IntField(usage, "output_tokens"))}};
}

std::unique_ptr<StreamTranslator> NewAnthropicStreamTranslator() {
  return std::make_unique<AnthropicStreamTranslator>();
}

std::unique_ptr<Provider> NewAnthropicProvider(ProviderSettings settings, HttpClient& client) {
  return std::make_unique<AnthropicProvider>(std::move(settings), client);
}

}  // namespace terse::providers
