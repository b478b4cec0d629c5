// The access log's line: its members in a fixed order, the optional ones only when they apply.
#include "proxy/access_log.h"

#include <string>
#include <utility>

#include "base/errors.h"
#include "base/json.h"
#include "proxy/log.h"

namespace terse::proxy {
namespace {

double Milliseconds(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

}  // namespace

void LogAccess(const AccessLogEntry& entry) {
  if (!LogEnabled(LogLevel::kInfo)) return;
  Json line = {{"msg", "request"},
               {"request_id", entry.request_id},
               {"face", FaceName(entry.face)},
               {"operation", entry.operation}};
  const AccessLogEntry::Call* call = entry.call ? &*entry.call : nullptr;
  if (call != nullptr) {
    line["route"] = call->route;
    line["model"] = call->model;
    line["upstream_model"] = call->upstream_model;
    line["stream"] = call->stream;
    if (!call->tenant.empty()) {
      line["tenant"] = call->tenant;
      line["key"] = call->key;
    }
    if (!call->ledger_id.empty()) line["ledger_id"] = call->ledger_id;
  }
  line["status"] = entry.http_status;
  line["latency_ms"] = Milliseconds(entry.latency);
  if (call != nullptr) {
    if (call->upstream.has_value()) line["upstream_ms"] = Milliseconds(*call->upstream);
    if (call->first_byte.has_value()) line["first_byte_ms"] = Milliseconds(*call->first_byte);
    if (call->usage.has_value()) {
      line["prompt_tokens"] = call->usage->prompt_tokens;
      line["completion_tokens"] = call->usage->completion_tokens;
    }
    if (call->compression != nullptr && call->compression->applied()) {
      line["original_tokens"] = call->compression->original_tokens();
      line["compressed_tokens"] = call->compression->compressed_tokens();
    }
  }
  if (!entry.status.ok()) {
    line["error_type"] = DetailOf(entry.status).type;
    line["error"] = std::string(entry.status.message());
  }
  LogJson(LogLevel::kInfo, std::move(line));
}

}  // namespace terse::proxy
