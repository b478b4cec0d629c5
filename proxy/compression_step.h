// The compression step on the request's path: the route's policy (and the request's overrides,
// where the route allows them) applied by the compressor on worker threads, never on I/O threads.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "proxy/pipeline.h"
#include "terse/v1/config.pb.h"

namespace terse::compressor {
class Compressor;
}  // namespace terse::compressor

namespace terse::proxy {

// Thread-safe. A bounded queue feeds `settings.workers` threads; when the queue is full the call
// ends at once with Overloaded (503), and a compression that outlives the route's `timeout_ms`
// ends with UpstreamTimedOut-like kDeadlineExceeded; the pipeline then applies `on_error`.
// Request errors (a bad override) are kInvalidArgument and always fail the request.
//
// Overrides: header `x-terse-compress: off|on`, header `x-terse-rate: R`, or a body object
// `"terse": {"compress": bool, "rate": R, "target_tokens": N}` (Input::overrides); they are
// honoured only when the route has `allow_overrides`.
class CompressorStep : public CompressionStep {
 public:
  static absl::StatusOr<std::unique_ptr<CompressorStep>> Create(
      std::shared_ptr<compressor::Compressor> compressor, const v1::CompressorSettings& settings);
  ~CompressorStep() override;  // finishes queued work with kCancelled, joins the workers

  void Compress(const v1::Route& route, const CallInfo& info, Input input, Done done) override;

 private:
  struct State;
  explicit CompressorStep(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace terse::proxy
