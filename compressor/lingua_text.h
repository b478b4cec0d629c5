// The text side of compression: terse markup, the units a compressor keeps or drops (words,
// punctuation, atomic structure), and the reassembly of kept units with normalised whitespace.
// Pure functions over bytes; no model involved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace terse::compressor::lingua {

// A region of markup-free text that a tag marked: <terse:keep> (kept verbatim) or
// <terse rate=R> (compressed at R whatever the global budget says).
struct MarkupSpan {
  size_t begin = 0;
  size_t end = 0;
  bool keep = false;
  double rate = 1.0;  // meaningful when !keep
};

struct MarkedText {
  std::string text;               // the input with every terse tag removed
  std::vector<MarkupSpan> spans;  // sorted, disjoint, non-empty
};

// Removes `<terse:keep>`, `</terse:keep>`, `<terse rate=R>` (R may be quoted) and `</terse>`, and
// LLMLingua's structured-prompt tags as their aliases: `<llmlingua, compress=False>` (keep),
// `<llmlingua, rate=R>` (a rate), `<llmlingua>` (the global budget), each closed by
// `</llmlingua>`. Tags nest: inside a keep span everything is kept; otherwise the innermost rate
// applies. A closing tag ends the innermost open tag of its own kind (terse keep, terse rate,
// llmlingua); an unclosed tag extends to the end; a closing tag with nothing open is dropped.
// Errors: InvalidArgument when R is not a number in [0, 1] or an llmlingua tag has another
// attribute.
absl::StatusOr<MarkedText> ParseMarkup(std::string_view text);

// What a unit is, for the keep decision and for reassembly.
enum UnitFlag : uint8_t {
  kUnitForced = 1,      // always kept (keep span, code, JSON syntax, markers, force tokens...)
  kUnitVerbatim = 2,    // one atomic block (code fence, JSON value, keep span): bytes as is
  kUnitDigit = 4,       // contains an ASCII digit
  kUnitGlueLeft = 8,    // JSON: starts with a closing quote, so no space may precede it
  kUnitGlueRight = 16,  // JSON: ends with an opening quote, so no space may follow it
  kUnitJson = 32,       // part of a JSON value whose string contents may shrink
};

// The smallest thing kept or dropped: a word (letters, digits, inner apostrophes, a number with
// its decimal point), a run of one punctuation character, one CJK character or emoji with its
// modifiers, a URL, an e-mail address, an inline `code` span, or a verbatim block; and what
// must not be cut (whole_units.h): a number with its sign, currency and unit, a date, an
// identifier with digits, a multi-word proper name, which may hold single spaces. Other
// whitespace belongs to no unit; nothing smaller than a unit is dropped.
struct Unit {
  uint32_t begin = 0;
  uint32_t end = 0;
  uint8_t flags = 0;
  int32_t span = -1;  // index of the MarkupSpan with a rate that holds it; -1: none
  int32_t json = -1;  // index of the JSON value (in Layout::json) that holds it; -1: none
};

struct StructureOptions {
  std::vector<std::string> force_tokens;  // occurrences force the units they touch
  bool keep_digits = false;               // units with a digit are forced
  bool compress_json_strings = false;     // JSON: string values may shrink (else kept whole)
  bool keep_markers = true;  // line-leading Markdown markers and speaker labels ("User:") forced
};

struct Layout {
  std::vector<Unit> units;                          // sorted by position, disjoint
  std::vector<std::pair<uint32_t, uint32_t>> json;  // byte ranges of JSON values with elastic
                                                    // strings (validated after reassembly)
};

// Splits `marked.text` into units. Code fences (``` or ~~~ to the closing fence, or the end),
// keep spans and (unless compress_json_strings) JSON values that start a line or make up the
// whole text become single verbatim forced units.
Layout SplitUnits(const MarkedText& marked, const StructureOptions& options);

// The text of the kept units. Between two kept units with nothing dropped between them the
// original bytes are copied; where units were dropped the gap becomes: a newline (two when the
// gap held a blank line) plus the indentation of the next line when the gap held a newline; else
// one space when it held whitespace or when two words would otherwise fuse; else nothing. No space
// is put after an opening bracket or quote, or before closing punctuation, whose neighbour was
// dropped. Trailing whitespace of the text is kept when the last unit is.
std::string Assemble(std::string_view text, std::span<const Unit> units,
                     const std::vector<bool>& kept);

// Indices of the units that start a sentence (always 0 when there are units): a sentence ends
// after a unit of [.!?] (or an ellipsis) followed by whitespace, and at every line break.
std::vector<size_t> SentenceStarts(std::string_view text, std::span<const Unit> units);

// Word-level units of arbitrary text for recovery (same rules as SplitUnits, no structure).
std::vector<std::pair<size_t, size_t>> SplitWords(std::string_view text);

// How much of the question's vocabulary each text contains, in [0, 1]: the IDF-weighted share
// (IDF over `texts`) of the question's distinct words (case-folded, punctuation ignored) found
// in the text. Words in no text carry no weight; 0 when none of the question's words occur.
std::vector<double> QuestionOverlap(std::string_view question,
                                    const std::vector<std::string_view>& texts);

}  // namespace terse::compressor::lingua
