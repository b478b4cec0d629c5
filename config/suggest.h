// "Did you mean" suggestions for misspelt keys, names and values. Private to config/.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace terse::config {

// Edit distance counting insertions, deletions, substitutions and adjacent transpositions.
size_t EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is close enough to be a likely typo (ties: the first),
// else the only candidate that starts with `word` (a truncated value).
std::optional<std::string> ClosestMatch(std::string_view word,
                                        const std::vector<std::string>& candidates);

// ` (did you mean "x"?)` when a close candidate exists, else "".
std::string DidYouMean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace terse::config
