// Follows the event-stream interpretation rules of the HTML standard, except that a last event
// without its blank line can be recovered by Finish.
#include "providers/sse.h"

namespace terse::providers {

absl::StatusOr<std::vector<SseEvent>> SseParser::Feed(std::string_view bytes) {
  if (failed_) return absl::FailedPreconditionError("SSE parser failed earlier");
  std::vector<SseEvent> out;
  size_t start = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') {
        start = i + 1;
        continue;
      }
    }
    if (c != '\n' && c != '\r') continue;
    if (line_.empty()) {
      ProcessLine(bytes.substr(start, i - start), out);  // the whole line is in this piece
    } else {
      line_.append(bytes.substr(start, i - start));
      ProcessLine(line_, out);
      line_.clear();
    }
    skip_lf_ = c == '\r';
    start = i + 1;
  }
  line_.append(bytes.substr(start));
  if (line_.size() + pending_.data.size() > max_event_bytes_) {
    failed_ = true;
    return absl::ResourceExhaustedError("an upstream stream event exceeds " +
                                        std::to_string(max_event_bytes_) + " bytes");
  }
  return out;
}

std::vector<SseEvent> SseParser::Finish() {
  std::vector<SseEvent> out;
  if (failed_) return out;
  if (!line_.empty()) {
    ProcessLine(line_, out);
    line_.clear();
  }
  if (has_data_) ProcessLine("", out);
  return out;
}

void SseParser::ProcessLine(std::string_view line, std::vector<SseEvent>& out) {
  if (line.empty()) {
    if (has_data_) out.push_back(std::move(pending_));
    pending_ = SseEvent();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment (keep-alive pings)
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) pending_.data.push_back('\n');
    pending_.data.append(value);
    has_data_ = true;
  } else if (field == "event") {
    pending_.event.assign(value);
  } else if (field == "id") {
    pending_.id.assign(value);
  }
  // `retry` and unknown fields are ignored.
}

}  // namespace terse::providers
