// The rank table of a byte-level BPE and its merge loop; TargetTokenizer's engine, kept apart
// from pre-tokenization so it can be tested on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace terse::compressor {

// Token bytes <-> rank for one encoding. Immutable after Parse; thread-safe.
class BpeRanks {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  // Pieces longer than this merge with a heap (O(n log n)) instead of the quadratic scan that is
  // faster on the short pieces ordinary text yields. Both give the same ranks.
  static constexpr size_t kHeapMergeThreshold = 96;

  // Parses tiktoken's `bpe_ranks` text: lines "! <first rank> <base64 token> <base64 token> ...",
  // the tokens of a line taking consecutive ranks. DataLoss when a line is malformed, a rank or
  // a token repeats, or a single byte has no rank (then some input could not be encoded).
  static absl::StatusOr<BpeRanks> Parse(std::string_view text);

  // The rank of exactly these bytes, or kNone.
  uint32_t Find(std::string_view bytes) const;
  // The bytes of `rank`; empty when no token has that rank.
  std::string_view Bytes(uint32_t rank) const;
  // One more than the highest rank.
  size_t size() const { return offsets_.empty() ? 0 : offsets_.size() - 1; }

  // Appends the ranks of `piece` (non-empty): the whole piece when it is a token, else the
  // standard byte-pair merge (repeatedly join the adjacent pair with the lowest rank, leftmost
  // first on ties).
  void AppendPiece(std::string_view piece, std::vector<uint32_t>& ids) const;
  // == the number of ranks AppendPiece would append.
  size_t CountPiece(std::string_view piece) const;

  // The two merge loops, exposed so tests can check they agree on any piece.
  void AppendMergedQuadratic(std::string_view piece, std::vector<uint32_t>& ids) const;
  void AppendMergedHeap(std::string_view piece, std::vector<uint32_t>& ids) const;

 private:
  // Most tokens are at most 8 bytes: then `head` and `length` decide a match without touching
  // arena_, so a lookup usually costs one cache line.
  struct Slot {
    uint64_t head;    // the first 8 bytes of the token, little-endian, zero-padded
    uint32_t length;  // of the token in bytes
    uint32_t rank;    // kNone when the slot is empty
  };

  // Calls sink(begin, end) for each merged part of `piece`, left to right.
  template <typename Sink>
  void MergeQuadratic(std::string_view piece, Sink&& sink) const;
  template <typename Sink>
  void MergeHeap(std::string_view piece, Sink&& sink) const;
  template <typename Sink>
  void Merge(std::string_view piece, Sink&& sink) const;

  std::string arena_;              // all token bytes, in rank order
  std::vector<uint32_t> offsets_;  // rank r is arena_[offsets_[r], offsets_[r + 1])
  std::vector<Slot> slots_;        // open addressing, linear probing; size is a power of two
  uint64_t mask_ = 0;
};

}  // namespace terse::compressor
