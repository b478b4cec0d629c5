// Translation between OpenAI's chat shape and Anthropic's Messages API, both ways, including the
// typed stream events. Pure functions (and one stateful stream translator), tested on their own.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "base/json.h"
#include "providers/exchange.h"

namespace terse::providers {

// `max_tokens` when the OpenAI request sets neither max_tokens nor max_completion_tokens.
inline constexpr int kAnthropicDefaultMaxTokens = 4096;

// An OpenAI chat request as a Messages request: system and developer text to the top-level
// `system`; user/assistant content (text and image parts), assistant `tool_calls` as `tool_use`
// blocks, `tool` messages as `tool_result` blocks (consecutive same-role messages merged);
// `max_tokens`; temperature (capped at 1), top_p, stop, user, tools and tool_choice translated.
// Fields without an Anthropic counterpart are dropped. kInvalidArgument (InvalidRequest) for
// content Anthropic cannot take (audio, files) or malformed messages.
absl::StatusOr<Json> ToAnthropicRequest(const Json& openai, bool stream);

// A Messages response as an OpenAI `chat.completion` with `usage` (cached input counted in
// prompt_tokens and reported in prompt_tokens_details.cached_tokens).
absl::StatusOr<Json> FromAnthropicResponse(const Json& message);

// message_start / content_block_* / message_delta / message_stop events as OpenAI
// `chat.completion.chunk`s: a role chunk, content and tool-call deltas, a finish chunk, and last
// a usage chunk (`choices: []`). An `error` event ends the call with that error.
std::unique_ptr<StreamTranslator> NewAnthropicStreamTranslator();

}  // namespace terse::providers
