// The shared exchange handler. All of it runs on the HTTP engine's loop thread, so it keeps its
// state without locks.
#include "providers/exchange.h"

#include <string.h>  // memmem

#include <optional>
#include <utility>

#include "absl/time/clock.h"
#include "base/errors.h"
#include "json/codec.h"
#include "json/scan.h"
#include "providers/upstream_errors.h"

namespace terse::providers {
namespace {

// Bounds what is buffered for a non-streaming answer or an error body.
constexpr size_t kMaxBufferedBody = 64 << 20;
// A short answer's whole stream comes in one read: a role chunk, some content, the finish, usage.
constexpr size_t kUsualEventsPerRead = 8;

class ExchangeHandler : public HttpHandler {
 public:
  ExchangeHandler(bool stream, ResponseTranslator translate_response,
                  std::unique_ptr<StreamTranslator> translate_stream,
                  std::shared_ptr<ResponseSink> sink)
      : stream_(stream),
        translate_response_(std::move(translate_response)),
        translate_stream_(std::move(translate_stream)),
        sink_(std::move(sink)) {
    if (stream_) {
      // Room for a usual read's events at once, rather than growing by doubling for each answer.
      events_.reserve(kUsualEventsPerRead);
      chunks_.reserve(kUsualEventsPerRead);
    }
  }

  void OnHead(const HttpResponseHead& head) override {
    status_ = head.status;
    bool ok_status = head.status >= 200 && head.status < 300;
    sse_ = ok_status && stream_ &&
           head.Header("content-type").find("text/event-stream") != std::string_view::npos;
    // Read now: an HTTP-date counts from when the answer came, not from when its body ended.
    if (!ok_status) {
      retry_after_ =
          ParseRetryAfter(head.Header("retry-after-ms"), head.Header("retry-after"), absl::Now());
    }
  }

  bool OnBody(std::string_view bytes) override {
    if (finished_) return false;
    // Upstream JSON of an unexpected shape must end the call, not escape as an exception.
    try {
      return ConsumeBody(bytes);
    } catch (const std::exception& e) {
      End(UpstreamFailed(std::string("could not translate the upstream answer: ") + e.what()));
      return false;
    }
  }

  void OnComplete(absl::Status status) override {
    if (finished_) return;
    try {
      Complete(std::move(status));
    } catch (const std::exception& e) {
      End(UpstreamFailed(std::string("could not translate the upstream answer: ") + e.what()));
    }
  }

 private:
  bool ConsumeBody(std::string_view bytes) {
    if (!sse_) {
      if (buffer_.size() + bytes.size() > kMaxBufferedBody) {
        End(WithRecovery(UpstreamFailed("the upstream answer is larger than 64 MiB"),
                         Recovery::kNone));
        return false;
      }
      buffer_.append(bytes);
      return true;
    }
    events_.clear();
    if (absl::Status s = parser_.Feed(bytes, events_); !s.ok()) {
      End(UpstreamFailed(std::string(s.message())));
      return false;
    }
    if (absl::Status s = Translate(events_); !s.ok()) {
      End(std::move(s));
      return false;
    }
    PassChunks();
    return true;
  }

  // Where the translator's chunks go: chunks_, until PassChunks hands them over.
  auto Collect() {
    return [this](json::WireJson chunk) { chunks_.push_back(std::move(chunk)); };
  }
  // Translates `events` into chunks_, in order, up to the first error.
  absl::Status Translate(std::vector<SseEvent>& events) {
    for (SseEvent& event : events) {
      if (absl::Status s = translate_stream_->OnEvent(std::move(event), Collect()); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  void Complete(absl::Status status) {
    if (!status.ok()) return End(std::move(status));
    if (status_ < 200 || status_ >= 300) {
      absl::Status error = UpstreamErrorFromBody(status_, buffer_);
      if (retry_after_ && RecoveryOf(error) == Recovery::kRetry) {
        error = WithRetryAfter(std::move(error), *retry_after_);
      }
      return End(std::move(error));
    }
    if (!stream_ && !translate_response_) {
      // Already OpenAI's shape: checked, not parsed; the client gets the upstream's bytes.
      std::optional<json::WireJson> body = json::WireJson::FromUncheckedText(std::move(buffer_));
      if (!body.has_value()) return End(InvalidJson());
      sink_->OnResponse(*std::move(body));
      return End(absl::OkStatus());
    }
    if (sse_) {
      std::vector<SseEvent> last = parser_.Finish();
      if (absl::Status s = Translate(last); !s.ok()) return End(std::move(s));
      return End(WithRecovery(translate_stream_->OnEnd(Collect()), Recovery::kRetry));
    }
    std::optional<Json> parsed = json::ParseJson(buffer_);
    if (!parsed.has_value()) return End(InvalidJson());
    Json& body = *parsed;
    if (stream_) {
      // A 2xx that is not an event stream: an error object, or a server that ignored `stream`.
      if (body.is_object() && body.contains("error")) {
        return End(UpstreamErrorFromBody(500, buffer_));
      }
      return End(WithRecovery(UpstreamFailed("the upstream did not answer with an event stream"),
                              Recovery::kFallBack));
    }
    absl::StatusOr<Json> translated = translate_response_(std::move(body));
    if (!translated.ok()) return End(translated.status());
    sink_->OnResponse(json::WireJson(*std::move(translated)));
    End(absl::OkStatus());
  }

  static absl::Status InvalidJson() {
    return WithRecovery(UpstreamFailed("the upstream answered with invalid JSON"),
                        Recovery::kRetry);
  }

  // Hands the sink the chunks translated since the last time, in one call.
  void PassChunks() {
    if (chunks_.empty()) return;
    if (!finished_) sink_->OnChunks(chunks_);
    chunks_.clear();
  }
  // The chunks before an end still reach the sink, ahead of it.
  void End(absl::Status status) {
    if (finished_) return;
    PassChunks();
    finished_ = true;
    sink_->OnDone(std::move(status));
  }

  const bool stream_;
  ResponseTranslator translate_response_;
  std::unique_ptr<StreamTranslator> translate_stream_;
  std::shared_ptr<ResponseSink> sink_;

  int status_ = 0;
  std::optional<absl::Duration> retry_after_;  // what a non-2xx answer's head asked for
  bool sse_ = false;
  bool finished_ = false;
  std::string buffer_;
  SseParser parser_;
  std::vector<SseEvent> events_;        // those of the latest read; kept for its capacity
  std::vector<json::WireJson> chunks_;  // translated, not yet passed on (see PassChunks)
};

class HttpProviderCall : public Call {
 public:
  explicit HttpProviderCall(std::unique_ptr<HttpCall> call) : call_(std::move(call)) {}
  void Cancel() override { call_->Cancel(); }

 private:
  std::unique_ptr<HttpCall> call_;
};

class NoopCall : public Call {
 public:
  void Cancel() override {}
};

// False when `choices` (valid JSON text) surely holds no finish_reason but null: every key spelled
// "finish_reason" is followed by null, and no escape could spell it otherwise. Most chunks say
// "finish_reason":null, and this spares them a walk through their choices.
bool MayHoldAFinishReason(std::string_view choices) {
  if (choices.find('\\') != std::string_view::npos) return true;
  constexpr std::string_view kKey = "\"finish_reason\"";
  // memmem, not string_view::find: find stops at every quote (the key's first byte) to compare
  // the rest, a dozen calls for a usual chunk; memmem looks for the whole key in one pass.
  for (size_t at = 0;;) {
    const void* found = memmem(choices.data() + at, choices.size() - at, kKey.data(), kKey.size());
    if (found == nullptr) return false;
    at = static_cast<size_t>(static_cast<const char*>(found) - choices.data()) + kKey.size();
    size_t p = choices.find_first_not_of(" \t\r\n", at);
    if (p == std::string_view::npos || choices[p] != ':') continue;  // a value, not a key
    p = choices.find_first_not_of(" \t\r\n", p + 1);
    if (p == std::string_view::npos || choices.compare(p, 4, "null") != 0) return true;
  }
}

class OpenAiStreamTranslator : public StreamTranslator {
 public:
  absl::Status OnEvent(SseEvent event, absl::FunctionRef<void(json::WireJson)> emit) override {
    if (done_) return absl::OkStatus();
    if (event.data == "[DONE]") {
      done_ = true;
      return absl::OkStatus();
    }
    // Checked once, its top-level members noted on the way; what terse must know of the chunk
    // (that it is an object, whether it holds `error`, a finish_reason) is read off those.
    std::optional<json::WireJson> chunk = json::WireJson::FromUncheckedText(std::move(event.data));
    if (!chunk.has_value()) return InvalidEvent();
    const std::string& text = chunk->text();
    std::optional<std::string_view> error, choices;
    // Data lines joined with '\n' (the relayed event must be one line), a byte order mark, an
    // escaped key: rare enough to take the parser's way.
    if (event.joined || static_cast<unsigned char>(text[0]) == 0xEF ||
        !chunk->FindMemberText("error", &error) || !chunk->FindMemberText("choices", &choices)) {
      return OnParsedEvent(text, emit);
    }
    // Valid JSON, so a value follows the whitespace: it must be an object.
    if (text[text.find_first_not_of(" \t\r")] != '{') return InvalidEvent();
    if (error.has_value()) return UpstreamErrorFromBody(500, text);
    if (choices.has_value() && MayHoldAFinishReason(*choices)) {
      bool finished = false;
      bool escaped_key = false;
      json::ForEachElement(*choices, [&](std::string_view choice) {
        json::ForEachMember(choice, [&](std::string_view key, std::string_view value) {
          if (key.find('\\') != std::string_view::npos) escaped_key = true;
          if (key == "finish_reason" && value != "null") finished = true;
        });
      });
      if (escaped_key) return OnParsedEvent(text, emit);
      if (finished) saw_finish_ = true;
    }
    emit(*std::move(chunk));
    return absl::OkStatus();
  }

  absl::Status OnEnd(absl::FunctionRef<void(json::WireJson)>) override {
    // Some OpenAI-compatible servers omit [DONE]; a finish_reason is then the proper end.
    if (done_ || saw_finish_) return absl::OkStatus();
    return UpstreamFailed("the upstream stream ended before it was complete");
  }

 private:
  static absl::Status InvalidEvent() {
    return UpstreamFailed("the upstream sent an invalid stream event");
  }

  // The same checks on the parsed chunk, which goes on re-encoded.
  absl::Status OnParsedEvent(const std::string& data,
                             absl::FunctionRef<void(json::WireJson)> emit) {
    std::optional<Json> parsed = json::ParseJson(data);
    if (!parsed.has_value() || !parsed->is_object()) return InvalidEvent();
    Json& chunk = *parsed;
    if (chunk.contains("error")) return UpstreamErrorFromBody(500, data);
    if (chunk.contains("choices") && chunk["choices"].is_array()) {
      for (const Json& choice : chunk["choices"]) {
        if (choice.is_object() && choice.contains("finish_reason") &&
            !choice["finish_reason"].is_null()) {
          saw_finish_ = true;
        }
      }
    }
    emit(json::WireJson(std::move(chunk)));
    return absl::OkStatus();
  }

  bool done_ = false;
  bool saw_finish_ = false;
};

}  // namespace

std::string StringField(const Json& object, const char* key, std::string fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

int IntField(const Json& object, const char* key, int fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return fallback;
  return it->get<int>();
}

std::unique_ptr<Call> StartExchange(HttpClient& client, HttpRequest request, bool stream,
                                    ResponseTranslator translate_response,
                                    std::unique_ptr<StreamTranslator> translate_stream,
                                    std::shared_ptr<ResponseSink> sink) {
  if (stream && !translate_stream) translate_stream = NewOpenAiStreamTranslator();
  auto handler = std::make_shared<ExchangeHandler>(stream, std::move(translate_response),
                                                   std::move(translate_stream), std::move(sink));
  return std::make_unique<HttpProviderCall>(client.Start(std::move(request), std::move(handler)));
}

std::unique_ptr<Call> FailedCall(HttpClient& client, absl::Status status,
                                 std::shared_ptr<ResponseSink> sink) {
  client.Schedule(absl::ZeroDuration(), [sink = std::move(sink), status = std::move(status)](
                                            bool) mutable { sink->OnDone(std::move(status)); });
  return std::make_unique<NoopCall>();
}

std::unique_ptr<StreamTranslator> NewOpenAiStreamTranslator() {
  return std::make_unique<OpenAiStreamTranslator>();
}

}  // namespace terse::providers
