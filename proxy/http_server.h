// The HTTP face: the OpenAI API (its routes, Azure's paths, keys, SSE framing, the error table on
// the wire) onto the Pipeline, served by terse's HTTP/1.1 transport (http_transport.h):
// asynchronous on a few I/O threads, so thousands of open streams need no more threads.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "providers/http_client.h"
#include "proxy/http_transport.h"
#include "proxy/metrics.h"
#include "proxy/pipeline.h"
#include "terse/v1/config.pb.h"

namespace terse::proxy {

// Routes: POST /v1/chat/completions, /v1/completions, /v1/embeddings, /terse/compress; GET
// /v1/models, /healthz, /readyz, /metrics, /terse/usage (the /v1 prefix is optional; Azure OpenAI's
// `/openai/deployments/{name}/...` paths name the model). Anything else gets an OpenAI-shaped
// 404, or 405 for a known path with the wrong method. Every response carries `x-request-id`.
class HttpServer {
 public:
  // Binds listeners.http (port 0: an ephemeral port) and starts IoThreads(config) threads. I/O
  // thread i hosts lane i of `engine` (the providers' HTTP engine; give it that many lanes), so
  // that requests and their upstream exchanges share a thread; null: no hosting. `pipeline`,
  // `metrics` and `engine` must outlive the server. kUnavailable when the address cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const v1::Config& config,
                                                           Pipeline& pipeline, Metrics& metrics,
                                                           providers::HttpClient* engine = nullptr);

  // listeners.io_threads, or the number of cores when that is 0.
  static unsigned IoThreads(const v1::Config& config);
  // Shuts down if that has not happened yet.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port.
  int port() const;

  // Stops accepting, lets requests in progress finish for up to `grace` (idle connections close at
  // once, busy ones after their response), then cancels what is left and joins the I/O threads.
  // /readyz answers 503 from the first moment. Idempotent; call from any thread but an I/O thread.
  void Shutdown(absl::Duration grace);
  void Shutdown() { Shutdown(absl::Seconds(10)); }

  struct Api;

 private:
  HttpServer(std::unique_ptr<Api> api, std::unique_ptr<HttpTransport> transport);
  // The transport calls the API until it is shut down, so it is destroyed first.
  std::unique_ptr<Api> api_;
  std::unique_ptr<HttpTransport> transport_;
};

}  // namespace terse::proxy
