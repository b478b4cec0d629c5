// Text helpers of TargetTokenizer: UTF-8 validation and repair, and the rewrite that makes a
// tiktoken regex mean under PCRE2 what it means under Rust's regex crate.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace terse::compressor {

// True when `text` is well-formed UTF-8 (no surrogates, no overlong forms, at most U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Replaces each maximal ill-formed subsequence of `text` by U+FFFD (the WHATWG decoder's rule,
// which Node's TextDecoder and Buffer.toString follow); valid parts are copied unchanged.
std::string ReplaceInvalidUtf8(std::string_view text);

// tiktoken's patterns are written for Rust's regex crate; this makes them mean the same under
// PCRE2 (UTF + UCP). \s is Unicode White_Space there, while PCRE2's \s also matches U+180E, so
// \s and \S are spelled out as explicit White_Space classes. \p{..} categories follow Unicode
// 16 there and Unicode 14 in Debian's PCRE2: with `unicode16_categories`, the code points
// added since are appended to each category (a slower pattern, needed only for text that
// HasCodePointsNewerThanPcre2). InvalidArgument for \S or an extended \P{..} inside a
// character class (no tiktoken pattern has one), or an unterminated \p{.}.
absl::StatusOr<std::string> RewriteTiktokenPattern(std::string_view pattern,
                                                   bool unicode16_categories);

// True when valid UTF-8 `text` holds a code point that Unicode 15 or 16 added to a category
// tiktoken's patterns use (letters, marks, numbers); only then do the two rewrites differ.
bool HasCodePointsNewerThanPcre2(std::string_view text);

}  // namespace terse::compressor
