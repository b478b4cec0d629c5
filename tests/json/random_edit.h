// Random edits of JSON texts, for the tests that hold terse's JSON code to nlohmann's verdicts.
#pragma once

#include <cstddef>
#include <random>
#include <string>
#include <string_view>

namespace terse::json {

// One random edit of non-empty `text`: a byte replaced by, or preceded by, one of `alphabet`, or
// erased.
inline void RandomEdit(std::string& text, std::mt19937& rng, std::string_view alphabet) {
  const size_t at = rng() % text.size();
  const char c = alphabet[rng() % alphabet.size()];
  switch (rng() % 3) {
    case 0:
      text[at] = c;
      break;
    case 1:
      text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
      break;
    default:
      text.erase(at, 1);
      break;
  }
}

}  // namespace terse::json
