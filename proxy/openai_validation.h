// The checks OpenAI itself makes on a request body before anything else: types and required
// members, with OpenAI's wording and `param` paths, so that a client sees the error it would see
// there.
#pragma once

#include "absl/status/status.h"
#include "base/json.h"
#include "proxy/operation.h"

namespace terse::proxy {

// OK when `body` is a request OpenAI would take for `op` (one of the pipeline's operations; the
// compress operation takes a chat body); else InvalidRequest naming the offending member.
// Members it does not check reach the upstream, which has the last word.
absl::Status ValidateOpenAiRequest(Operation op, const Json& body);

}  // namespace terse::proxy
