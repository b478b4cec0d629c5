// UTF-8 validation and repair, and the \s rewrite of tiktoken's patterns.
#include "compressor/target_tokenizer_text.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "base/utf8.h"

namespace terse::compressor {
namespace {

// Code points each general category has in Unicode 16.0 (the tables of the regex crate inside
// npm tiktoken) beyond PCRE2 10.42's Unicode 14.0 tables. No code point left a category between
// the two versions, so adding these is enough. Derived from the Unicode 16.0 UCD
// (General_Category) minus what PCRE2 10.42 matches for each \p{...}; checked end to end by the
// code point sweep of tests/e2e/tiktoken_compare.mjs. With a PCRE2 of Unicode 16 they are
// redundant and harmless.
struct CategoryAdditions {
  std::string_view category;
  std::string_view ranges;  // PCRE2 class items
};
constexpr CategoryAdditions kUnicode16Additions[] = {
    {"L",
     "\\x{1C89}-\\x{1C8A}\\x{A7CB}-\\x{A7CD}\\x{A7DA}-\\x{A7DC}\\x{105C0}-\\x{105F3}"
     "\\x{10D4A}-\\x{10D65}\\x{10D6F}-\\x{10D85}\\x{10EC2}-\\x{10EC4}\\x{1123F}-\\x{11240}"
     "\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}\\x{113B7}\\x{113D1}"
     "\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}\\x{11F12}-\\x{11F33}"
     "\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}\\x{16100}-\\x{1611D}"
     "\\x{16D40}-\\x{16D6C}\\x{18CFF}\\x{1B132}\\x{1B155}\\x{1DF25}-\\x{1DF2A}"
     "\\x{1E030}-\\x{1E06D}\\x{1E4D0}-\\x{1E4EB}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}"
     "\\x{2EBF0}-\\x{2EE5D}\\x{31350}-\\x{323AF}"},
    {"Lu", "\\x{1C89}\\x{A7CB}-\\x{A7CC}\\x{A7DA}\\x{A7DC}\\x{10D50}-\\x{10D65}"},
    {"Ll", "\\x{1C8A}\\x{A7CD}\\x{A7DB}\\x{10D70}-\\x{10D85}\\x{1DF25}-\\x{1DF2A}"},
    {"Lt", ""},
    {"Lm",
     "\\x{10D4E}\\x{10D6F}\\x{16D40}-\\x{16D42}\\x{16D6B}-\\x{16D6C}\\x{1E030}-\\x{1E06D}"
     "\\x{1E4EB}"},
    {"Lo",
     "\\x{105C0}-\\x{105F3}\\x{10D4A}-\\x{10D4D}\\x{10D4F}\\x{10EC2}-\\x{10EC4}"
     "\\x{1123F}-\\x{11240}\\x{11380}-\\x{11389}\\x{1138B}\\x{1138E}\\x{11390}-\\x{113B5}"
     "\\x{113B7}\\x{113D1}\\x{113D3}\\x{11BC0}-\\x{11BE0}\\x{11F02}\\x{11F04}-\\x{11F10}"
     "\\x{11F12}-\\x{11F33}\\x{1342F}\\x{13441}-\\x{13446}\\x{13460}-\\x{143FA}"
     "\\x{16100}-\\x{1611D}\\x{16D43}-\\x{16D6A}\\x{18CFF}\\x{1B132}\\x{1B155}"
     "\\x{1E4D0}-\\x{1E4EA}\\x{1E5D0}-\\x{1E5ED}\\x{1E5F0}\\x{2B739}\\x{2EBF0}-\\x{2EE5D}"
     "\\x{31350}-\\x{323AF}"},
    {"M",
     "\\x{897}\\x{CF3}\\x{ECE}\\x{10D69}-\\x{10D6D}\\x{10EFC}-\\x{10EFF}\\x{11241}"
     "\\x{113B8}-\\x{113C0}\\x{113C2}\\x{113C5}\\x{113C7}-\\x{113CA}\\x{113CC}-\\x{113D0}"
     "\\x{113D2}\\x{113E1}-\\x{113E2}\\x{11F00}-\\x{11F01}\\x{11F03}\\x{11F34}-\\x{11F3A}"
     "\\x{11F3E}-\\x{11F42}\\x{11F5A}\\x{13440}\\x{13447}-\\x{13455}\\x{1611E}-\\x{1612F}"
     "\\x{1E08F}\\x{1E4EC}-\\x{1E4EF}\\x{1E5EE}-\\x{1E5EF}"},
    {"N",
     "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}"
     "\\x{16130}-\\x{16139}\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}"
     "\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"},
};

std::string_view AdditionsFor(std::string_view category) {
  for (const CategoryAdditions& a : kUnicode16Additions) {
    if (a.category == category) return a.ranges;
  }
  return {};
}

// The union of all additions as sorted, disjoint [first, last] ranges.
std::vector<std::pair<uint32_t, uint32_t>> MakeAddedCodePoints() {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;
  for (const CategoryAdditions& a : kUnicode16Additions) {
    std::string_view r = a.ranges;
    auto next_hex = [&r]() {  // reads "\x{HEX}"
      const size_t open = r.find('{'), close = r.find('}');
      const uint32_t v = static_cast<uint32_t>(
          std::stoul(std::string(r.substr(open + 1, close - open - 1)), nullptr, 16));
      r.remove_prefix(close + 1);
      return v;
    };
    while (!r.empty()) {
      const uint32_t first = next_hex();
      uint32_t last = first;
      if (!r.empty() && r.front() == '-') {
        r.remove_prefix(1);
        last = next_hex();
      }
      ranges.emplace_back(first, last);
    }
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<uint32_t, uint32_t>> merged;
  for (const auto& range : ranges) {
    if (!merged.empty() && range.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, range.second);
    } else {
      merged.push_back(range);
    }
  }
  return merged;
}

constexpr std::string_view kWhiteSpace =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

}  // namespace

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    if (i + 8 <= text.size()) {
      uint64_t w;
      std::memcpy(&w, text.data() + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const int n = Utf8SequenceAt(text, i);
    if (n < 0) return false;
    i += static_cast<size_t>(n);
  }
  return true;
}

std::string ReplaceInvalidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  size_t i = 0;
  while (i < text.size()) {
    const int n = Utf8SequenceAt(text, i);
    if (n > 0) {
      out.append(text.substr(i, static_cast<size_t>(n)));
      i += static_cast<size_t>(n);
    } else {
      out.append("\xEF\xBF\xBD");
      i += static_cast<size_t>(-n);
    }
  }
  return out;
}

bool HasCodePointsNewerThanPcre2(std::string_view text) {
  static const auto* added = new std::vector<std::pair<uint32_t, uint32_t>>(MakeAddedCodePoints());
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n; ++i) {
    // Every addition is at or above U+0800, so one- and two-byte characters (and continuation
    // bytes) are skipped without decoding.
    if (p[i] < 0xE0) continue;
    uint32_t cp;
    if (p[i] < 0xF0) {
      if (i + 2 >= n) break;
      cp = (p[i] & 0x0Fu) << 12 | (p[i + 1] & 0x3Fu) << 6 | (p[i + 2] & 0x3Fu);
    } else {
      if (i + 3 >= n) break;
      cp = (p[i] & 0x07u) << 18 | (p[i + 1] & 0x3Fu) << 12 | (p[i + 2] & 0x3Fu) << 6 |
           (p[i + 3] & 0x3Fu);
    }
    auto it = std::upper_bound(added->begin(), added->end(), std::make_pair(cp, UINT32_MAX));
    if (it != added->begin() && std::prev(it)->second >= cp) return true;
  }
  return false;
}

absl::StatusOr<std::string> RewriteTiktokenPattern(std::string_view pattern,
                                                   bool unicode16_categories) {
  std::string out;
  out.reserve(pattern.size() + 256);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') {
        if (in_class) {
          out.append(kWhiteSpace);
        } else {
          out.append("[").append(kWhiteSpace).append("]");
        }
      } else if (e == 'S') {
        if (in_class) return absl::InvalidArgumentError("\\S inside a character class");
        out.append("[^").append(kWhiteSpace).append("]");
      } else if (e == 'p' || e == 'P') {
        // \p{Xx} or \pX: the category as PCRE2 knows it, plus what Unicode 16 added to it.
        size_t end = i + 1;
        if (end < pattern.size() && pattern[end] == '{') end = pattern.find('}', end);
        if (end == std::string_view::npos || end >= pattern.size()) {
          return absl::InvalidArgumentError("unterminated \\p{...}");
        }
        const std::string_view item = pattern.substr(i - 1, end - i + 2);  // "\p{Xx}"
        std::string_view category = pattern.substr(i + 1, end - i);
        if (category.size() > 2 && category.front() == '{') {
          category = category.substr(1, category.size() - 2);
        }
        const std::string_view additions = unicode16_categories ? AdditionsFor(category) : "";
        i = end;
        if (additions.empty()) {
          out.append(item);
        } else if (e == 'P') {
          if (in_class) return absl::InvalidArgumentError("\\P{...} inside a character class");
          out.append("[^").append(item.substr(0, 1)).append("p").append(item.substr(2));
          out.append(additions).append("]");
        } else if (in_class) {
          out.append(item).append(additions);
        } else {
          out.append("[").append(item).append(additions).append("]");
        }
      } else {
        out.push_back(c);
        out.push_back(e);
      }
      continue;
    }
    out.push_back(c);
    if (!in_class && c == '[') {
      in_class = true;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

}  // namespace terse::compressor
