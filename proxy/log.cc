// One JSON line per log record on stderr.
#include "proxy/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "json/codec.h"

namespace terse::proxy {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

}  // namespace

absl::StatusOr<LogLevel> ParseLogLevel(std::string_view name) {
  if (name.empty() || name == "info") return LogLevel::kInfo;
  if (name == "debug") return LogLevel::kDebug;
  if (name == "warn" || name == "warning") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return absl::InvalidArgumentError("unknown log level \"" + std::string(name) +
                                    "\" (debug, info, warn or error)");
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void LogJson(LogLevel level, Json fields, bool always) {
  if (!always && !LogEnabled(level)) return;
  Json line = Json::object();
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = LevelName(level);
  if (fields.is_object()) {
    for (auto it = fields.begin(); it != fields.end(); ++it) line[it.key()] = std::move(it.value());
  }
  // Replace invalid UTF-8 rather than throwing: a log line must never take the process down.
  std::string text = json::DumpJson(line);
  text += '\n';
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void Log(LogLevel level, std::string_view message) {
  LogJson(level, Json{{"msg", std::string(message)}});
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  char id[4 + 32] = {'r', 'e', 'q', '_'};
  char* out = id + 4;
  for (int i = 0; i < 2; ++i) {
    uint64_t bits = rng();
    for (int j = 0; j < 16; ++j, bits >>= 4) *out++ = kHex[bits & 0xf];
  }
  return std::string(id, sizeof id);
}

bool AcceptableRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

}  // namespace terse::proxy
