// From chat messages to the method's parts and back: which text of a chat request is instruction,
// history, context or question, and how each is compressed so that the result is the same
// messages (roles, order, count, every non-text part and field) with only text shortened.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/json.h"
#include "compressor/compressor.h"

namespace terse::compressor {

struct RateBand {
  size_t min_prompt_tokens = 0;
  double rate = 1.0;
};

// A route's compression policy, in compressor terms (proxy/ maps the config proto onto it).
struct ChatPolicy {
  // The budget: `options.rate` or `options.target_tokens`, or the band for the prompt's size
  // (the band with the largest min_prompt_tokens not above the prompt wins).
  CompressOptions options;
  std::vector<RateBand> rate_bands;
  size_t min_prompt_tokens = 0;  // prompts below it (target tokens) are forwarded unchanged
  std::vector<std::string> roles = {"system", "user", "assistant"};  // "system" covers developer
  size_t keep_last_turns = 0;       // messages just before the last user message kept verbatim
  bool question_aware = false;      // rank the last message's documents by the question
  bool compress_tool_json = false;  // tool messages: shrink JSON string values (else kept)
  // Splits the last user message into documents: `<terse:doc>...</terse:doc>` tags when present,
  // else this regex's matches start new documents (e.g. "Document \\[\\d+\\]"), else blank-line
  // separated blocks. The last block is the question and is never dropped.
  std::string document_delimiter;
};

// The recipe `terse eval` measured best (bench/RESULTS.md): documents ranked by the question, the
// best first, item rates spread +-0.3 over the ranks, and items kept up to their budget, so
// that whole documents and demonstrations are chosen before any is cut up. A route's defaults
// (config/validate.cc fills the same values; proxy's tests hold the two equal), and what
// `terse compress --question-aware` and `terse eval` use unless told otherwise.
ChatPolicy RecommendedChatPolicy();

struct ChatReport {
  bool applied = false;
  std::string reason;          // why not applied, when not
  size_t original_tokens = 0;  // target tokens of all message text
  size_t compressed_tokens = 0;
  double rate = 1.0;
  double ms = 0;
  bool cache_hit = false;  // every stable part came from the compressor's cache
};

// The parts of a chat, as the method sees them.
//   - system/developer messages: instruction, compressed on their own (stable prefix);
//   - user/assistant turns before the last user message: history, each compressed on its own
//     (stable, so a repeated conversation prefix compresses to the same bytes every time);
//   - the last user message: its documents are context items (ranked, maybe by the question),
//     its last block is the question, kept verbatim;
//   - tool messages: kept, or JSON-aware compressed; non-text parts are never touched.
// Stable parts are compressed without the question, so they are byte-identical across requests
// that differ only in the question, and providers' prompt caches keep working.
//
// Rewrites `messages` (an OpenAI messages array) in place. Errors: kInvalidArgument for messages
// that are not an array of objects, a role that is not a string, invalid UTF-8, or bad options;
// compressor errors as is; kInternal (kResourceExhausted when memory ran out) for anything thrown
// inside, which never leaves.
absl::StatusOr<ChatReport> CompressChat(Compressor& compressor, Json& messages,
                                        const ChatPolicy& policy);

// The legacy completions `prompt` (a string or an array of strings), compressed as plain text.
// Errors as CompressChat's.
absl::StatusOr<ChatReport> CompressCompletionPrompt(Compressor& compressor, Json& prompt,
                                                    const ChatPolicy& policy);

// `text` without terse markup (<terse:keep>, <terse rate=R>, <terse:doc> and their closing tags):
// what the upstream LLM is sent for text the compressor did not rewrite, and what the alignment
// recorder stores. Text with a malformed tag is returned as it is.
std::string WithoutMarkup(std::string text);

// Splits a user message's text into documents and a final question block (see ChatPolicy).
struct SplitMessage {
  std::vector<std::string> documents;
  std::vector<std::string> separators;  // separators[i] follows documents[i]
  std::string question;
};
absl::StatusOr<SplitMessage> SplitDocuments(const std::string& text,
                                            const std::string& document_delimiter);

}  // namespace terse::compressor
