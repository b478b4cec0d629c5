// Lazy conversions between the two forms of a WireJson.
#include "json/wire_json.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "json/codec.h"
#include "json/scan.h"

namespace terse::json {

const std::string& WireJson::text() const {
  if (const std::string* text = Text()) return *text;
  text_ = DumpJson(*value_);
  return *text_;
}

std::shared_ptr<const std::string> WireJson::SharedText() const {
  if (!shared_text_) {
    shared_text_ =
        std::make_shared<const std::string>(text_ ? std::move(*text_) : DumpJson(*value_));
    text_.reset();
  }
  return shared_text_;
}

std::string& WireJson::EditableText() {
  if (shared_text_) {
    text_ = *shared_text_;
    shared_text_.reset();
  }
  return *text_;
}

const Json& WireJson::json() const {
  if (!value_.has_value()) {
    std::optional<Json> parsed = ParseJson(*Text());
    value_ = parsed.has_value() ? *std::move(parsed) : Json();
  }
  return *value_;
}

std::optional<WireJson> WireJson::FromUncheckedText(std::string text) {
  WireJson out;
  out.value_.reset();
  out.members_.reserve(8);  // one allocation for the usual few
  out.text_ = std::move(text);
  const bool valid = IsValidJson(*out.text_, [&](std::string_view key, std::string_view value) {
    out.NoteMember(key, value);
  });
  if (!valid) return std::nullopt;
  out.members_noted_ = true;
  return out;
}

WireJson WireJson::FromParsedText(std::string text, Json value) {
  WireJson out(std::move(value));
  out.text_ = std::move(text);
  return out;
}

void WireJson::NoteMember(std::string_view key, std::string_view value) {
  const char* base = Text()->data();
  members_.push_back({static_cast<size_t>(key.data() - base), key.size(),
                      static_cast<size_t>(value.data() - base), value.size()});
  // Keys are short: a loop beats a call of memchr.
  if (std::any_of(key.begin(), key.end(), [](char c) { return c == '\\'; })) {
    escaped_key_ = true;
  }
}

bool WireJson::NoteMembers() {
  if (members_noted_) return true;
  members_.clear();
  members_.reserve(8);  // one allocation for the usual few
  escaped_key_ = false;
  // The text is valid JSON: as parsed into the value, or serialized from it.
  if (!ForEachMember(
          *Text(), [&](std::string_view key, std::string_view value) { NoteMember(key, value); })) {
    members_.clear();
    return false;
  }
  members_noted_ = true;
  return true;
}

std::optional<size_t> WireJson::OnlyMember(std::string_view key) const {
  if (escaped_key_) return std::nullopt;
  size_t found = kNoMember;
  for (size_t i = 0; i < members_.size(); ++i) {
    const MemberSpan& span = members_[i];
    if (span.key_size == key.size() &&
        std::memcmp(Text()->data() + span.key_at, key.data(), key.size()) == 0) {
      if (found != kNoMember) return std::nullopt;  // which one a parser keeps is its choice
      found = i;
    }
  }
  return found;
}

void WireJson::Splice(size_t at, size_t size, std::string_view with) {
  EditableText().replace(at, size, with);
  const ptrdiff_t moved = static_cast<ptrdiff_t>(with.size()) - static_cast<ptrdiff_t>(size);
  for (MemberSpan& span : members_) {
    if (span.key_at < at + size) continue;
    span.key_at += moved;
    span.value_at += moved;
  }
}

void WireJson::SetMember(std::string_view key, Json value) {
  std::optional<size_t> index;  // the member's in members_, kNoMember for a new one
  if (value_.has_value()) {
    auto it = value_->find(key);
    if (it != value_->end() && *it == value) return;
    // A member the value lacks is in the text under no spelling: no need to note where the
    // others are to add it.
    if (it == value_->end() && has_text() && !members_noted_) index = kNoMember;
  } else if (std::optional<Json> current = Member(key); current.has_value() && *current == value) {
    return;
  }
  // terse's own keys need no escapes; any other is left to the serializer.
  const bool plain_key = std::all_of(key.begin(), key.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (plain_key && !index.has_value() && has_text() && NoteMembers()) {
    index = OnlyMember(key);
  }
  if (!plain_key || !index.has_value()) {
    mutable_json()[std::string(key)] = std::move(value);
    return;
  }
  if (*index != kNoMember) {
    std::string encoded;
    AppendJson(value, encoded);
    MemberSpan& span = members_[*index];
    const size_t old_size = span.value_size;
    span.value_size = encoded.size();
    Splice(span.value_at, old_size, encoded);
  } else {
    // `"key":value` last, just before the closing brace: only whitespace follows that.
    const bool first = members_noted_ ? members_.empty() : value_->empty();
    const size_t brace = Text()->rfind('}');
    std::string member = first ? "\"" : ",\"";
    const size_t key_at = brace + member.size();
    member.append(key).append("\":");
    const size_t value_offset = member.size();
    AppendJson(value, member);
    Splice(brace, 0, member);
    if (members_noted_) {
      members_.push_back({key_at, key.size(), brace + value_offset, member.size() - value_offset});
    }
  }
  if (value_.has_value()) (*value_)[std::string(key)] = std::move(value);
}

void WireJson::EraseMember(std::string_view key) {
  if (value_.has_value() && value_->find(key) == value_->end()) return;
  std::optional<size_t> index;
  if (has_text() && NoteMembers()) index = OnlyMember(key);
  if (!index.has_value()) {
    mutable_json().erase(std::string(key));
    return;
  }
  if (*index == kNoMember) return;
  // The member with the comma that joins it to a neighbour: the one before it, else after it.
  const size_t i = *index;
  auto value_end = [&](size_t k) { return members_[k].value_at + members_[k].value_size; };
  size_t from = members_[i].key_at - 1;  // its opening quote
  size_t to = value_end(i);
  if (i > 0) {
    from = value_end(i - 1);
  } else if (i + 1 < members_.size()) {
    to = members_[i + 1].key_at - 1;
  }
  members_.erase(members_.begin() + static_cast<ptrdiff_t>(i));
  Splice(from, to - from, "");
  if (value_.has_value()) value_->erase(std::string(key));
}

void WireJson::SetMembers(Json object) {
  if (!object.is_object() || !json().is_object()) {
    *this = WireJson(std::move(object));
    return;
  }
  // Only the members that differ are edited: SetMember and EraseMember each look their key up by
  // walking the members, and so would `contains`, which for every member of a request of many
  // (a client's own fields) would cost n^2 comparisons. The two objects are matched through
  // indexes of their keys instead.
  absl::flat_hash_map<std::string_view, const Json*> now;
  for (const auto& [key, value] : value_->items()) now.emplace(key, &value);
  absl::flat_hash_set<std::string_view> next;
  std::vector<std::pair<const std::string*, Json*>> changed;  // in `object`'s order
  for (auto& [key, value] : object.get_ref<Json::object_t&>()) {
    next.insert(key);
    auto it = now.find(key);
    if (it == now.end() || *it->second != value) changed.emplace_back(&key, &value);
  }
  std::vector<std::string> gone;
  for (const auto& [key, value] : value_->items()) {
    if (!next.contains(key)) gone.push_back(key);
  }
  for (const std::string& key : gone) EraseMember(key);
  for (auto [key, value] : changed) SetMember(*key, std::move(*value));
}

Json& WireJson::mutable_json() {
  json();
  text_.reset();
  shared_text_.reset();
  members_.clear();
  members_noted_ = false;
  escaped_key_ = false;
  return *value_;
}

bool WireJson::FindMemberText(std::string_view key, std::optional<std::string_view>* member) const {
  member->reset();
  if (!members_noted_ || escaped_key_) return false;
  const char* const text = Text()->data();
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

}  // namespace terse::json
