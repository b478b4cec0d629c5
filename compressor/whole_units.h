// Units the compressor keeps or drops whole: a number with its sign, currency, decimals and unit;
// a date; an identifier or time with digits; a multi-word proper name. Cutting any of them in
// half changes what the text says ("$2.4 million" -> "2.4", "Idris Bramwell" -> "Bramwell").
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "compressor/lingua_text.h"

namespace terse::compressor::lingua {

// Joins runs of word-level units of `text` (as Splitter made them, in order) into one unit each:
//   - glued pieces with a digit: "KX-4821", "2024-05-17", "00:12:31", "3/4";
//   - a number with its sign or currency before it and "%" after it: "-4", "$3.50", "15%";
//   - a number and a unit or scale word after one space: "3.5 km", "$2.4 million";
//   - dates: "14 March 2003", "March 14, 2003", "March 2003";
//   - two or more capitalised words (with "of", "de", "van"... between them) that do not start
//     with a function word: "Idris Bramwell", "Bank of England", "Port Elsinore".
// Only plain units join (no verbatim or JSON units), never across a line break, more than one
// space, or one of `breaks` (markup boundaries, sorted).
void JoinWholeUnits(std::string_view text, const std::vector<size_t>& breaks,
                    std::vector<Unit>* units);

}  // namespace terse::compressor::lingua
