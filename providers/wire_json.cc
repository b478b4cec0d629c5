// Lazy conversions between the two forms of a WireJson.
#include "providers/wire_json.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "providers/json_scan.h"
#include "providers/json_text.h"

namespace terse::providers {

const std::string& WireJson::text() const {
  if (!text_.has_value()) {
    text_ = DumpJson(*value_);
  }
  return *text_;
}

const Json& WireJson::json() const {
  if (!value_.has_value()) {
    std::optional<Json> parsed = ParseJson(*text_);
    value_ = parsed.has_value() ? *std::move(parsed) : Json();
  }
  return *value_;
}

std::optional<WireJson> WireJson::FromUncheckedText(std::string text) {
  WireJson out;
  out.value_.reset();
  const char* base = text.data();
  out.members_.reserve(8);  // one allocation for the usual few
  const bool valid = IsValidJson(text, [&](std::string_view key, std::string_view value) {
    out.members_.push_back({static_cast<size_t>(key.data() - base), key.size(),
                            static_cast<size_t>(value.data() - base), value.size()});
    // Keys are short: a loop beats a call of memchr.
    if (std::any_of(key.begin(), key.end(), [](char c) { return c == '\\'; })) {
      out.escaped_key_ = true;
    }
  });
  if (!valid) return std::nullopt;
  out.members_noted_ = true;
  out.text_ = std::move(text);  // the offsets hold in the moved string
  return out;
}

Json& WireJson::mutable_json() {
  json();
  text_.reset();
  members_.clear();
  members_noted_ = false;
  escaped_key_ = false;
  return *value_;
}

bool WireJson::FindMemberText(std::string_view key, std::optional<std::string_view>* member) const {
  member->reset();
  if (!members_noted_ || escaped_key_) return false;
  const char* const text = text_->data();
  for (const MemberSpan& span : members_) {
    // Most keys differ from `key` in size or first byte: no call of memcmp for them.
    if (span.key_size == key.size() && (key.empty() || text[span.key_at] == key.front()) &&
        std::memcmp(text + span.key_at, key.data(), key.size()) == 0) {
      *member = std::string_view(text + span.value_at, span.value_size);  // the last duplicate wins
    }
  }
  return true;
}

std::optional<Json> WireJson::Member(std::string_view key) const {
  if (!value_.has_value()) {
    std::optional<std::string_view> found;
    if (FindMemberText(key, &found)) {
      if (!found.has_value()) return std::nullopt;
      return ParseJson(*found);
    }
  }
  const Json& object = json();
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  return *it;
}

}  // namespace terse::providers
