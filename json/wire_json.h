// A JSON answer (a whole response or one stream chunk) that keeps the text it arrived in, so that
// a pass-through relays the upstream's bytes without parsing and re-encoding them; the parsed
// value is built only for whoever needs to look inside (usage accounting, the gRPC face).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"

namespace terse::json {

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
  // `value` with the text it was parsed from (the caller parsed `text` into `value`): a request
  // body, relayed as the client wrote it while nothing changes it, and as it wrote it but for the
  // members SetMember and EraseMember changed when they do.
  static WireJson FromParsedText(std::string text, Json value);

  // The JSON text: as received while the value is unchanged, else the value serialized compactly
  // (invalid UTF-8 replaced by U+FFFD).
  const std::string& text() const;
  // The same text, to be held beyond this WireJson (an attempt's request body, while the call
  // keeps the request for the next one): handed out once and shared from then on, not copied. An
  // edit afterwards changes a copy. The first call moves the text: a reference text() returned
  // before it no longer holds it.
  std::shared_ptr<const std::string> SharedText() const;
  // The parsed value (parsed on first use; the text is kept).
  const Json& json() const;
  // The value, to change: the received text is dropped and text() serializes the value afterwards.
  Json& mutable_json();

  // Sets the top-level member `key` of an object to `value` (a new member goes last), or removes
  // it (nothing when there is none), in the value and, while the text is at hand, in the text:
  // only that member's text is rewritten, the rest is kept byte for byte. Nothing changes when
  // the member already has the value. When the text cannot be edited in place (a key spelled with
  // escapes, `key` more than once, a `key` that needs escapes), it is dropped and text()
  // serializes the value afterwards.
  // Not for a WireJson that is no object.
  void SetMember(std::string_view key, Json value);
  void EraseMember(std::string_view key);
  // Makes the value `object`, member by member as above: its members are set, the others
  // removed, and the text of each member it leaves as it was is kept. A new member goes last; a
  // value that is no object, or a WireJson that holds none, is taken whole.
  void SetMembers(Json object);

  // The top-level member `key` of an object, or nullopt when there is none (or no object). From
  // the text, only that member is parsed.
  std::optional<Json> Member(std::string_view key) const;
  // Looks up the top-level member `key` in the text as received, parsing nothing. True when that
  // settles it, with `*member` set to the member's text when there is one; false when the text's
  // members were not noted (the value is at hand: ask Member) or a key spelled with escapes leaves
  // the answer to the parser.
  bool FindMemberText(std::string_view key, std::optional<std::string_view>* member) const;

  // True when the text is at hand, so text() costs nothing: the text as received (while the value
  // is unchanged), or a serialization text() made already.
  bool has_text() const { return Text() != nullptr; }

 private:
  static constexpr size_t kNoMember = SIZE_MAX;  // OnlyMember: `key` is no member

  // Where a top-level member's key (without quotes) and value are in text_.
  struct MemberSpan {
    size_t key_at, key_size, value_at, value_size;
  };

  // The members of text_ noted when FromUncheckedText did not note them; false when text_ is no
  // object (or absent).
  bool NoteMembers();
  void NoteMember(std::string_view key, std::string_view value);
  // The index in members_ of the one member `key`: kNoMember when there is none, nullopt when
  // the text cannot say (escaped keys, duplicates).
  std::optional<size_t> OnlyMember(std::string_view key) const;
  // Replaces text_'s bytes [at, at + size) by `with`, moving the spans of the members after them.
  void Splice(size_t at, size_t size, std::string_view with);

  // The text when at hand, owned or shared, or null.
  const std::string* Text() const {
    return shared_text_ ? shared_text_.get() : text_ ? &*text_ : nullptr;
  }
  // The text at hand, to edit: a shared one is copied first.
  std::string& EditableText();

  // The text is in one of these, or in neither: owned, or shared once SharedText handed it out.
  mutable std::optional<std::string> text_;
  mutable std::shared_ptr<const std::string> shared_text_;
  mutable std::optional<Json> value_;
  // The top-level members of text_ in order, when noted (`members_noted_`): by FromUncheckedText,
  // or by the first edit of a text; the edits keep them up to date.
  std::vector<MemberSpan> members_;
  bool members_noted_ = false;
  bool escaped_key_ = false;  // a noted key is spelled with escapes: only the parser can read it
};

}  // namespace terse::json
