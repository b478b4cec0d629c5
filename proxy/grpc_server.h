// The gRPC face: terse.v1.Gateway on the callback API, plus grpc.health.v1 and server reflection.
// It only converts protos to OpenAI JSON and back (grpc_codec.h) around the shared Pipeline.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "proxy/pipeline.h"
#include "terse/v1/config.pb.h"

namespace terse::proxy {

class GrpcServer {
 public:
  // Binds config.listeners().grpc() (host default 127.0.0.1; port 0 picks a free port) and starts
  // serving. `pipeline` must outlive the server. kUnavailable when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const v1::Config& config,
                                                           Pipeline& pipeline);

  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;
  ~GrpcServer();  // Shutdown()

  // The bound port.
  int port() const;

  // Reports NOT_SERVING on the health service, stops accepting calls, lets in-flight calls finish
  // for a few seconds, then cancels the rest (their pipeline calls are cancelled too) and returns
  // when every call is done. Idempotent; thread-safe.
  void Shutdown();

 private:
  struct Impl;
  explicit GrpcServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace terse::proxy
