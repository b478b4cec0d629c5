// The access log: one JSON line (proxy/log.h) at info level per request that ends, answered by
// the pipeline or refused by a face before it, for operators and log shippers.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/operation.h"
#include "proxy/usage.h"
#include "terse/v1/gateway.pb.h"

namespace terse::proxy {

// What the line says. Views, valid for the LogAccess call.
struct AccessLogEntry {
  std::string_view request_id;
  Face face = Face::kHttp;
  std::string_view operation;  // OperationName
  int http_status = 200;
  absl::Duration latency;
  absl::Status status;  // a failure adds its error type and message

  // Of a call the pipeline took on (absent for a request refused before it).
  struct Call {
    std::string_view route;
    std::string_view model;
    std::string_view upstream_model;
    bool stream = false;
    // Since the call was forwarded: to the end, and to the upstream's first byte. Absent when it
    // was not forwarded, or no byte came.
    std::optional<absl::Duration> upstream;
    std::optional<absl::Duration> first_byte;
    std::optional<UsageRecord> usage;
    const v1::CompressionReport* compression = nullptr;  // its counts when it was applied
    // A tenant's call: the tenant's and key's public ids, and its usage ledger row's id.
    std::string_view tenant;
    std::string_view key;
    std::string_view ledger_id;
  };
  std::optional<Call> call;
};

// Writes the line when info lines are logged. Thread-safe.
void LogAccess(const AccessLogEntry& entry);

}  // namespace terse::proxy
