// Follows the event-stream interpretation rules of the HTML standard, except that a last event
// without its blank line can be recovered by Finish.
#include "providers/sse.h"

#include <cstring>

namespace terse::providers {

absl::Status SseParser::Feed(std::string_view bytes, std::vector<SseEvent>& out) {
  if (failed_) return absl::FailedPreconditionError("SSE parser failed earlier");
  const char* const data = bytes.data();
  const size_t n = bytes.size();
  size_t start = 0;  // where the current line begins
  while (start < n) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (data[start] == '\n') {  // the LF of a CR LF
        ++start;
        continue;
      }
    }
    // The line ends at the first CR or LF: memchr finds them a word at a time.
    const void* lf = std::memchr(data + start, '\n', n - start);
    size_t end = lf ? static_cast<size_t>(static_cast<const char*>(lf) - data) : n;
    if (const void* cr = std::memchr(data + start, '\r', end - start)) {
      end = static_cast<size_t>(static_cast<const char*>(cr) - data);
    }
    if (end == n) break;  // no end in this piece: the rest waits in line_
    if (line_.empty()) {
      const std::string_view line = bytes.substr(start, end - start);  // whole in this piece
      if (OverLimit(line, /*complete=*/true)) return Fail();
      ProcessLine(line, out);
    } else {
      line_.append(bytes.substr(start, end - start));
      if (OverLimit(line_, /*complete=*/true)) return Fail();
      ProcessLine(line_, out);
      line_.clear();
    }
    skip_lf_ = data[end] == '\r';
    start = end + 1;
  }
  line_.append(bytes.substr(start));
  // Refused as soon as it is sure to be: the line only grows.
  if (OverLimit(line_, /*complete=*/false)) return Fail();
  return absl::OkStatus();
}

bool SseParser::OverLimit(std::string_view line, bool complete) const {
  if (line.size() > max_event_bytes_) return true;
  // A data line: `data` alone (complete: a line in progress may turn out to be another field)
  // or `data:` and its value, of which one leading space is not part.
  if (line.substr(0, 4) != "data") return false;
  if (line.size() == 4 ? !complete : line[4] != ':') return false;
  const size_t value = line.size() <= 5 ? 0 : line.size() - 5 - (line[5] == ' ' ? 1 : 0);
  return pending_.data.size() + (has_data_ ? 1 : 0) + value > max_event_bytes_;
}

absl::Status SseParser::Fail() {
  failed_ = true;
  return absl::ResourceExhaustedError("an upstream stream event exceeds " +
                                      std::to_string(max_event_bytes_) + " bytes");
}

std::vector<SseEvent> SseParser::Finish() {
  std::vector<SseEvent> out;
  if (failed_) return out;
  if (!line_.empty()) {
    if (OverLimit(line_, /*complete=*/true)) {
      failed_ = true;
      return out;
    }
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
    if (has_data_) {
      pending_.data.push_back('\n');
      pending_.joined = true;
    }
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
