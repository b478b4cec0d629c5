// Lazy conversions between the two forms of a WireJson.
#include "providers/wire_json.h"

#include <utility>

#include "providers/json_scan.h"

namespace terse::providers {

WireJson WireJson::FromText(std::string text) {
  WireJson out;
  out.text_ = std::move(text);
  out.value_.reset();
  return out;
}

const std::string& WireJson::text() const {
  if (!text_.has_value()) {
    text_ = value_->dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  return *text_;
}

const Json& WireJson::json() const {
  if (!value_.has_value()) {
    value_ = Json::parse(*text_, nullptr, /*allow_exceptions=*/false);
    if (value_->is_discarded()) value_ = Json();
  }
  return *value_;
}

std::optional<WireJson> WireJson::FromUncheckedText(std::string text) {
  WireJson out;
  out.value_.reset();
  const char* base = text.data();
  const bool valid = IsValidJson(text, [&](std::string_view key, std::string_view value) {
    out.members_.push_back({static_cast<size_t>(key.data() - base), key.size(),
                            static_cast<size_t>(value.data() - base), value.size()});
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
  return *value_;
}

namespace {

// Looks for the top-level member `key` in `text` without parsing. False when a key spelled with
// escapes leaves the answer to the parser; else true, with `*found` set when the member is there.
bool ScanForMember(const std::string& text, std::string_view key,
                   std::optional<std::string_view>* found) {
  bool escaped = false;
  ForEachMember(text, [&](std::string_view k, std::string_view v) {
    if (k.find('\\') != std::string_view::npos) escaped = true;
    if (k == key) *found = v;  // the last of duplicates wins, as in the parser
  });
  return !escaped;
}

}  // namespace

bool WireJson::FindMemberText(std::string_view key,
                              std::optional<std::string_view>* member) const {
  member->reset();
  if (!text_.has_value()) return false;
  if (!members_noted_) return ScanForMember(*text_, key, member);
  const std::string_view text = *text_;
  for (const MemberSpan& span : members_) {
    const std::string_view k = text.substr(span.key_at, span.key_size);
    if (k.find('\\') != std::string_view::npos) {
      member->reset();
      return false;  // only the parser knows what it spells
    }
    if (k == key) *member = text.substr(span.value_at, span.value_size);  // the last one wins
  }
  return true;
}

std::optional<Json> WireJson::Member(std::string_view key) const {
  if (!value_.has_value()) {
    std::optional<std::string_view> found;
    if (FindMemberText(key, &found)) {
      if (!found.has_value()) return std::nullopt;
      Json member = Json::parse(*found, nullptr, /*allow_exceptions=*/false);
      if (member.is_discarded()) return std::nullopt;
      return member;
    }
  }
  const Json& object = json();
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end()) return std::nullopt;
  return *it;
}

bool WireJson::MayContainKey(std::string_view key) const {
  if (!text_.has_value()) return true;
  const std::string& t = *text_;
  // A key spelled with \u escapes would not match literally: such a text may hold any key.
  if (t.find("\\u") != std::string::npos) return true;
  for (size_t at = t.find(key); at != std::string::npos; at = t.find(key, at + 1)) {
    if (at > 0 && t[at - 1] == '"' && at + key.size() < t.size() && t[at + key.size()] == '"') {
      return true;
    }
  }
  return false;
}

}  // namespace terse::providers
