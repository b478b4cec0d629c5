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

// tiktoken's patterns are written for Rust's regex crate, where \s is Unicode White_Space. PCRE2's
// \s (with UCP) also matches U+180E and other legacy spaces, so \s and \S are spelled out as
// explicit White_Space classes. InvalidArgument for \S inside a character class (no tiktoken
// pattern has one).
absl::StatusOr<std::string> RewriteTiktokenPattern(std::string_view pattern);

}  // namespace terse::compressor
