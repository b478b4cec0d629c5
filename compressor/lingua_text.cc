// Units and reassembly (the markup parser is lingua_markup.cc). Character classes are decided per
// code point from a few Unicode block ranges: enough to keep words whole in alphabetic scripts,
// split CJK per character and keep emoji sequences together, without a Unicode database.
#include "compressor/lingua_text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "base/json.h"
#include "base/utf8.h"
#include "compressor/whole_units.h"

namespace terse::compressor::lingua {
namespace {

// Decodes the code point at `i`; sets *len to its byte length (an ill-formed subpart reads as
// one U+FFFD, though callers validate first).
char32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  const int n = Utf8SequenceAt(s, i);
  if (n < 0) {
    *len = static_cast<size_t>(-n);
    return 0xFFFD;
  }
  const auto b0 = static_cast<unsigned char>(s[i]);
  char32_t c = n == 1 ? b0 : b0 & (0x7F >> n);
  for (int k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *len = static_cast<size_t>(n);
  return c;
}

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

enum class Cls { kSpace, kWord, kSolo, kPunct, kExtend };

bool In(char32_t c, char32_t lo, char32_t hi) { return c >= lo && c <= hi; }

bool IsExtend(char32_t c) {
  return In(c, 0x0300, 0x036F) || In(c, 0x1AB0, 0x1AFF) || In(c, 0x1DC0, 0x1DFF) ||
         In(c, 0x20D0, 0x20FF) || In(c, 0xFE00, 0xFE0F) || In(c, 0xFE20, 0xFE2F) ||
         In(c, 0x200C, 0x200D) || In(c, 0x1F3FB, 0x1F3FF) || In(c, 0xE0000, 0xE0FFF);
}

bool IsRegionalIndicator(char32_t c) { return In(c, 0x1F1E6, 0x1F1FF); }

Cls Classify(char32_t c) {
  if (c < 0x80) {
    const char a = static_cast<char>(c);
    if (IsAsciiSpace(a)) return Cls::kSpace;
    if (IsAsciiAlnum(a) || a == '_') return Cls::kWord;
    return Cls::kPunct;
  }
  if (IsExtend(c)) return Cls::kExtend;
  // CJK ideographs, kana, emoji and pictographic symbols: one unit per character.
  if (In(c, 0x3400, 0x4DBF) || In(c, 0x4E00, 0x9FFF) || In(c, 0xF900, 0xFAFF) ||
      In(c, 0x20000, 0x3FFFF) || In(c, 0x3040, 0x30FF) || In(c, 0x31F0, 0x31FF) ||
      In(c, 0xFF66, 0xFF9F) || In(c, 0x2190, 0x21FF) || In(c, 0x2300, 0x23FF) ||
      In(c, 0x2460, 0x24FF) || In(c, 0x25A0, 0x27BF) || In(c, 0x2900, 0x297F) ||
      In(c, 0x2B00, 0x2BFF) || In(c, 0x1F000, 0x1FAFF)) {
    return Cls::kSolo;
  }
  if (In(c, 0x80, 0xBF) || c == 0xD7 || c == 0xF7 || In(c, 0x2000, 0x218F) ||
      In(c, 0x2200, 0x22FF) || In(c, 0x3000, 0x303F) || In(c, 0xFF00, 0xFF65) ||
      In(c, 0xFE30, 0xFE6F) || In(c, 0x2E00, 0x2E7F)) {
    return Cls::kPunct;
  }
  return Cls::kWord;
}

bool IsOpener(char32_t c) {
  return c == '(' || c == '[' || c == '{' || c == '"' || c == '\'' || c == 0x201C || c == 0x2018 ||
         c == 0xAB || c == 0xBF || c == 0xA1;
}
bool IsCloser(char32_t c) {
  return c == ')' || c == ']' || c == '}' || c == '"' || c == '\'' || c == 0x201D || c == 0x2019 ||
         c == 0xBB || c == ',' || c == '.' || c == ';' || c == ':' || c == '!' || c == '?' ||
         c == 0x2026 || c == '%';
}

// Last code point of text[begin, end).
char32_t LastCodePoint(std::string_view s, size_t begin, size_t end) {
  size_t i = end - 1;
  while (i > begin && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  size_t len;
  return DecodeAt(s, i, &len);
}

// A word character for the "two words would fuse" rule: not CJK (which has no spaces).
bool IsFusingWordChar(char32_t c) { return Classify(c) == Cls::kWord; }

// ---------------------------------------------------------------------------------------------
// Splitting

struct Block {
  size_t begin = 0;
  size_t end = 0;
  bool verbatim = true;  // false: JSON with elastic strings
};

class Splitter {
 public:
  Splitter(std::string_view text, std::vector<size_t> breaks)
      : text_(text), breaks_(std::move(breaks)) {}

  // Splits text[begin, end) into units appended to `out`. `json_string`: inside a JSON string,
  // where a backslash starts an escape that must stay whole.
  void Split(size_t begin, size_t end, bool json_string, std::vector<Unit>* out) {
    size_t i = begin;
    while (i < end) {
      size_t len;
      const char32_t c = DecodeAt(text_, i, &len);
      const Cls cls = Classify(c);
      if (cls == Cls::kSpace) {
        i += len;
        continue;
      }
      const size_t stop = NextBreak(i, end);
      size_t j;
      if (json_string && c == '\\') {
        j = EscapeEnd(i, stop);
      } else if (size_t a = AtomicEnd(i, stop); a > i) {
        j = a;
      } else if (cls == Cls::kExtend) {
        // A modifier with no base of its own: glue it to an adjacent unit before it.
        if (!out->empty() && out->back().end == i) {
          out->back().end = static_cast<uint32_t>(ExtendRun(i + len, stop));
          i = out->back().end;
          continue;
        }
        j = ExtendRun(i + len, stop);
      } else if (cls == Cls::kWord) {
        j = WordEnd(i, stop, json_string);
      } else if (cls == Cls::kSolo) {
        j = i + len;
        if (IsRegionalIndicator(c) && j < stop) {
          size_t l2;
          if (IsRegionalIndicator(DecodeAt(text_, j, &l2))) j += l2;
        }
        j = ExtendRun(j, stop);
      } else {  // punctuation: a run of one ASCII character, or one other character
        j = i + len;
        if (c < 0x80 && !(json_string && c == '\\')) {
          while (j < stop && text_[j] == text_[i]) ++j;
        }
        j = ExtendRun(j, stop);
      }
      Unit u;
      u.begin = static_cast<uint32_t>(i);
      u.end = static_cast<uint32_t>(j);
      out->push_back(u);
      i = j;
    }
  }

 private:
  // The first markup boundary after `i`, capped at `end`: units never straddle a tag.
  size_t NextBreak(size_t i, size_t end) const {
    auto it = std::upper_bound(breaks_.begin(), breaks_.end(), i);
    return it == breaks_.end() ? end : std::min(end, *it);
  }

  // Consumes combining marks and joiners after `j`; a zero-width joiner pulls in the next
  // character too (emoji ZWJ sequences).
  size_t ExtendRun(size_t j, size_t stop) const {
    while (j < stop) {
      size_t len;
      const char32_t c = DecodeAt(text_, j, &len);
      if (!IsExtend(c)) break;
      j += len;
      if (c == 0x200D && j < stop) {
        size_t l2;
        const char32_t next = DecodeAt(text_, j, &l2);
        if (Classify(next) != Cls::kSpace) j += l2;
      }
    }
    return j;
  }

  size_t WordEnd(size_t i, size_t stop, bool json_string) const {
    size_t j = i;
    while (j < stop) {
      size_t len;
      const char32_t c = DecodeAt(text_, j, &len);
      const Cls cls = Classify(c);
      if (cls == Cls::kWord || cls == Cls::kExtend) {
        j += len;
        if (c == 0x200D && j < stop) j = ExtendRun(j, stop);
        continue;
      }
      // Inner apostrophes (don't, l'homme) and decimal separators (3.5, 1,000) stay inside.
      if (j > i && j + len < stop) {
        size_t l2;
        const char32_t next = DecodeAt(text_, j + len, &l2);
        const char prev = text_[j - 1];
        if ((c == '\'' || c == 0x2019) && Classify(next) == Cls::kWord) {
          j += len;
          continue;
        }
        if ((c == '.' || c == ',') && IsAsciiDigit(prev) && next < 0x80 &&
            IsAsciiDigit(static_cast<char>(next))) {
          j += len;
          continue;
        }
      }
      break;
    }
    return j;
  }

  // A JSON escape: \uXXXX (a surrogate pair stays together) or a backslash and one character.
  size_t EscapeEnd(size_t i, size_t stop) const {
    size_t j = i + 1;
    if (j >= stop) return stop;
    if (text_[j] != 'u') return std::min(stop, j + 1);
    j = std::min(stop, j + 5);
    const auto hex = [&](size_t at) {
      return std::strtoul(std::string(text_.substr(at, 4)).c_str(), nullptr, 16);
    };
    if (j - i == 6 && hex(i + 2) >= 0xD800 && hex(i + 2) <= 0xDBFF && j + 6 <= stop &&
        text_[j] == '\\' && text_[j + 1] == 'u') {
      j += 6;
    }
    return j;
  }

  // End of a URL, e-mail address or inline code span starting at `i`; `i` when none starts.
  size_t AtomicEnd(size_t i, size_t stop) const {
    const char c = text_[i];
    if (i > 0 && (IsAsciiAlnum(text_[i - 1]) || text_[i - 1] == '_')) return i;
    if (c == '`') {
      size_t j = i + 1;
      while (j < stop && text_[j] == '`') ++j;
      const size_t ticks = j - i;
      for (size_t k = j; k < stop && text_[k] != '\n'; ++k) {
        if (text_[k] != '`') continue;
        size_t e = k;
        while (e < stop && text_[e] == '`') ++e;
        if (e - k == ticks) return e;
        k = e - 1;
      }
      return i;
    }
    if (!IsAsciiAlnum(c)) return i;
    // scheme://... or www.
    size_t j = i;
    while (j < stop &&
           (IsAsciiAlnum(text_[j]) || text_[j] == '+' || text_[j] == '.' || text_[j] == '-')) {
      ++j;
    }
    const bool url = (j + 2 < stop && text_.substr(j, 3) == "://") ||
                     (text_.substr(i, 4) == "www." && j > i + 4);
    if (url) {
      size_t e = j;
      while (e < stop && !IsAsciiSpace(text_[e]) && text_[e] != '<' && text_[e] != '>' &&
             text_[e] != '"' && text_[e] != '`') {
        ++e;
      }
      // Trailing sentence punctuation is not part of the address.
      while (e > j && std::string_view(".,;:!?'").find(text_[e - 1]) != std::string_view::npos) {
        --e;
      }
      if (e > j && text_[e - 1] == ')' &&
          text_.substr(i, e - i).find('(') == std::string_view::npos) {
        --e;
      }
      return e > j + 3 || text_.substr(i, 4) == "www." ? e : i;
    }
    // local@domain.tld
    size_t at = i;
    while (at < stop && (IsAsciiAlnum(text_[at]) || text_[at] == '.' || text_[at] == '_' ||
                         text_[at] == '%' || text_[at] == '+' || text_[at] == '-')) {
      ++at;
    }
    if (at < stop && text_[at] == '@' && at > i) {
      size_t e = at + 1;
      bool dot = false;
      while (e < stop && (IsAsciiAlnum(text_[e]) || text_[e] == '.' || text_[e] == '-')) {
        dot = dot || text_[e] == '.';
        ++e;
      }
      while (e > at + 1 && (text_[e - 1] == '.' || text_[e - 1] == '-')) --e;
      if (dot && e > at + 1 && text_[e - 1] != '.' &&
          text_.substr(at + 1, e - at - 1).find('.') != std::string_view::npos) {
        return e;
      }
    }
    return i;
  }

  std::string_view text_;
  std::vector<size_t> breaks_;  // sorted
};

size_t LineEnd(std::string_view t, size_t i) {
  while (i < t.size() && t[i] != '\n') ++i;
  return i;
}
size_t SkipIndent(std::string_view t, size_t i) {
  while (i < t.size() && (t[i] == ' ' || t[i] == '\t')) ++i;
  return i;
}

// Code fences: from a line starting (after indentation) with ``` or ~~~ to the end of the
// closing fence line, or to the end of the text when unclosed.
void FindFences(std::string_view t, std::vector<Block>* out) {
  size_t i = 0;
  while (i < t.size()) {
    const size_t s = SkipIndent(t, i);
    const size_t eol = LineEnd(t, i);
    if (s + 3 <= t.size() && (t.substr(s, 3) == "```" || t.substr(s, 3) == "~~~")) {
      const char fc = t[s];
      size_t n = s;
      while (n < eol && t[n] == fc) ++n;
      const size_t len = n - s;
      size_t j = eol < t.size() ? eol + 1 : eol;
      size_t end = t.size();
      while (j < t.size()) {
        const size_t js = SkipIndent(t, j);
        const size_t jeol = LineEnd(t, j);
        size_t m = js;
        while (m < jeol && t[m] == fc) ++m;
        if (m - js >= len) {
          end = jeol;
          break;
        }
        j = jeol < t.size() ? jeol + 1 : jeol;
      }
      while (end > s && IsAsciiSpace(t[end - 1])) --end;
      out->push_back({s, end, true});
      i = end < t.size() ? LineEnd(t, end) : end;
      continue;
    }
    i = eol < t.size() ? eol + 1 : eol;
  }
}

// End (exclusive) of the bracketed value starting at `i`, string-aware; npos when unbalanced.
size_t MatchBracket(std::string_view t, size_t i) {
  std::string stack;
  bool in_string = false;
  for (size_t k = i; k < t.size(); ++k) {
    const char c = t[k];
    if (in_string) {
      if (c == '\\') {
        ++k;
      } else if (c == '"') {
        in_string = false;
      } else if (c == '\n') {
        return std::string_view::npos;  // JSON strings hold no raw newline
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      stack.push_back(c == '{' ? '}' : ']');
    } else if (c == '}' || c == ']') {
      if (stack.empty() || stack.back() != c) return std::string_view::npos;
      stack.pop_back();
      if (stack.empty()) return k + 1;
    }
  }
  return std::string_view::npos;
}

// JSON values that begin a line: validated with the real parser, so prose in brackets is not
// mistaken for JSON.
void FindJson(std::string_view t, bool elastic, std::vector<Block>* out) {
  size_t i = 0;
  while (i < t.size()) {
    const size_t s = SkipIndent(t, i);
    if (s < t.size() && (t[s] == '{' || t[s] == '[')) {
      const size_t e = MatchBracket(t, s);
      if (e != std::string_view::npos && e - s >= 2) {
        const std::string_view candidate = t.substr(s, e - s);
        if (Json::accept(candidate.begin(), candidate.end())) {
          out->push_back({s, e, !elastic});
          i = e;
          continue;
        }
      }
    }
    const size_t eol = LineEnd(t, s);
    i = eol < t.size() ? eol + 1 : eol;
  }
}

// Units of a JSON value whose string values may shrink: syntax between string contents is one
// forced unit each; contents are split like text, escapes whole.
void SplitJson(std::string_view t, size_t begin, size_t end, int32_t index, Splitter* splitter,
               std::vector<Unit>* out) {
  size_t chunk = begin;  // start of the pending syntax chunk
  const auto emit_chunk = [&](size_t to) {
    if (to <= chunk) return;
    Unit u;
    u.begin = static_cast<uint32_t>(chunk);
    u.end = static_cast<uint32_t>(to);
    u.flags = kUnitForced | kUnitVerbatim | kUnitJson;
    if (t[chunk] == '"') u.flags |= kUnitGlueLeft;
    if (t[to - 1] == '"') u.flags |= kUnitGlueRight;
    u.json = index;
    out->push_back(u);
  };
  size_t k = begin;
  while (k < end) {
    if (t[k] != '"') {
      ++k;
      continue;
    }
    size_t q = k + 1;
    while (q < end && t[q] != '"') q += t[q] == '\\' ? 2 : 1;
    // Keys (a colon follows) are syntax; so are empty strings.
    size_t after = q + 1;
    while (after < end && IsAsciiSpace(t[after])) ++after;
    const bool key = after < end && t[after] == ':';
    if (!key && q > k + 1) {
      emit_chunk(k + 1);
      const size_t first = out->size();
      splitter->Split(k + 1, q, /*json_string=*/true, out);
      for (size_t u = first; u < out->size(); ++u) {
        (*out)[u].flags |= kUnitJson;
        (*out)[u].json = index;
      }
      chunk = q;
    }
    k = q + 1;
  }
  emit_chunk(end);
}

void ForceRanges(std::vector<std::pair<size_t, size_t>> ranges, std::vector<Unit>* units) {
  std::sort(ranges.begin(), ranges.end());
  size_t r = 0;
  for (Unit& u : *units) {
    while (r < ranges.size() && ranges[r].second <= u.begin) ++r;
    for (size_t k = r; k < ranges.size() && ranges[k].first < u.end; ++k) {
      if (ranges[k].second > u.begin) {
        u.flags |= kUnitForced;
        break;
      }
    }
  }
}

// Line-leading Markdown markers and speaker labels ("User:", "Speaker 2:", "Q:").
void FindMarkers(std::string_view t, std::vector<std::pair<size_t, size_t>>* out) {
  size_t i = 0;
  while (i < t.size()) {
    const size_t s = SkipIndent(t, i);
    const size_t eol = LineEnd(t, s);
    const auto space_at = [&](size_t k) { return k >= eol || t[k] == ' ' || t[k] == '\t'; };
    if (s < eol) {
      size_t k = s;
      if (t[s] == '#') {
        while (k < eol && t[k] == '#') ++k;
        if (k - s <= 6 && space_at(k)) out->push_back({s, k});
      } else if ((t[s] == '-' || t[s] == '*' || t[s] == '+' || t[s] == '>') && space_at(s + 1)) {
        out->push_back({s, s + 1});
      } else if (IsAsciiDigit(t[s])) {
        while (k < eol && IsAsciiDigit(t[k])) ++k;
        if (k - s <= 3 && k < eol && (t[k] == '.' || t[k] == ')') && space_at(k + 1)) {
          out->push_back({s, k + 1});
        }
      }
      if (std::isalpha(static_cast<unsigned char>(t[s]))) {
        // Up to three words (later ones capitalised or numeric), then a colon and a space.
        const auto label_char = [](char c) {
          return IsAsciiAlnum(c) || c == '_' || c == '\'' || c == '.' || c == '-';
        };
        size_t e = s;
        for (int words = 0; words < 3; ++words) {
          const size_t w = e;
          while (e < eol && label_char(t[e])) ++e;
          if (e == w) break;
          if (words > 0 && !std::isupper(static_cast<unsigned char>(t[w])) && !IsAsciiDigit(t[w])) {
            break;
          }
          if (e < eol && t[e] == ':') {
            const bool upper = std::isupper(static_cast<unsigned char>(t[s]));
            const bool lower_single = words == 0 && e - s <= 12;
            if ((upper || lower_single) && e - s <= 40 && space_at(e + 1)) {
              out->push_back({s, e + 1});
            }
            break;
          }
          if (e < eol && t[e] == ' ') {
            ++e;
            continue;
          }
          break;
        }
      }
    }
    i = eol < t.size() ? eol + 1 : eol;
  }
}

void FindForceTokens(std::string_view t, const std::vector<std::string>& tokens,
                     std::vector<std::pair<size_t, size_t>>* out) {
  for (const std::string& tok : tokens) {
    if (tok.empty()) continue;
    if (std::all_of(tok.begin(), tok.end(), IsAsciiSpace)) continue;  // whitespace always stays
    const bool word_start = IsAsciiAlnum(tok.front());
    const bool word_end = IsAsciiAlnum(tok.back());
    for (size_t p = t.find(tok); p != std::string_view::npos; p = t.find(tok, p + 1)) {
      const size_t e = p + tok.size();
      if (word_start && p > 0 && IsAsciiAlnum(t[p - 1])) continue;
      if (word_end && e < t.size() && IsAsciiAlnum(t[e])) continue;
      out->push_back({p, e});
    }
  }
}

}  // namespace

Layout SplitUnits(const MarkedText& marked, const StructureOptions& options) {
  const std::string_view t = marked.text;
  Layout layout;

  // Verbatim and JSON blocks; overlapping ones merge (verbatim wins).
  std::vector<Block> blocks;
  for (const MarkupSpan& s : marked.spans) {
    if (s.keep) blocks.push_back({s.begin, s.end, true});
  }
  FindFences(t, &blocks);
  FindJson(t, options.compress_json_strings, &blocks);
  std::sort(blocks.begin(), blocks.end(),
            [](const Block& a, const Block& b) { return a.begin < b.begin; });
  std::vector<Block> merged;
  for (const Block& b : blocks) {
    if (b.end <= b.begin) continue;
    if (!merged.empty() && b.begin < merged.back().end) {
      merged.back().end = std::max(merged.back().end, b.end);
      merged.back().verbatim = true;  // JSON overlapping a fence or keep span stays whole
      continue;
    }
    merged.push_back(b);
  }

  std::vector<size_t> breaks;
  for (const MarkupSpan& s : marked.spans) {
    breaks.push_back(s.begin);
    breaks.push_back(s.end);
  }
  std::sort(breaks.begin(), breaks.end());
  Splitter splitter(t, breaks);

  size_t pos = 0;
  for (const Block& b : merged) {
    splitter.Split(pos, b.begin, false, &layout.units);
    if (b.verbatim) {
      Unit u;
      u.begin = static_cast<uint32_t>(b.begin);
      u.end = static_cast<uint32_t>(b.end);
      u.flags = kUnitForced | kUnitVerbatim;
      layout.units.push_back(u);
    } else {
      const auto index = static_cast<int32_t>(layout.json.size());
      layout.json.push_back({static_cast<uint32_t>(b.begin), static_cast<uint32_t>(b.end)});
      SplitJson(t, b.begin, b.end, index, &splitter, &layout.units);
    }
    pos = b.end;
  }
  splitter.Split(pos, t.size(), false, &layout.units);
  JoinWholeUnits(t, breaks, &layout.units);

  // Flags: digits, rate spans, forced ranges.
  size_t span = 0;
  for (Unit& u : layout.units) {
    for (size_t k = u.begin; k < u.end; ++k) {
      if (IsAsciiDigit(t[k])) {
        u.flags |= kUnitDigit;
        break;
      }
    }
    if (options.keep_digits && (u.flags & kUnitDigit)) u.flags |= kUnitForced;
    while (span < marked.spans.size() && marked.spans[span].end <= u.begin) ++span;
    if (span < marked.spans.size() && marked.spans[span].begin <= u.begin &&
        !marked.spans[span].keep) {
      u.span = static_cast<int32_t>(span);
    }
  }
  std::vector<std::pair<size_t, size_t>> forced;
  if (options.keep_markers) FindMarkers(t, &forced);
  FindForceTokens(t, options.force_tokens, &forced);
  ForceRanges(std::move(forced), &layout.units);
  return layout;
}

std::string Assemble(std::string_view t, std::span<const Unit> units,
                     const std::vector<bool>& kept) {
  std::string out;
  out.reserve(t.size());
  const Unit* prev = nullptr;
  bool dropped = false;

  // Newlines and indentation standing in for a gap that held a line break.
  const auto newline_gap = [&](std::string_view g) {
    const size_t last_nl = g.rfind('\n');
    bool blank = false;
    size_t nl_count = 0;
    for (size_t k = 0; k < g.size(); ++k) {
      if (g[k] != '\n') continue;
      ++nl_count;
      size_t m = k + 1;
      while (m < g.size() && (g[m] == ' ' || g[m] == '\t' || g[m] == '\r')) ++m;
      if (m < g.size() && g[m] == '\n') blank = true;
    }
    const bool crlf = last_nl > 0 && g[last_nl - 1] == '\r';
    std::string s;
    const int n = blank ? 2 : 1;
    for (int k = 0; k < n; ++k) s += crlf ? "\r\n" : "\n";
    size_t e = last_nl + 1;
    while (e < g.size() && (g[e] == ' ' || g[e] == '\t')) ++e;
    s.append(g.substr(last_nl + 1, e - last_nl - 1));
    return s;
  };

  for (size_t k = 0; k < units.size(); ++k) {
    const Unit& u = units[k];
    if (!kept[k]) {
      dropped = true;
      continue;
    }
    const size_t a_end = prev ? prev->end : 0;
    const std::string_view g = t.substr(a_end, u.begin - a_end);
    if (!dropped) {
      out.append(g);
    } else if (prev == nullptr) {
      const size_t nl = g.rfind('\n');
      if (nl != std::string_view::npos) {
        size_t e = nl + 1;
        while (e < g.size() && (g[e] == ' ' || g[e] == '\t')) ++e;
        out.append(g.substr(nl + 1, e - nl - 1));
      }
    } else if (g.find('\n') != std::string_view::npos) {
      out.append(newline_gap(g));
    } else {
      const bool a_adjacent = !g.empty() && !IsAsciiSpace(g.front());
      const bool b_adjacent = !g.empty() && !IsAsciiSpace(g.back());
      size_t len;
      const char32_t a_last = LastCodePoint(t, prev->begin, prev->end);
      const char32_t b_first = DecodeAt(t, u.begin, &len);
      const bool no_space =
          (a_adjacent && ((prev->flags & kUnitGlueRight) ||
                          (!(prev->flags & kUnitVerbatim) && IsOpener(a_last)))) ||
          (b_adjacent &&
           ((u.flags & kUnitGlueLeft) || (!(u.flags & kUnitVerbatim) && IsCloser(b_first))));
      const bool has_space =
          std::any_of(g.begin(), g.end(), [](char c) { return IsAsciiSpace(c); });
      if (!no_space && (has_space || (IsFusingWordChar(a_last) && IsFusingWordChar(b_first)))) {
        out.push_back(' ');
      }
    }
    out.append(t.substr(u.begin, u.end - u.begin));
    prev = &u;
    dropped = false;
  }
  const size_t a_end = prev ? prev->end : 0;
  if (!dropped) {
    out.append(t.substr(a_end));
  } else if (prev != nullptr) {
    size_t e = t.size();
    while (e > a_end && IsAsciiSpace(t[e - 1])) --e;
    out.append(t.substr(e));
  }
  return out;
}

std::vector<size_t> SentenceStarts(std::string_view t, std::span<const Unit> units) {
  std::vector<size_t> starts;
  if (units.empty()) return starts;
  starts.push_back(0);
  for (size_t k = 0; k + 1 < units.size(); ++k) {
    const Unit& u = units[k];
    const std::string_view gap = t.substr(u.end, units[k + 1].begin - u.end);
    if (gap.find('\n') != std::string_view::npos) {
      starts.push_back(k + 1);
      continue;
    }
    if (gap.empty() || (u.flags & kUnitVerbatim)) continue;
    const char c = t[u.begin];
    const bool final_punct =
        c == '.' || c == '!' || c == '?' || t.substr(u.begin, u.end - u.begin) == "\xE2\x80\xA6";
    if (final_punct) starts.push_back(k + 1);
  }
  return starts;
}

std::vector<std::pair<size_t, size_t>> SplitWords(std::string_view text) {
  Splitter splitter(text, {});
  std::vector<Unit> units;
  splitter.Split(0, text.size(), false, &units);
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(units.size());
  for (const Unit& u : units) out.push_back({u.begin, u.end});
  return out;
}

namespace {

// Distinct case-folded words of `text` that hold a letter or digit.
std::vector<std::string> WordSet(std::string_view text) {
  std::vector<std::string> out;
  for (const auto& [b, e] : SplitWords(text)) {
    std::string w(text.substr(b, e - b));
    size_t len;
    if (Classify(DecodeAt(w, 0, &len)) != Cls::kWord) continue;
    for (char& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.push_back(std::move(w));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

std::vector<double> QuestionOverlap(std::string_view question,
                                    const std::vector<std::string_view>& texts) {
  const std::vector<std::string> q = WordSet(question);
  std::vector<std::vector<std::string>> sets;
  for (std::string_view t : texts) sets.push_back(WordSet(t));
  const double n = static_cast<double>(texts.size());
  std::vector<double> idf(q.size(), 0.0);
  double total = 0;
  for (size_t k = 0; k < q.size(); ++k) {
    double df = 0;
    for (const auto& s : sets) df += std::binary_search(s.begin(), s.end(), q[k]) ? 1 : 0;
    idf[k] = df > 0 ? std::log((n + 1.0) / (df + 0.5)) : 0.0;
    total += idf[k];
  }
  std::vector<double> out(texts.size(), 0.0);
  if (total <= 0) return out;
  for (size_t i = 0; i < sets.size(); ++i) {
    double have = 0;
    for (size_t k = 0; k < q.size(); ++k) {
      if (std::binary_search(sets[i].begin(), sets[i].end(), q[k])) have += idf[k];
    }
    out[i] = have / total;
  }
  return out;
}

}  // namespace terse::compressor::lingua
