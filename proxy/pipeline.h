// The request's path, the same for the HTTP and the gRPC face: decode -> authenticate -> route
// -> authorize -> compress -> admit -> forward -> stream back -> settle. Neither face has logic
// of its own.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "config/config.h"
#include "json/wire_json.h"
#include "proxy/admission.h"
#include "proxy/operation.h"
#include "terse/v1/config.pb.h"
#include "terse/v1/gateway.pb.h"

namespace terse::providers {
class ProviderSet;
}  // namespace terse::providers

namespace terse::proxy {

class Metrics;

// What a face knows about one call besides its body.
struct CallInfo {
  Face face = Face::kHttp;
  Operation operation = Operation::kChatCompletions;
  std::string request_id;
  std::string api_key;  // from `Authorization: Bearer` or `api-key`; empty when none
  std::vector<std::pair<std::string, std::string>> headers;  // the client's, names lower-cased
  absl::Time deadline = absl::InfiniteFuture();
};

// Sent with the response head: becomes x-terse-* headers (HTTP) or the `compression` field (gRPC).
struct ResponseHead {
  v1::CompressionReport compression;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

// Implemented by each face. The pipeline calls it from any thread, in one of three orders:
//   Reply                          (a whole JSON response)
//   StartStream, Chunks..., EndStream  (EndStream with an error becomes an error event)
//   Fail                           (nothing sent yet: an error response / gRPC status)
// each maybe preceded by Trailers just before the terminal call.
// Bodies and chunks of OpenAI-shaped upstreams arrive as their text as received: the HTTP face
// relays that text, the gRPC face parses it (WireJson::json).
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void Reply(const ResponseHead& head, json::WireJson body) = 0;
  virtual void StartStream(const ResponseHead& head) = 0;
  // Stream chunks in order, those of one upstream read at once; the face may move from them.
  virtual void Chunks(std::span<json::WireJson> chunks) = 0;
  virtual void EndStream(absl::Status status) = 0;
  virtual void Fail(absl::Status status) = 0;
  // What is known only at the end (a tenant's booked cost): gRPC sends it as trailing metadata.
  // The HTTP face has no use for it: a whole reply's head carries it already.
  virtual void Trailers(std::vector<std::pair<std::string, std::string>> fields) {}
};

// A call in progress; the face cancels it when its client goes away.
class PipelineCall {
 public:
  virtual ~PipelineCall() = default;
  virtual void Cancel() = 0;
};

// The compression step: CompressorStep (compression_step.h), or PassThroughCompression when no
// route compresses.
class CompressionStep {
 public:
  // What the step gets of a request: its prompt, and what the request asks of compression.
  struct Input {
    // `messages` of a chat (or compress) request, `prompt` of a completion; nullopt when the body
    // has none (embeddings).
    std::optional<Json> prompt;
    // The body's `terse` object, when it has one: the pipeline takes it out of the body.
    std::optional<Json> overrides;
    // The model the upstream is asked for, whose tokenizer budgets count in.
    std::string model;
  };
  struct Result {
    std::optional<Json> prompt;  // the prompt shortened (or as it was); nullopt for none
    v1::CompressionReport report;
  };
  using Done = absl::AnyInvocable<void(absl::StatusOr<Result>) &&>;
  virtual ~CompressionStep() = default;
  // Compresses `input.prompt` under `route`'s policy off the I/O threads, then calls `done` (on
  // any thread). An error here is handled by the route's `on_error`.
  virtual void Compress(const v1::Route& route, const CallInfo& info, Input input, Done done) = 0;
};

// The request's path. Thread-safe; one instance serves both faces.
class Pipeline {
 public:
  // `providers`, `compression`, `metrics` and `tenants` must outlive the pipeline. `tenants`
  // null: no tenancy, every request is admitted and nothing is booked.
  Pipeline(std::shared_ptr<const config::Config> config, providers::ProviderSet& providers,
           CompressionStep& compression, Metrics& metrics, Tenants* tenants = nullptr);
  ~Pipeline();

  // Runs one call. `body` is the OpenAI JSON request: over HTTP the client's text with its parsed
  // value (WireJson::FromParsedText), relayed as written but for the members terse sets; for gRPC
  // the value decoded from the proto. The responder hears the outcome; the returned handle
  // cancels the call (client gone).
  std::unique_ptr<PipelineCall> Handle(CallInfo info, json::WireJson body,
                                       std::shared_ptr<Responder> responder);

  // The body of GET /v1/models: one entry per route model that is not a glob.
  Json ListModels() const;

  // For what a face answers itself (/metrics, models): OK without tenancy, else for a live
  // tenant key or the admin key; errors as a call's authentication.
  absl::Status CheckKey(std::string_view api_key) const;
  // GET /v1/terse/usage (admission.h, Tenants::Usage); 404 without tenancy.
  void Usage(Tenants::UsageRequest request,
             absl::AnyInvocable<void(absl::StatusOr<Json>) &&> done) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Gives the prompt back unchanged, not applied: the step when no route compresses or lets a
// request ask for it, so that no model is loaded.
class PassThroughCompression : public CompressionStep {
 public:
  void Compress(const v1::Route& route, const CallInfo& info, Input input, Done done) override;
};

}  // namespace terse::proxy
