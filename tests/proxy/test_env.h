// Shared pieces of the proxy tests: a responder that records what the pipeline said, compression
// steps with scripted outcomes, a gateway (real config, providers, pipeline, HTTP server) in front
// of the fake upstream, and a small blocking HTTP/1.1 client with bounded waits.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "config/config.h"
#include "providers/provider_set.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "proxy/pipeline.h"
#include "tests/support/fake_upstream.h"

namespace terse::proxy::testing {

// Records every responder call; thread-safe.
class RecordingResponder : public Responder {
 public:
  enum class Kind { kReply, kStartStream, kChunk, kEndStream, kFail };
  struct Event {
    Kind kind;
    Json json;                 // Reply body or Chunk
    std::string text;          // Reply body or Chunk: the text the face would send
    bool as_received = false;  // Reply body or Chunk: `text` is the upstream's, unparsed
    absl::Status status;       // EndStream / Fail
    ResponseHead head;         // Reply / StartStream
  };

  void Reply(const ResponseHead& head, json::WireJson body) override;
  void StartStream(const ResponseHead& head) override;
  void Chunks(std::span<json::WireJson> chunks) override;
  void EndStream(absl::Status status) override;
  void Fail(absl::Status status) override;

  // Waits for the terminal call (Reply, EndStream or Fail); false on timeout.
  bool WaitDone(absl::Duration timeout = absl::Seconds(10));
  // Waits until at least `n` chunks arrived; false on timeout.
  bool WaitChunks(size_t n, absl::Duration timeout = absl::Seconds(10));
  std::vector<Event> events() const;
  int terminal_calls() const;
  // The terminal event (valid after WaitDone).
  Event terminal() const;
  std::vector<Json> chunks() const;

 private:
  void Add(Event e);
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<Event> events_;
};

// A compression step whose outcome the test decides; records what it was given.
class ScriptedCompression : public CompressionStep {
 public:
  using Script = std::function<absl::StatusOr<Result>(const v1::Route&, const CallInfo&, Input)>;
  explicit ScriptedCompression(Script script) : script_(std::move(script)) {}
  void Compress(const v1::Route& route, const CallInfo& info, Input input, Done done) override;
  std::vector<CallInfo> calls() const;

 private:
  Script script_;
  mutable std::mutex mu_;
  std::vector<CallInfo> calls_;
};

// The YAML of a config whose provider "fake" points at `upstream`. `extra_routes` is inserted
// before the catch-all routes; `limits` replaces the limits block when not empty.
std::string GatewayYaml(const terse::testing::FakeUpstream& upstream,
                        const std::string& extra_routes = "", const std::string& limits = "");

// The whole gateway on an ephemeral port, in front of its own fake upstream.
struct Gateway {
  struct Options {
    std::string extra_routes;
    std::string limits;
    CompressionStep* compression = nullptr;  // default: PassThroughCompression
    bool start_http = true;
  };
  explicit Gateway(Options options);
  Gateway() : Gateway(Options{}) {}
  ~Gateway();

  terse::testing::FakeUpstream upstream;
  Metrics metrics;
  PassThroughCompression pass_through;
  std::shared_ptr<const config::Config> config;
  std::unique_ptr<providers::ProviderSet> providers;
  std::unique_ptr<Pipeline> pipeline;
  std::unique_ptr<HttpServer> http;
};

// One HTTP/1.1 response as the client read it.
struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string Header(const std::string& lower_name) const;
  bool HasHeader(const std::string& lower_name) const;
  Json JsonBody() const;
};

// A blocking client on one connection; every read gives up after `timeout`.
class HttpClient {
 public:
  explicit HttpClient(int port, absl::Duration timeout = absl::Seconds(15));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Writes raw bytes.
  bool SendRaw(const std::string& bytes);
  // Writes a request with a Content-Length body.
  bool SendRequest(const std::string& method, const std::string& target, const std::string& body,
                   const std::vector<std::pair<std::string, std::string>>& headers = {});
  // Reads one whole response (chunked bodies de-chunked). nullopt on timeout or close.
  std::optional<HttpResponse> ReadResponse();
  // Reads a response head only; then ReadSome / ReadUntil return body bytes as they arrive.
  std::optional<HttpResponse> ReadHead();
  // De-chunked body bytes until `needle` appears in everything read so far (returned), or the end
  // of the body, or the timeout.
  std::string ReadBodyUntil(const std::string& needle);
  // True when the server closed the connection (a read returns end of file) within the timeout.
  bool WaitClosed();
  // Closes the connection abruptly.
  void Close();
  // Says it will send nothing more (a half-close), and reads on.
  void ShutdownSend();

  std::optional<HttpResponse> Request(
      const std::string& method, const std::string& target, const std::string& body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The data payloads of SSE text (`data: x\n\n` -> "x"), in order.
std::vector<std::string> SseData(const std::string& body);

}  // namespace terse::proxy::testing
