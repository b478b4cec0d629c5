// The properties of the JSON codec (json/): its verdicts and values against nlohmann's, and a
// WireJson's edits against the same edits of the value.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "json/codec.h"
#include "json/scan.h"
#include "json/wire_json.h"
#include "tests/fuzz/fuzz_targets.h"

namespace terse::fuzz {

std::string CheckJsonText(std::string_view text) {
  const bool valid = json::IsValidJson(text);
  size_t reported = 0;
  if (json::IsValidJson(text, [&](std::string_view, std::string_view) { ++reported; }) != valid) {
    return "IsValidJson with on_member disagrees with IsValidJson";
  }
  const std::optional<Json> ours = json::ParseJson(text);
  if (ours.has_value() != valid) return "ParseJson disagrees with IsValidJson";
  if (json::NestsTooDeep(text)) return valid ? "accepted text nested too deep" : "";

  const Json theirs = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  // nlohmann takes a NUL byte between tokens for the end of the text ("{} \0junk" is {}); terse
  // holds to RFC 8259, which has no such rule, and refuses the text.
  const bool nul = text.find('\0') != std::string_view::npos;
  if (theirs.is_discarded() == valid && !(nul && !valid)) {
    return valid ? "accepted what nlohmann refuses" : "refused what nlohmann accepts";
  }
  if (!valid) return "";
  const std::string dumped = theirs.dump(-1, ' ', false, Json::error_handler_t::replace);
  const std::string ours_dumped = json::DumpJson(*ours);
  if (ours_dumped != dumped) return "values differ: " + ours_dumped + " against " + dumped;
  const std::optional<Json> again = json::ParseJson(dumped);
  if (!again.has_value() || json::DumpJson(*again) != dumped) {
    return "a dumped value does not parse back to itself: " + dumped;
  }

  bool parts_valid = true;
  size_t parts = 0;
  if (ours->is_object()) {
    json::ForEachMember(text, [&](std::string_view, std::string_view value) {
      ++parts;
      parts_valid = parts_valid && json::IsValidJson(value);
    });
    // A key written twice is one member of the value but two of the text.
    if (parts < ours->size() || parts != reported) return "ForEachMember missed members";
  } else if (ours->is_array()) {
    json::ForEachElement(text, [&](std::string_view value) {
      ++parts;
      parts_valid = parts_valid && json::IsValidJson(value);
    });
    if (parts != ours->size()) return "ForEachElement missed elements";
  }
  if (!parts_valid) return "a member or element handed out is not valid JSON";
  return "";
}

std::string CheckWireJson(std::string_view input) {
  constexpr size_t kScript = 6;  // bytes: one edit each
  if (input.size() < kScript) return "";
  const std::string_view script = input.substr(0, kScript);
  const std::string text(input.substr(kScript));
  std::optional<json::WireJson> checked = json::WireJson::FromUncheckedText(text);
  const std::optional<Json> parsed = json::ParseJson(text);
  if (checked.has_value() != parsed.has_value())
    return "FromUncheckedText disagrees with ParseJson";
  if (!parsed.has_value() || !parsed->is_object()) return "";
  json::WireJson given = json::WireJson::FromParsedText(text, *parsed);
  Json expected = *parsed;

  // Keys of every kind: plain, one that needs escapes, non-ASCII, empty; values of every type.
  const std::string_view keys[] = {"a", "model", "stream", "b\"c", "\u00e9", "", "messages", "x"};
  const Json values[] = {1,    "s", Json::object(),  Json::array({1, "two"}), nullptr,
                         true, 2.5, Json{{"k", "v"}}};
  std::string done;
  for (const char op : script) {
    const uint8_t b = static_cast<uint8_t>(op);
    const std::string key(keys[b % 8]);
    const Json& value = values[(b >> 3) % 8];
    switch (b >> 6) {
      case 0:
      case 1:
        expected[key] = value;
        for (json::WireJson* wire : {&*checked, &given}) wire->SetMember(key, value);
        absl::StrAppend(&done, " set ", key, "=", value.dump());
        break;
      case 2:
        expected.erase(key);
        for (json::WireJson* wire : {&*checked, &given}) wire->EraseMember(key);
        absl::StrAppend(&done, " erase ", key);
        break;
      default: {
        Json next = expected;  // one member set, another removed
        next[key] = value;
        next.erase(std::string(keys[(b + 3) % 8]));
        expected = next;
        for (json::WireJson* wire : {&*checked, &given}) wire->SetMembers(next);
        absl::StrAppend(&done, " set members ", next.dump());
        break;
      }
    }
    // Compared as nlohmann compares (1 equals 1.0): setting a member to a value equal to the
    // one it has leaves its text as written.
    for (json::WireJson* wire : {&*checked, &given}) {
      const std::optional<Json> reread = json::ParseJson(wire->text());
      if (!reread.has_value()) return "an edited text is not JSON:" + done + " -> " + wire->text();
      if (*reread != expected) {
        return "an edited text differs from the edited value:" + done + " -> " + wire->text();
      }
      if (wire->json() != expected) return "an edited value differs:" + done;
      std::optional<std::string_view> member;
      if (wire->FindMemberText(key, &member)) {
        if (member.has_value() != expected.contains(key)) return "FindMemberText:" + done;
        if (member.has_value()) {
          const std::optional<Json> member_value = json::ParseJson(*member);
          if (!member_value.has_value() || *member_value != expected[key]) {
            return "FindMemberText's text is not the member's value:" + done;
          }
        }
      }
    }
  }
  return "";
}

}  // namespace terse::fuzz
