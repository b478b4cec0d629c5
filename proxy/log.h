// Logging of the terse process: one JSON object per line on stderr, so that log shippers and the
// tests can parse it. Secrets never go through here (callers pass no keys).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/json.h"

namespace terse::proxy {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug" | "info" | "warn" | "error" (empty: info). kInvalidArgument for anything else.
absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name);

// Process-wide threshold; lines below it are dropped. Default kInfo. Thread-safe.
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Writes `fields` as one line, prefixed with "ts" (RFC 3339, UTC) and "level". Thread-safe: each
// line reaches stderr in one write, so concurrent lines never interleave. `always` writes the
// line whatever the threshold (the startup line, which tools wait for).
void LogJson(LogLevel level, Json fields, bool always = false);

// A plain message: {"ts", "level", "msg"}.
void Log(LogLevel level, std::string_view message);

// Request ids tie a request's log line to its response (x-request-id, gRPC metadata).
// A new one: "req_" and 32 random hex digits. Thread-safe.
std::string NewRequestId();
// Whether a client's own id may stand as the request id: short, printable text, as it goes into
// logs and headers.
bool AcceptableRequestId(std::string_view id);

}  // namespace terse::proxy
