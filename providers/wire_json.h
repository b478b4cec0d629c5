// A JSON answer (a whole response or one stream chunk) that keeps the text it arrived in, so that
// a pass-through relays the upstream's bytes without parsing and re-encoding them; the parsed
// value is built only for whoever needs to look inside (usage accounting, the gRPC face).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"

namespace terse::providers {

// Not thread-safe (it parses and serializes lazily, even through const accessors); it moves along
// one call's path.
class WireJson {
 public:
  WireJson() : value_(Json()) {}  // JSON null
  // A value terse built or changed; text() serializes it compactly.
  explicit WireJson(Json value) : value_(std::move(value)) {}
  // Checks `text` (exactly what the parser accepts) and wraps it, noting where its top-level
  // members are as it goes, so that member look-ups need no second pass; nullopt when invalid.
  static std::optional<WireJson> FromUncheckedText(std::string text);

  // The JSON text: as received while the value is unchanged, else the value serialized compactly
  // (invalid UTF-8 replaced by U+FFFD).
  const std::string& text() const;
  // The parsed value (parsed on first use; the text is kept).
  const Json& json() const;
  // The value, to change: the received text is dropped and text() serializes the value afterwards.
  Json& mutable_json();

  // The top-level member `key` of an object, or nullopt when there is none (or no object). From
  // the text, only that member is parsed.
  std::optional<Json> Member(std::string_view key) const;
  // Looks up the top-level member `key` in the text as received, parsing nothing. True when that
  // settles it, with `*member` set to the member's text when there is one; false when the text
  // is not the one received (the value is at hand: ask Member) or a key spelled with escapes
  // leaves the answer to the parser.
  bool FindMemberText(std::string_view key, std::optional<std::string_view>* member) const;

  // True when the text is at hand, so text() costs nothing: the text as received (while the value
  // is unchanged), or a serialization text() made already.
  bool has_text() const { return text_.has_value(); }

 private:
  // Where a top-level member's key (without quotes) and value are in text_.
  struct MemberSpan {
    size_t key_at, key_size, value_at, value_size;
  };

  mutable std::optional<std::string> text_;
  mutable std::optional<Json> value_;
  // The top-level members of text_ in order, while text_ is the text FromUncheckedText received
  // (`members_noted_`).
  std::vector<MemberSpan> members_;
  bool members_noted_ = false;
  bool escaped_key_ = false;  // a noted key is spelled with escapes: only the parser can read it
};

}  // namespace terse::providers
