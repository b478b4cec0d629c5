// A validating scanner that accepts exactly what nlohmann's parser accepts (tests/json
// compare the two on many texts), iterative so that deep nesting cannot overflow the stack.
//
// The gateway runs it on every chunk it relays, texts of a few hundred bytes, so it is built for
// speed on those. All its state stays in registers: positions are pointers, each step returning
// where it stopped (null on an error); the open containers are bits of a word; the steps on the
// way are always inlined (called, they would take the state by reference, and the compiler would
// keep it in memory: twice as slow). Whitespace is looked for only where a token is not found, and
// strings end where a bit mask of the text's special bytes says (see SpecialBytes).
#include "json/scan.h"

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "json/bytes.h"

namespace terse::json {
namespace {

using bytes::AtToken;
using bytes::Escape;
using bytes::IsDigit;
using bytes::IsWs;
using bytes::Number;
using bytes::SkipWs;
using bytes::SpecialBytes;
using bytes::Utf8;
using bytes::Word;

using OnMember = absl::FunctionRef<void(std::string_view key, std::string_view value)>;

// ---- Checking.

// From just after the opening quote: past the closing one, or null.
[[gnu::always_inline]] inline const char* String(const char* p, const char* end,
                                                 SpecialBytes& special) {
  while (true) {
    // The bits are exact: `c` is '"', '\\', a control character or starts a non-ASCII one.
    p = special.Next(p);
    if (p == end) return nullptr;
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"') return p + 1;
    if (c == '\\') {
      p = Escape(p, end);
    } else if (c < 0x20) {
      return nullptr;
    } else {
      p = Utf8(p, end);
    }
    if (p == nullptr) return nullptr;
  }
}

// The value at `p` (not at the end) when it is no container: past it, or null.
[[gnu::always_inline]] inline const char* Scalar(const char* p, const char* end,
                                                 SpecialBytes& special) {
  switch (*p) {
    case '"':
      return String(p + 1, end, special);
    case 't':
      return Word(p, end, "true");
    case 'f':
      return Word(p, end, "false");
    case 'n':
      return Word(p, end, "null");
    default:
      return *p == '-' || IsDigit(*p) ? Number(p, end) : nullptr;
  }
}

// `"key" :`, whitespace allowed before each part: past the colon, or null. `key` is set to the
// key as written between its quotes.
[[gnu::always_inline]] inline const char* Key(const char* p, const char* end, SpecialBytes& special,
                                              std::string_view& key) {
  if (!AtToken(p, end) || *p != '"') return nullptr;
  const char* const key_end = String(p + 1, end, special);
  if (key_end == nullptr) return nullptr;
  key = std::string_view(p + 1, static_cast<size_t>(key_end - p - 2));
  p = key_end;
  if (!AtToken(p, end) || *p != ':') return nullptr;
  return p + 1;
}

// The scanner itself; `on_member`, when kReport, is told each top-level member. A refusal for
// nesting deeper than kMaxJsonDepth sets `*too_deep` when it is given.
template <bool kReport>
bool Validate(std::string_view text, const OnMember* on_member, bool* too_deep = nullptr) {
  const char* p = text.data();
  const char* const end = p + text.size();
  if (p != end && static_cast<unsigned char>(*p) == 0xEF) {
    if (end - p < 3 || static_cast<unsigned char>(p[1]) != 0xBB ||
        static_cast<unsigned char>(p[2]) != 0xBF) {
      return false;
    }
    p += 3;
  }
  // The open containers: how many, and whether each is an object (1) or an array (0). The
  // innermost up to 64 are the bits of `inner`, the innermost the lowest; each 64 further out are
  // a word of `outer`, which only a text nested deeper than 64 levels uses.
  size_t depth = 0;
  uint64_t inner = 0;
  std::vector<uint64_t> outer;
  SpecialBytes special(p, end);
  // The top-level member being checked, when kReport, and the key of the latest member.
  std::string_view key;
  const char* value_start = nullptr;
  std::string_view member_key;
  while (true) {
    // A value is expected here.
    if (!AtToken(p, end)) return false;
    if (kReport && depth == 1) value_start = p;
    const char c = *p;
    if (c == '{' || c == '[') {
      const bool object = c == '{';
      ++p;
      if (!AtToken(p, end)) return false;
      if (*p == (object ? '}' : ']')) {
        ++p;  // empty container: a complete value
      } else {
        if (depth == kMaxJsonDepth) {
          if (too_deep != nullptr) *too_deep = true;
          return false;
        }
        if (depth != 0 && depth % 64 == 0) {
          outer.push_back(inner);
          inner = 0;
        }
        inner = inner << 1 | static_cast<uint64_t>(object);
        ++depth;
        if (object) {
          p = Key(p, end, special, member_key);
          if (p == nullptr) return false;
          if (kReport && depth == 1) key = member_key;
        }
        continue;
      }
    } else {
      p = Scalar(p, end, special);
      if (p == nullptr) return false;
    }
    // After a complete value: close containers, or go on to the next member or element.
    while (true) {
      // Back in the top-level object: the value of one of its members is complete (once for each,
      // as a ',' or a '}' must follow).
      if (kReport && depth == 1 && (inner & 1) != 0) {
        (*on_member)(key, std::string_view(value_start, static_cast<size_t>(p - value_start)));
      }
      if (depth == 0) return SkipWs(p, end) == end;
      if (!AtToken(p, end)) return false;
      const bool object = (inner & 1) != 0;
      const char d = *p++;
      if (d == ',') {
        if (object) {
          p = Key(p, end, special, member_key);
          if (p == nullptr) return false;
          if (kReport && depth == 1) key = member_key;
        }
        break;
      }
      if (d != (object ? '}' : ']')) return false;
      inner >>= 1;
      --depth;
      if (depth != 0 && depth % 64 == 0) {
        inner = outer.back();
        outer.pop_back();
      }
    }
  }
}

// ---- Walking text that is known to be valid.

size_t SkipWs(std::string_view s, size_t p) {
  while (p < s.size() && IsWs(s[p])) ++p;
  return p;
}

// The end of the string starting at the quote `p`.
size_t SkipString(std::string_view s, size_t p) {
  ++p;
  while (p < s.size()) {
    if (s[p] == '\\') {
      p += 2;
    } else if (s[p] == '"') {
      return p + 1;
    } else {
      ++p;
    }
  }
  return s.size();
}

// The end of the value starting at `p`.
size_t SkipValue(std::string_view s, size_t p) {
  if (p >= s.size()) return s.size();
  if (s[p] == '"') return SkipString(s, p);
  if (s[p] == '{' || s[p] == '[') {
    int depth = 0;
    while (p < s.size()) {
      const char c = s[p];
      if (c == '"') {
        p = SkipString(s, p);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
    return s.size();
  }
  while (p < s.size() && !IsWs(s[p]) && s[p] != ',' && s[p] != '}' && s[p] != ']') ++p;
  return p;
}

// The start of the top-level value, past a byte order mark and whitespace.
size_t Start(std::string_view s) {
  size_t p = s.size() >= 3 && static_cast<unsigned char>(s[0]) == 0xEF ? 3 : 0;
  return SkipWs(s, p);
}

}  // namespace

bool IsValidJson(std::string_view text) { return Validate<false>(text, nullptr); }

bool NestsTooDeep(std::string_view text) {
  bool too_deep = false;
  Validate<false>(text, nullptr, &too_deep);
  return too_deep;
}

bool IsValidJson(std::string_view text,
                 absl::FunctionRef<void(std::string_view key, std::string_view value)> on_member) {
  return Validate<true>(text, &on_member);
}

bool ForEachMember(std::string_view s,
                   absl::FunctionRef<void(std::string_view key, std::string_view value)> fn) {
  size_t p = Start(s);
  if (p >= s.size() || s[p] != '{') return false;
  p = SkipWs(s, p + 1);
  while (p < s.size() && s[p] == '"') {
    const size_t key_end = SkipString(s, p);
    std::string_view key = s.substr(p + 1, key_end - p - 2);
    p = SkipWs(s, key_end);
    if (p >= s.size() || s[p] != ':') return true;
    p = SkipWs(s, p + 1);
    const size_t value_end = SkipValue(s, p);
    fn(key, s.substr(p, value_end - p));
    p = SkipWs(s, value_end);
    if (p < s.size() && s[p] == ',') p = SkipWs(s, p + 1);
  }
  return true;
}

bool ForEachElement(std::string_view s, absl::FunctionRef<void(std::string_view value)> fn) {
  size_t p = Start(s);
  if (p >= s.size() || s[p] != '[') return false;
  p = SkipWs(s, p + 1);
  while (p < s.size() && s[p] != ']') {
    const size_t value_end = SkipValue(s, p);
    fn(s.substr(p, value_end - p));
    p = SkipWs(s, value_end);
    if (p < s.size() && s[p] == ',') {
      p = SkipWs(s, p + 1);
    } else {
      break;
    }
  }
  return true;
}

}  // namespace terse::json
