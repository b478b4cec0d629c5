// A validating scanner that accepts exactly what nlohmann's parser accepts (tests/providers
// compare the two on many texts), iterative so that deep nesting cannot overflow the stack.
#include "providers/json_scan.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <string>

namespace terse::providers {
namespace {

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Validator {
 public:
  using OnMember = absl::FunctionRef<void(std::string_view key, std::string_view value)>;
  explicit Validator(std::string_view text, const OnMember* on_member = nullptr)
      : s_(text), on_member_(on_member) {}

  bool Run() {
    if (!s_.empty() && static_cast<unsigned char>(s_[0]) == 0xEF) {
      if (s_.size() < 3 || static_cast<unsigned char>(s_[1]) != 0xBB ||
          static_cast<unsigned char>(s_[2]) != 0xBF) {
        return false;
      }
      p_ = 3;
    }
    // `stack`: '{' or '[' per open container.
    std::string stack;
    SkipWs();
    while (true) {
      // A value is expected here.
      if (p_ >= s_.size()) return false;
      const char c = s_[p_];
      if (c == '{' || c == '[') {
        ++p_;
        SkipWs();
        if (p_ < s_.size() && s_[p_] == (c == '{' ? '}' : ']')) {
          ++p_;  // empty container: a complete value
        } else {
          stack.push_back(c);
          if (c == '{' && !Key(stack.size())) return false;
          continue;
        }
      } else if (!Scalar()) {
        return false;
      }
      // After a complete value: close containers, or go on to the next member or element.
      while (true) {
        if (member_open_ && stack.size() == 1) {
          member_open_ = false;
          (*on_member_)(key_, s_.substr(value_start_, p_ - value_start_));
        }
        SkipWs();
        if (stack.empty()) return p_ == s_.size();
        if (p_ >= s_.size()) return false;
        const char open = stack.back();
        const char d = s_[p_++];
        if (d == ',') {
          SkipWs();
          if (open == '{' && !Key(stack.size())) return false;
          break;
        }
        if (d != (open == '{' ? '}' : ']')) return false;
        stack.pop_back();
      }
    }
  }

 private:
  void SkipWs() {
    while (p_ < s_.size() && IsWs(s_[p_])) ++p_;
  }

  // `"key" :` with the whitespace after the colon skipped; `depth` is the object's.
  bool Key(size_t depth) {
    const size_t start = p_;
    if (p_ >= s_.size() || s_[p_] != '"' || !String()) return false;
    if (depth == 1 && on_member_ != nullptr) {
      key_ = s_.substr(start + 1, p_ - start - 2);
      member_open_ = true;
    }
    SkipWs();
    if (p_ >= s_.size() || s_[p_] != ':') return false;
    ++p_;
    SkipWs();
    if (member_open_ && depth == 1) value_start_ = p_;
    return true;
  }

  bool Scalar() {
    const char c = s_[p_];
    if (c == '"') return String();
    if (c == '-' || IsDigit(c)) return Number();
    return Literal("true") || Literal("false") || Literal("null");
  }

  bool Literal(std::string_view word) {
    if (s_.substr(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }

  bool Number() {
    const size_t start = p_;
    bool check_range = false;
    if (s_[p_] == '-') ++p_;
    if (p_ >= s_.size()) return false;
    if (s_[p_] == '0') {
      ++p_;
    } else if (IsDigit(s_[p_])) {
      while (p_ < s_.size() && IsDigit(s_[p_])) ++p_;
    } else {
      return false;
    }
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      if (p_ >= s_.size() || !IsDigit(s_[p_])) return false;
      while (p_ < s_.size() && IsDigit(s_[p_])) ++p_;
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      check_range = true;
      ++p_;
      if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
      if (p_ >= s_.size() || !IsDigit(s_[p_])) return false;
      while (p_ < s_.size() && IsDigit(s_[p_])) ++p_;
    }
    // The parser rejects numbers that overflow a double: only an exponent or a very long number
    // can (plain integers beyond 64 bits become doubles there too).
    if (check_range || p_ - start > 300) {
      std::string copy(s_.substr(start, p_ - start));
      if (!std::isfinite(std::strtod(copy.c_str(), nullptr))) return false;
    }
    return true;
  }

  // Moves p_ past printable ASCII other than '"' and '\\' (the bytes of a string that need no look
  // of their own, most of them), eight bytes at a time, up to the first byte that does.
  void SkipPlainWords() {
    constexpr uint64_t kOnes = 0x0101010101010101ULL;
    constexpr uint64_t kHighs = 0x8080808080808080ULL;
    while (p_ + 8 <= s_.size()) {
      uint64_t x;
      std::memcpy(&x, s_.data() + p_, sizeof x);
      const uint64_t quote = x ^ (kOnes * '"');
      const uint64_t backslash = x ^ (kOnes * '\\');
      // A high bit per byte below 0x20, equal to '"' or '\\', or not ASCII (a few false alarms
      // are possible, never a miss).
      const uint64_t special = ((x - kOnes * 0x20) & ~x) | ((quote - kOnes) & ~quote) |
                               ((backslash - kOnes) & ~backslash) | x;
      if ((special & kHighs) != 0) {
        // A false alarm only ever sits above a true one, so the lowest flag is a true one.
        static_assert(std::endian::native == std::endian::little, "the first byte is the lowest");
        p_ += static_cast<size_t>(std::countr_zero(special & kHighs)) / 8;
        return;
      }
      p_ += 8;
    }
  }

  // From the opening quote; leaves p_ after the closing one.
  bool String() {
    ++p_;
    while (p_ < s_.size()) {
      SkipPlainWords();
      if (p_ >= s_.size()) break;
      const unsigned char c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (!Escape()) return false;
      } else if (c < 0x80) {
        ++p_;
      } else if (!Utf8()) {
        return false;
      }
    }
    return false;
  }

  bool Escape() {
    ++p_;
    if (p_ >= s_.size()) return false;
    const char e = s_[p_++];
    switch (e) {
      case '"':
      case '\\':
      case '/':
      case 'b':
      case 'f':
      case 'n':
      case 'r':
      case 't':
        return true;
      case 'u': {
        int unit = Hex4();
        if (unit < 0) return false;
        if (unit >= 0xDC00 && unit <= 0xDFFF) return false;  // a lone low surrogate
        if (unit >= 0xD800 && unit <= 0xDBFF) {
          // A high surrogate must be followed by an escaped low one.
          if (p_ + 1 >= s_.size() || s_[p_] != '\\' || s_[p_ + 1] != 'u') return false;
          p_ += 2;
          int low = Hex4();
          if (low < 0xDC00 || low > 0xDFFF) return false;
        }
        return true;
      }
      default:
        return false;
    }
  }

  int Hex4() {
    if (p_ + 4 > s_.size()) return -1;
    int v = 0;
    for (int i = 0; i < 4; ++i) {
      int h = HexValue(s_[p_ + i]);
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    p_ += 4;
    return v;
  }

  // One multi-byte UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, up to U+10FFFF).
  bool Utf8() {
    auto byte = [&](size_t i) -> int {
      return p_ + i < s_.size() ? static_cast<unsigned char>(s_[p_ + i]) : -1;
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
      return false;
    }
    if (!ok) return false;
    p_ += len;
    return true;
  }

  const std::string_view s_;
  const OnMember* const on_member_;  // null: no one to tell
  size_t p_ = 0;
  // The top-level member being checked, when on_member_ is set.
  bool member_open_ = false;
  std::string_view key_;
  size_t value_start_ = 0;
};

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

bool IsValidJson(std::string_view text) { return Validator(text).Run(); }

bool IsValidJson(std::string_view text,
                 absl::FunctionRef<void(std::string_view key, std::string_view value)> on_member) {
  return Validator(text, &on_member).Run();
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
