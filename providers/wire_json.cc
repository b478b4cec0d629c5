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

Json& WireJson::mutable_json() {
  json();
  text_.reset();
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
  return text_.has_value() && ScanForMember(*text_, key, member);
}

std::optional<Json> WireJson::Member(std::string_view key) const {
  if (!value_.has_value()) {
    std::optional<std::string_view> found;
    if (ScanForMember(*text_, key, &found)) {
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
