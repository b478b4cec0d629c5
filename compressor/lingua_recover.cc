// RecoverAnswer: map quoted runs of an answer back to the original prompt through the word
// alignment between the original and its compression (the compression only deletes words).
#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "compressor/compressor.h"
#include "compressor/lingua_text.h"

namespace terse::compressor {
namespace {

struct Words {
  std::string_view text;
  std::vector<std::pair<size_t, size_t>> spans;
  std::string_view At(size_t i) const {
    return text.substr(spans[i].first, spans[i].second - spans[i].first);
  }
  size_t size() const { return spans.size(); }
};

// A span of the original is accepted only if the compression plausibly deleted this much.
constexpr size_t kMaxInsertedPerWord = 3;
constexpr size_t kMaxInsertedBase = 8;

}  // namespace

std::string RecoverAnswer(std::string_view original, std::string_view compressed,
                          std::string_view answer) {
  Words o{original, lingua::SplitWords(original)};
  Words c{compressed, lingua::SplitWords(compressed)};
  Words a{answer, lingua::SplitWords(answer)};
  if (a.size() < 2 || c.size() < 2) return std::string(answer);

  // Compressed word j -> original word index (greedy in-order match; -1 when unmatched).
  std::vector<long> align(c.size(), -1);
  size_t next = 0;
  for (size_t j = 0; j < c.size() && next < o.size(); ++j) {
    for (size_t k = next; k < o.size(); ++k) {
      if (o.At(k) == c.At(j)) {
        align[j] = static_cast<long>(k);
        next = k + 1;
        break;
      }
    }
  }
  std::unordered_map<std::string_view, std::vector<size_t>> where;
  for (size_t j = 0; j < c.size(); ++j) where[c.At(j)].push_back(j);

  std::string out;
  size_t copied = 0;  // answer bytes already written
  size_t i = 0;
  while (i + 1 < a.size()) {
    // The longest run a[i..i+len) found contiguously in c; among equal runs the one whose
    // original span is shortest.
    size_t best_len = 0;
    size_t best_o_begin = 0, best_o_end = 0;
    auto it = where.find(a.At(i));
    if (it != where.end()) {
      for (size_t j : it->second) {
        size_t len = 1;
        while (i + len < a.size() && j + len < c.size() && a.At(i + len) == c.At(j + len)) ++len;
        if (len < 2 || align[j] < 0 || align[j + len - 1] < align[j]) continue;
        const size_t ob = static_cast<size_t>(align[j]);
        const size_t oe = static_cast<size_t>(align[j + len - 1]);
        if (oe - ob + 1 > len * (1 + kMaxInsertedPerWord) + kMaxInsertedBase) continue;
        if (len > best_len || (len == best_len && oe - ob < best_o_end - best_o_begin)) {
          best_len = len;
          best_o_begin = ob;
          best_o_end = oe;
        }
      }
    }
    if (best_len < 2) {
      ++i;
      continue;
    }
    if (best_o_end - best_o_begin + 1 > best_len) {
      out.append(answer.substr(copied, a.spans[i].first - copied));
      out.append(original.substr(o.spans[best_o_begin].first,
                                 o.spans[best_o_end].second - o.spans[best_o_begin].first));
      copied = a.spans[i + best_len - 1].second;
    }
    i += best_len;
  }
  out.append(answer.substr(copied));
  return out;
}

}  // namespace terse::compressor
