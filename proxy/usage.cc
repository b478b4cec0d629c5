// Token counts read off OpenAI-shaped answers, from their text when it is at hand.
#include "proxy/usage.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <string_view>
#include <system_error>

#include "base/json.h"
#include "json/scan.h"

namespace terse::proxy {
namespace {

// A token count as an upstream wrote it: a non-negative integer, or a number with a fraction
// (some servers write 20.0). Anything else counts as 0.
uint64_t TokenCount(double value) {
  return std::isfinite(value) && value >= 0 && value < 1.8e19 ? static_cast<uint64_t>(value) : 0;
}
uint64_t TokenCount(std::string_view text) {
  const char* end = text.data() + text.size();
  uint64_t count = 0;
  auto [at, error] = std::from_chars(text.data(), end, count);
  if (error == std::errc() && at == end) return count;
  double value = 0;
  auto [at_double, error_double] = std::from_chars(text.data(), end, value);
  return error_double == std::errc() && at_double == end ? TokenCount(value) : 0;
}
uint64_t TokenCount(const Json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  // nlohmann keeps an int built in C++ (the echo provider's counts) as a signed integer.
  if (value.is_number_integer()) {
    return static_cast<uint64_t>(std::max<int64_t>(0, value.get<int64_t>()));
  }
  if (value.is_number_float()) return TokenCount(value.get<double>());
  return 0;
}

}  // namespace

bool UsageReader::Read(const json::WireJson& message) {
  std::optional<std::string_view> text;
  if (message.FindMemberText("usage", &text)) {
    if (!text.has_value()) return false;
    if (text->empty() || text->front() != '{') return true;
    UsageRecord record;
    json::ForEachMember(*text, [&](std::string_view key, std::string_view value) {
      if (key == "prompt_tokens") record.prompt_tokens = TokenCount(value);
      if (key == "completion_tokens") record.completion_tokens = TokenCount(value);
      if (key == "prompt_tokens_details" && !value.empty() && value.front() == '{') {
        json::ForEachMember(value, [&](std::string_view detail, std::string_view count) {
          if (detail == "cached_tokens") record.cached_tokens = TokenCount(count);
        });
      }
    });
    record_ = record;
    return true;
  }
  std::optional<Json> member = message.Member("usage");
  if (!member.has_value()) return false;
  if (!member->is_object()) return true;
  auto count = [&](const char* key) {
    auto it = member->find(key);
    return it == member->end() ? uint64_t{0} : TokenCount(*it);
  };
  record_ = UsageRecord{.prompt_tokens = count("prompt_tokens"),
                        .completion_tokens = count("completion_tokens")};
  auto details = member->find("prompt_tokens_details");
  if (details != member->end() && details->is_object()) {
    auto cached = details->find("cached_tokens");
    if (cached != details->end()) record_->cached_tokens = TokenCount(*cached);
  }
  return true;
}

}  // namespace terse::proxy
