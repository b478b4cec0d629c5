// Generated English-like prose for the compressor's tests and benchmarks: one generator, so a
// figure in the README and a test speak of the same kind of text. Header-only, no test framework.
#pragma once

#include <cctype>
#include <cstdint>
#include <random>
#include <string>

#include "compressor/target_tokenizer.h"

namespace terse::testing {

// Prose of at least `tokens` tokens of `counter`: sentences from a fixed vocabulary with numbers,
// punctuation and paragraph breaks. Deterministic for a seed.
inline std::string Prose(const compressor::TargetTokenizer& counter, size_t tokens,
                         uint32_t seed = 1) {
  static const char* kWords[] = {
      "the",      "model",    "reads",    "a",        "long",    "report",    "about",     "river",
      "trade",    "in",       "northern", "towns",    "where",   "merchants", "sold",      "grain",
      "and",      "salt",     "to",       "sailors",  "who",     "arrived",   "each",      "spring",
      "with",     "letters",  "from",     "distant",  "cities",  "council",   "decided",   "that",
      "every",    "ship",     "should",   "pay",      "tax",     "before",    "unloading", "its",
      "cargo",    "but",      "many",     "captains", "refused", "because",   "prices",    "were",
      "already",  "high",     "after",    "the",      "storm",   "of",        "winter",    "bridge",
      "was",      "rebuilt",  "by",       "workers",  "paid",    "silver",    "coins",     "this",
      "story",    "explains", "how",      "small",    "harbors", "grew",      "into",      "busy",
      "markets",  "over",     "several",  "decades",  "while",   "farmers",   "planted",   "barley",
      "near",     "old",      "mills",    "children", "learned", "numbers",   "at",        "school",
      "teachers", "wrote",    "careful",  "notes",    "on",      "weather",   "tides",     "roads",
      "is",       "important"};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  std::mt19937 rng(seed);
  std::string text;
  size_t sentences = 0;
  size_t next_check = tokens * 3;  // bytes; cl100k averages well over 3 bytes per token here
  while (true) {
    std::string sentence;
    const size_t len = 6 + rng() % 14;
    for (size_t w = 0; w < len; ++w) {
      std::string word = kWords[rng() % kCount];
      if (w == 0) word[0] = static_cast<char>(std::toupper(word[0]));
      if (!sentence.empty()) sentence += ' ';
      sentence += word;
      if (rng() % 17 == 0) sentence += " " + std::to_string(rng() % 2000);
      if (w + 1 < len && rng() % 9 == 0) sentence += ',';
    }
    sentence += rng() % 6 == 0 ? "?" : ".";
    if (!text.empty()) text += (++sentences % 5 == 0) ? "\n\n" : " ";
    text += sentence;
    if (text.size() < next_check) continue;
    const size_t have = counter.Count(text);
    if (have >= tokens) break;
    next_check = text.size() + (tokens - have) * 3;
  }
  return text;
}

}  // namespace terse::testing
