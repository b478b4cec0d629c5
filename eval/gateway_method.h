// The eval's face on a running gateway: items sent as chat completions over HTTP, the way an
// application's OpenAI client sends them.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "eval/runner.h"

namespace terse::eval {

struct GatewayOptions {
  std::string base_url;  // the gateway's OpenAI base URL, e.g. http://127.0.0.1:8080/v1
  std::string api_key;   // sent as a bearer token when not empty
  std::string model = "gpt-4o-mini";  // the request's model (picks the route)
  // false: the upstream is the echo provider, so the answer is the prompt the gateway forwarded
  // and what survived is scored. true: the answer is the target LLM's, and it is scored for
  // exact match against the item's answer.
  bool llm_answers = false;
  bool compress = true;  // false: `x-terse-compress: off`, the uncompressed reference
  int timeout_seconds = 120;
};

// One client for the whole run (its event loop runs on a thread of its own). Each call sends
// `x-terse-rate: R` (the route must allow overrides) and waits for the answer.
class GatewayClient {
 public:
  static absl::StatusOr<std::shared_ptr<GatewayClient>> Create(GatewayOptions options);
  ~GatewayClient();

  Method AsMethod();

 private:
  struct Impl;
  explicit GatewayClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace terse::eval
