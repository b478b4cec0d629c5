// The seam between the pipeline and the upstream LLM APIs. Every provider speaks OpenAI's shape
// to terse (requests, responses and stream chunks), whatever its own wire format is.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "json/wire_json.h"

namespace terse::providers {

enum class Endpoint { kChatCompletions, kCompletions, kEmbeddings };

// One upstream call, in OpenAI's request shape.
struct Request {
  Endpoint endpoint = Endpoint::kChatCompletions;
  // The OpenAI JSON body; `model` is what the upstream is asked for. An HTTP client's body keeps
  // the text it came in, with terse's edits spliced in, so that it is relayed as written.
  json::WireJson body;
  bool stream = false;                                       // mirrors body["stream"]
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers for the upstream
  std::string request_id;
  absl::Time deadline = absl::InfiniteFuture();
};

// Whether an OpenAI request body asks for a stream's usage chunk: `stream_options.include_usage`
// is true.
inline bool AsksForUsage(const Json& body) {
  if (!body.is_object()) return false;
  auto options = body.find("stream_options");
  if (options == body.end() || !options->is_object()) return false;
  auto usage = options->find("include_usage");
  return usage != options->end() && usage->is_boolean() && usage->get<bool>();
}

// Makes a request body (an object) ask for it, its other stream options kept: terse books the
// usage of every call, streamed or not.
inline void AskForUsage(json::WireJson& body) {
  if (AsksForUsage(body.json())) return;
  std::optional<Json> options = body.Member("stream_options");
  if (!options.has_value() || !options->is_object()) options = Json::object();
  (*options)["include_usage"] = true;
  body.SetMember("stream_options", *std::move(options));
}

// Receives the answer of one call. Methods run on the HTTP client's event-loop thread: they must
// be quick and must not block. Exactly one OnDone ends every call, including cancelled ones.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Non-streaming: the whole response body (OpenAI shape, `usage` included). An OpenAI-shaped
  // upstream's body keeps its text as received (and its parsed value).
  virtual void OnResponse(json::WireJson body) = 0;
  // Streaming: the OpenAI chunk objects that one upstream read completed, in order (the usage
  // chunk has `choices: []`); the sink may move from them. An OpenAI-shaped upstream's chunk is its
  // event's JSON text as received, unparsed, on one line. One call per read, not per chunk: a
  // read often holds the whole answer, and each layer on the way is passed once.
  virtual void OnChunks(std::span<json::WireJson> chunks) = 0;
  // The end. OK after a clean end; otherwise an error of base/errors.h (upstream 4xx keep their
  // status and message, 5xx and network failures are UpstreamFailed, timeouts UpstreamTimedOut,
  // cancellation kCancelled).
  virtual void OnDone(absl::Status status) = 0;
};

// A call in flight. Cancel is thread-safe and idempotent; OnDone(kCancelled) follows unless the
// call had already ended.
class Call {
 public:
  virtual ~Call() = default;
  virtual void Cancel() = 0;
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual const std::string& name() const = 0;
  // Starts one attempt and returns at once; the sink hears the rest, never inside Send itself
  // (even failures known at once arrive on the loop thread). The provider copies what it keeps of
  // `request` (the caller keeps it for further attempts).
  virtual std::unique_ptr<Call> Send(const Request& request,
                                     std::shared_ptr<ResponseSink> sink) = 0;
};

}  // namespace terse::providers
