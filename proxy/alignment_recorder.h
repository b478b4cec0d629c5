// Records prompt/response pairs for distribution alignment (tools/align.py): one JSON line per
// successful completion on routes with `compression.record_alignment_pairs`, appended off the
// request's path by one writer thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/json.h"

namespace terse::proxy {

// The prompt of an OpenAI messages array as the small LM reads it: one "role: text" line per
// message with text (text parts joined by newlines, other parts left out), terse markup removed.
std::string RenderAlignmentPrompt(const Json& messages);

// The answer text of the first choice of a chat completion (message.content), a chat chunk
// (delta.content) or a legacy completion or its chunk (text); "" when there is none (a tool call).
std::string AlignmentAnswerText(const Json& response_or_chunk);

// Thread-safe. Record() only queues: a bounded queue feeds one writer thread that appends each
// line to its file with a single write() on an O_APPEND descriptor, so lines never interleave,
// also with other processes appending to the same file. When the queue is full a line is dropped;
// a file that cannot be opened or written drops its lines. Neither ever fails a request: each
// kind of trouble is logged once (a warning) and counted.
class AlignmentRecorder {
 public:
  explicit AlignmentRecorder(size_t queue_capacity = 1024);
  ~AlignmentRecorder();  // writes what is queued, then stops the writer
  AlignmentRecorder(const AlignmentRecorder&) = delete;
  AlignmentRecorder& operator=(const AlignmentRecorder&) = delete;

  // Queues `pair` (an object with at least "prompt" and "response" strings) for the JSONL file
  // at `path` (created when missing; relative paths are relative to the working directory).
  void Record(std::string path, Json pair);

  // Blocks until every line queued before the call is written or dropped.
  void Flush();

  uint64_t written() const;  // lines appended
  uint64_t dropped() const;  // lines lost: queue full, or the file failed

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace terse::proxy
