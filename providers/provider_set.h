// The providers of one configuration, their shared HTTP engine, and sending with retries and
// fallbacks across them.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "providers/provider.h"
#include "terse/v1/config.pb.h"

namespace terse::providers {

class HttpClient;

// Owns the HTTP engine and one Provider per configured provider. Thread-safe.
class ProviderSet {
 public:
  // Builds every provider of `config.providers` (defaults filled where the config leaves 0:
  // connect 5000 ms, first byte 60000 ms, total 600000 ms; retry 3 attempts, backoff 200 ms
  // doubling up to 5000 ms) and starts the engine. kInvalidArgument for a provider without name
  // or kind, a duplicate name, or azure/openai_compatible without base_url. A missing API key is
  // not an error here: calls to that provider fail (and fall back) instead.
  // `lanes`: lanes of the engine (see HttpClient); the HTTP face hosts one on each I/O thread.
  static absl::StatusOr<std::unique_ptr<ProviderSet>> Create(const v1::Config& config,
                                                             int lanes = 1);
  ~ProviderSet();  // stops the engine; pending calls end with kCancelled

  Provider* Find(std::string_view name) const;  // nullptr when unknown

  // The HTTP engine every provider sends through.
  HttpClient& engine() const { return *client_; }

  // Sends to `targets` in order: each is retried per its provider's RetryPolicy (exponential
  // backoff with jitter) on connect errors, 429 and 5xx, but only before the first byte reached
  // the sink; when a target's attempts are spent, falls back to the next. The sink sees one
  // coherent call (never chunks from two attempts).
  //
  // When the failed answer asked for a delay (retry-after-ms, else retry-after), the retry waits
  // exactly that instead of the backoff. A delay beyond the provider's max_backoff, or one that
  // would pass the deadline, is not waited: the target is left for the next at once (or, after
  // the last, the call ends with that error, a 429 say), since holding the client longer is worse
  // than an honest error.
  //
  // A target is also left for the next (without retrying) when it cannot serve at all: no API
  // key, upstream 401/403/404, TLS failure, no answer within the first-byte timeout. Errors of the
  // request itself (other 4xx) and cancellation end the call at once. After the last target the
  // sink gets the last error. `request.deadline` bounds the whole sequence. Returns at once; the
  // returned Call cancels whichever attempt or backoff is current.
  std::unique_ptr<Call> Send(std::vector<Provider*> targets, Request request,
                             std::shared_ptr<ResponseSink> sink);

 private:
  struct Retry {
    int max_attempts = 3;
    absl::Duration initial_backoff = absl::Milliseconds(200);
    absl::Duration max_backoff = absl::Milliseconds(5000);
  };
  class FallbackCall;

  ProviderSet() = default;

  // Constant after Create. The engine is declared first and reset first in the destructor.
  std::unique_ptr<HttpClient> client_;
  std::vector<std::unique_ptr<Provider>> providers_;
  absl::flat_hash_map<std::string, Provider*> by_name_;
  absl::flat_hash_map<const Provider*, Retry> retry_;
};

}  // namespace terse::providers
