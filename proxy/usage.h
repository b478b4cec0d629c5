// What an upstream reported it used for a call, read off its answer as it passes through: the
// input of usage accounting (metrics now, the per-tenant usage ledger later).
#pragma once

#include <cstdint>
#include <optional>

#include "json/wire_json.h"

namespace terse::proxy {

// OpenAI's `usage` of one call, in the upstream model's tokens.
struct UsageRecord {
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  uint64_t cached_tokens = 0;  // prompt_tokens_details.cached_tokens: read from the cache
  friend bool operator==(const UsageRecord&, const UsageRecord&) = default;
};

// Reads the usage of one call from what the upstream sent: a whole response, or a stream's
// chunks in order (a stream reports its usage once, in a chunk of its own near the end). Counts
// that are not non-negative numbers read as 0, so an odd upstream cannot break the books. Not
// thread-safe: it follows one call's answer.
class UsageReader {
 public:
  // Looks at one response or chunk; its `usage` object, when it has one, is the call's usage from
  // here on. True when it has a top-level `usage` member at all (an object or not), so that the
  // caller can hide a usage chunk from a client that did not ask for one. Read off the text as
  // received when there is one (nothing is parsed), else off the value.
  bool Read(const json::WireJson& message);

  // What the upstream reported; nullopt when no answer so far had a `usage` object.
  const std::optional<UsageRecord>& record() const { return record_; }

 private:
  std::optional<UsageRecord> record_;
};

}  // namespace terse::proxy
