// A validating scanner that accepts exactly what nlohmann's parser accepts (tests/providers
// compare the two on many texts), iterative so that deep nesting cannot overflow the stack.
//
// The gateway runs it on every chunk it relays, texts of a few hundred bytes, so it is built for
// speed on those. All its state stays in registers: positions are pointers, each step returning
// where it stopped (null on an error); the open containers are bits of a word; the steps on the
// way are always inlined (called, they would take the state by reference, and the compiler would
// keep it in memory: twice as slow). Whitespace is looked for only where a token is not found, and
// strings end where a bit mask of the text's special bytes says (see SpecialBytes).
#include "providers/json_scan.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace terse::providers {
namespace {

using OnMember = absl::FunctionRef<void(std::string_view key, std::string_view value)>;

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// ---- Checking.

// Past the whitespace at `p`. Compact texts, what upstreams send, have none between tokens: one
// comparison tells most bytes apart from all four whitespace characters.
[[gnu::always_inline]] inline const char* SkipWs(const char* p, const char* end) {
  while (p != end && static_cast<unsigned char>(*p) <= ' ' && IsWs(*p)) ++p;
  return p;
}

// Moves `p` past whitespace to the next token: false when there is none. Most tokens have no
// whitespace before them, so the one comparison that tells them apart comes first.
[[gnu::always_inline]] inline bool AtToken(const char*& p, const char* end) {
  if (p != end && static_cast<unsigned char>(*p) > ' ') return true;
  p = SkipWs(p, end);
  return p != end;
}

// A bit per byte of the 64 at `p` that a string cannot hold as it is: a control character, '"',
// '\\' or a byte of a non-ASCII character (the others, printable ASCII, are most of a string).
uint64_t SpecialBits(const char* p) {
#ifdef __SSE2__
  uint64_t bits = 0;
  for (int i = 0; i < 64; i += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    // Compared as signed bytes, those below ' ' are the control characters and the non-ASCII
    // ones (0x80 and above are negative).
    const __m128i special = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(x, _mm_set1_epi8(' ')));
    bits |= static_cast<uint64_t>(static_cast<uint16_t>(_mm_movemask_epi8(special))) << i;
  }
  return bits;
#else
  uint64_t bits = 0;
  for (int i = 0; i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(p[i]);
    bits |= static_cast<uint64_t>(c < 0x20 || c >= 0x80 || c == '"' || c == '\\') << i;
  }
  return bits;
#endif
}

// Where a text's special bytes (see SpecialBits) are, 64 bytes at a time, for finding where a
// string's plain bytes stop: a shift and a count of the bits at hand. Each byte is compared once,
// however many strings, escapes and non-ASCII characters its window holds (an answer's content
// has one every few bytes), where searching from each of them would compare the bytes after it
// again.
class SpecialBytes {
 public:
  // For the text from `begin` to `end`.
  SpecialBytes(const char* begin, const char* end) : end_(end), window_(begin) {
    const size_t size = static_cast<size_t>(end - begin);
    if (size >= 64) {
      bits_ = SpecialBits(begin);
    } else {
      char copy[64] = {};  // past the end: '\0', special, so that Next stops at the end
      std::memcpy(copy, begin, size);
      bits_ = SpecialBits(copy);
    }
  }

  // The first special byte at or after `p` (at most `end`), or `end` when there is none.
  [[gnu::always_inline]] const char* Next(const char* p) {
    while (true) {
      // Positions never go back: `p` is in the window or past it.
      const size_t offset = static_cast<size_t>(p - window_);
      if (offset >= 64) {
        MoveTo(p);
        continue;
      }
      const uint64_t bits = bits_ >> offset;
      if (bits != 0) return p + std::countr_zero(bits);
      p = window_ + 64;
    }
  }

 private:
  // Makes the window start at `p`, which is 64 bytes or more past the start of the text (past the
  // first window): the last 64 bytes of the text can always be loaded.
  void MoveTo(const char* p) {
    window_ = p;
    const size_t left = static_cast<size_t>(end_ - p);
    if (left >= 64) {
      bits_ = SpecialBits(p);
    } else if (left == 0) {
      bits_ = ~uint64_t{0};
    } else {
      // The last 64 bytes of the text, moved down to the window; past the end, all special.
      bits_ = SpecialBits(end_ - 64) >> (64 - left) | ~uint64_t{0} << left;
    }
  }

  const char* const end_;
  const char* window_;  // 64 bytes of the text, or up to its end
  uint64_t bits_;       // theirs
};

// The value of a hex digit, -1 for any other byte.
constexpr std::array<int8_t, 256> kHexValue = [] {
  std::array<int8_t, 256> table{};
  for (int c = 0; c < 256; ++c) {
    table[c] = c >= '0' && c <= '9'   ? static_cast<int8_t>(c - '0')
               : c >= 'a' && c <= 'f' ? static_cast<int8_t>(c - 'a' + 10)
               : c >= 'A' && c <= 'F' ? static_cast<int8_t>(c - 'A' + 10)
                                      : int8_t{-1};
  }
  return table;
}();

// The four hex digits at `p` as a number, -1 when they are not.
int Hex4(const char* p, const char* end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    const int h = kHexValue[static_cast<unsigned char>(p[i])];
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// From the backslash: past the escape, or null.
const char* Escape(const char* p, const char* end) {
  if (end - p < 2) return nullptr;
  switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      return p + 2;
    case 'u': {
      const int unit = Hex4(p + 2, end);
      if (unit < 0) return nullptr;
      if (unit >= 0xDC00 && unit <= 0xDFFF) return nullptr;  // a lone low surrogate
      p += 6;
      if (unit >= 0xD800 && unit <= 0xDBFF) {
        // A high surrogate must be followed by an escaped low one.
        if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return nullptr;
        const int low = Hex4(p + 2, end);
        if (low < 0xDC00 || low > 0xDFFF) return nullptr;
        p += 6;
      }
      return p;
    }
    default:
      return nullptr;
  }
}

// One multi-byte UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, up to U+10FFFF):
// past it, or null.
const char* Utf8(const char* p, const char* end) {
  auto byte = [&](ptrdiff_t i) -> int {
    return i < end - p ? static_cast<unsigned char>(p[i]) : -1;
  };
  auto in = [](int b, int lo, int hi) { return b >= lo && b <= hi; };
  const int b0 = byte(0);
  int len;
  bool ok;
  if (in(b0, 0xC2, 0xDF)) {
    len = 2;
    ok = in(byte(1), 0x80, 0xBF);
  } else if (b0 == 0xE0) {
    len = 3;
    ok = in(byte(1), 0xA0, 0xBF) && in(byte(2), 0x80, 0xBF);
  } else if (in(b0, 0xE1, 0xEC) || in(b0, 0xEE, 0xEF)) {
    len = 3;
    ok = in(byte(1), 0x80, 0xBF) && in(byte(2), 0x80, 0xBF);
  } else if (b0 == 0xED) {
    len = 3;
    ok = in(byte(1), 0x80, 0x9F) && in(byte(2), 0x80, 0xBF);
  } else if (b0 == 0xF0) {
    len = 4;
    ok = in(byte(1), 0x90, 0xBF) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF);
  } else if (in(b0, 0xF1, 0xF3)) {
    len = 4;
    ok = in(byte(1), 0x80, 0xBF) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF);
  } else if (b0 == 0xF4) {
    len = 4;
    ok = in(byte(1), 0x80, 0x8F) && in(byte(2), 0x80, 0xBF) && in(byte(3), 0x80, 0xBF);
  } else {
    return nullptr;
  }
  return ok ? p + len : nullptr;
}

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

// Whether the number from `start` to `end` (with an exponent, or very long) is a finite double.
[[gnu::noinline]] bool InRange(const char* start, const char* end) {
  const std::string copy(start, end);
  return std::isfinite(std::strtod(copy.c_str(), nullptr));
}

// From '-' or a digit: past the number, or null.
[[gnu::always_inline]] inline const char* Number(const char* p, const char* end) {
  const char* const start = p;
  bool check_range = false;
  if (*p == '-') ++p;
  if (p == end) return nullptr;
  if (*p == '0') {
    ++p;
  } else if (IsDigit(*p)) {
    while (p != end && IsDigit(*p)) ++p;
  } else {
    return nullptr;
  }
  if (p != end && *p == '.') {
    ++p;
    if (p == end || !IsDigit(*p)) return nullptr;
    while (p != end && IsDigit(*p)) ++p;
  }
  if (p != end && (*p == 'e' || *p == 'E')) {
    check_range = true;
    ++p;
    if (p != end && (*p == '+' || *p == '-')) ++p;
    if (p == end || !IsDigit(*p)) return nullptr;
    while (p != end && IsDigit(*p)) ++p;
  }
  // The parser rejects numbers that overflow a double: only an exponent or a very long number
  // can (plain integers beyond 64 bits become doubles there too).
  if ((check_range || p - start > 300) && !InRange(start, p)) return nullptr;
  return p;
}

// Past `word` when the text at `p` starts with it, else null.
[[gnu::always_inline]] inline const char* Word(const char* p, const char* end,
                                               std::string_view word) {
  if (static_cast<size_t>(end - p) < word.size() || std::memcmp(p, word.data(), word.size()) != 0) {
    return nullptr;
  }
  return p + word.size();
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

// The scanner itself; `on_member`, when kReport, is told each top-level member.
template <bool kReport>
bool Validate(std::string_view text, const OnMember* on_member) {
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
        if (depth == kMaxJsonDepth) return false;
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

}  // namespace terse::providers
