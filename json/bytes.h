// The byte-level steps that the JSON scanner (scan.cc) and the JSON codec (codec.cc)
// share: whitespace, the mask of a string's special bytes, hex digits, UTF-8 sequences, escapes,
// numbers and literal words. For those two files only.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "base/utf8.h"

namespace terse::json::bytes {

inline bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

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
// Portable: a byte at a time.
inline uint64_t SpecialBitsBytewise(const char* p) {
  uint64_t bits = 0;
  for (int i = 0; i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(p[i]);
    bits |= static_cast<uint64_t>(c < 0x20 || c >= 0x80 || c == '"' || c == '\\') << i;
  }
  return bits;
}

#ifdef __SSE2__
// The same, 16 bytes at a time (every x86-64 processor).
inline uint64_t SpecialBitsSse2(const char* p) {
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
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define TERSE_JSON_AVX2 1
// The same, 32 bytes at a time, for processors with AVX2 (asked at run time: the build targets
// any x86-64). Half the instructions of SSE2 over a long prompt's text.
[[gnu::target("avx2")]] inline uint64_t SpecialBitsAvx2(const char* p) {
  uint64_t bits = 0;
  for (int i = 0; i < 64; i += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    const __m256i special =
        _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(x, _mm256_set1_epi8('"')),
                                        _mm256_cmpeq_epi8(x, _mm256_set1_epi8('\\'))),
                        _mm256_cmpgt_epi8(_mm256_set1_epi8(' '), x));
    bits |= static_cast<uint64_t>(static_cast<uint32_t>(_mm256_movemask_epi8(special))) << i;
  }
  return bits;
}

// False, and so SSE2, for anything that runs before it is initialized.
inline const bool kCpuHasAvx2 = [] {
  __builtin_cpu_init();  // before the first __builtin_cpu_supports of a static initializer
  return __builtin_cpu_supports("avx2") != 0;
}();
#endif

// The widest of the above that this processor runs.
inline uint64_t SpecialBits(const char* p) {
#ifdef TERSE_JSON_AVX2
  if (kCpuHasAvx2) return SpecialBitsAvx2(p);
#endif
#ifdef __SSE2__
  return SpecialBitsSse2(p);
#else
  return SpecialBitsBytewise(p);
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
inline constexpr std::array<int8_t, 256> kHexValue = [] {
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
inline int Hex4(const char* p, const char* end) {
  if (end - p < 4) return -1;
  int v = 0;
  for (int i = 0; i < 4; ++i) {
    const int h = kHexValue[static_cast<unsigned char>(p[i])];
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// One multi-byte UTF-8 sequence (base/utf8.h): past it, or null (also for an ASCII byte).
inline const char* Utf8(const char* p, const char* end) {
  const int n = Utf8SequenceAt(std::string_view(p, static_cast<size_t>(end - p)), 0);
  return n > 1 ? p + n : nullptr;
}

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// From the backslash: past the escape, or null.
[[gnu::always_inline]] inline const char* Escape(const char* p, const char* end) {
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

// Whether the number from `start` to `end` (with an exponent, or very long) is a finite double.
[[gnu::noinline]] inline bool InRange(const char* start, const char* end) {
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

}  // namespace terse::json::bytes
