// An incremental parser of Server-Sent Events (the WHATWG event-stream format): bytes go in as
// the network delivers them, in pieces of any size; whole events come out.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace terse::providers {

struct SseEvent {
  std::string event;    // the `event:` field; empty when the stream did not name one
  std::string data;     // the `data:` lines joined with '\n'
  std::string id;       // the `id:` field; empty when none
  bool joined = false;  // there were several `data:` lines: `data` holds a '\n'
};

// Not thread-safe; one per stream. Lines may end in LF, CRLF or CR, even when the CR and LF arrive
// in different pieces; comment lines (`:` first) are skipped; an event ends at a blank line.
class SseParser {
 public:
  // `max_event_bytes` bounds the memory one event may take: an event whose data, or a line, is
  // longer is an error, however its bytes are split between calls of Feed.
  explicit SseParser(size_t max_event_bytes = 16 << 20) : max_event_bytes_(max_event_bytes) {}

  // Appends the events completed by `bytes` to `events`, in order. kResourceExhausted when an
  // event or a line grows beyond the limit (the events before it are appended); the parser is
  // unusable afterwards. (A relay keeps one vector for all its reads.)
  absl::Status Feed(std::string_view bytes, std::vector<SseEvent>& events);

  // At the end of the stream: the last event when its data arrived without the closing blank
  // line (lenient: some servers end that way), else nothing (also when that line is beyond the
  // limit).
  std::vector<SseEvent> Finish();

 private:
  void ProcessLine(std::string_view line, std::vector<SseEvent>& out);
  // Whether `line`, or the pending event's data once `line` is added to it, is beyond the limit.
  // A line not `complete` yet counts only what it surely adds.
  bool OverLimit(std::string_view line, bool complete) const;
  absl::Status Fail();

  const size_t max_event_bytes_;
  std::string line_;       // the current, unfinished line
  bool skip_lf_ = false;   // the last byte was a CR: a following LF belongs to it
  bool has_data_ = false;  // a data field arrived for the pending event
  SseEvent pending_;
  bool failed_ = false;
};

}  // namespace terse::providers
