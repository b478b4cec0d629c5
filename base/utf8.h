// The one UTF-8 decoder of terse: the JSON codec, the target tokenizer and the scoring model's
// tokenizer all judge bytes by it, so a text one accepts the others accept too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace terse {

// The length of the well-formed UTF-8 sequence at text[i] (i < text.size()), or, when it is
// ill-formed, minus the length of its maximal ill-formed subpart (at least 1), as the Unicode
// table of well-formed byte sequences has it (no overlong forms, no surrogates, nothing above
// U+10FFFF). Replacing each maximal subpart by U+FFFD is the W3C/WHATWG repair.
inline int Utf8SequenceAt(std::string_view text, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = b(i);
  if (lead < 0x80) return 1;
  int length;
  uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) lo = 0xA0;
    if (lead == 0xED) hi = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) lo = 0x90;
    if (lead == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < length; ++k) {
    if (i + k >= text.size()) return -k;
    const uint8_t c = b(i + k);
    const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) return -k;
  }
  return length;
}

}  // namespace terse
