// What every HTTP-speaking adapter shares: one upstream exchange turned into ResponseSink calls.
// The adapter builds the HTTP request and says how to translate the upstream's answer (whole
// JSON, or SSE events) into OpenAI's shape; this part handles statuses, error bodies, streaming
// and the end of the call.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/json.h"
#include "providers/http_client.h"
#include "providers/provider.h"
#include "providers/sse.h"

namespace terse::providers {

// Fields of untrusted JSON: the value when `object` is an object holding `key` with the right
// type, else the fallback (nlohmann's value() throws on a type mismatch).
std::string StringField(const Json& object, const char* key, std::string fallback = "");
int IntField(const Json& object, const char* key, int fallback = 0);

// Turns one upstream SSE stream into OpenAI chunks. Runs on the loop thread.
class StreamTranslator {
 public:
  virtual ~StreamTranslator() = default;
  // Translates one event; `emit` takes each resulting chunk. An error ends the call with it.
  virtual absl::Status OnEvent(SseEvent event, absl::FunctionRef<void(json::WireJson)> emit) = 0;
  // At the end of the body: OK when the stream ended properly, else why not.
  virtual absl::Status OnEnd(absl::FunctionRef<void(json::WireJson)> emit) = 0;
};

// The upstream's whole JSON answer in OpenAI's shape.
using ResponseTranslator = std::function<absl::StatusOr<Json>(Json upstream)>;

// Starts `request` on `client` and reports to `sink`: OnResponse (non-streaming; the body through
// `translate_response`, or as received with its text when there is none) or OnChunks with the
// chunks each body read's events translate to, then exactly one OnDone. Non-2xx answers become
// UpstreamErrorFromBody errors; a retryable one carries the delay of the upstream's
// retry-after(-ms) header (RetryAfterOf).
std::unique_ptr<Call> StartExchange(HttpClient& client, HttpRequest request, bool stream,
                                    ResponseTranslator translate_response,
                                    std::unique_ptr<StreamTranslator> translate_stream,
                                    std::shared_ptr<ResponseSink> sink);

// A call that fails with `status` without touching the network (bad request for this provider,
// missing key): OnDone(status) follows on the loop thread, never inside Send.
std::unique_ptr<Call> FailedCall(HttpClient& client, absl::Status status,
                                 std::shared_ptr<ResponseSink> sink);

// The OpenAI stream: `data: {chunk}` events ending with `data: [DONE]`; an `error` object in the
// stream ends the call with that error. Chunks are relayed as their text, checked but not parsed
// (a chunk whose data spans several lines is parsed and re-encoded onto one).
std::unique_ptr<StreamTranslator> NewOpenAiStreamTranslator();

}  // namespace terse::providers
