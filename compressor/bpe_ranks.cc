// BpeRanks: parsing tiktoken's rank lines, the bytes->rank hash table and the two merge loops.
#include "compressor/bpe_ranks.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace terse::compressor {
namespace {

// The first min(n, 8) bytes at p as a little-endian word, zero-padded, without a variable-length
// memcpy: two overlapping 4-byte loads, or three single bytes below 4.
inline uint64_t LoadHead(const char* p, size_t n) {
  if (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }
  if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    return lo | static_cast<uint64_t>(hi) << ((n - 4) * 8);
  }
  if (n == 0) return 0;
  const auto b = [p](size_t i) { return static_cast<uint64_t>(static_cast<uint8_t>(p[i])); };
  return b(0) | b(n >> 1) << ((n >> 1) * 8) | b(n - 1) << ((n - 1) * 8);
}

// A fast hash for short byte strings: 8-byte words folded with a multiply, then a final
// avalanche so the bucket (low bits) depends on every byte.
inline uint64_t HashBytes(uint64_t head, const char* p, size_t n) {
  constexpr uint64_t kMul = 0x9FB21C651E98DF25ull;
  uint64_t h = (0x243F6A8885A308D3ull ^ (n * kMul) ^ head) * kMul;
  for (size_t i = 8; i < n; i += 8) {
    h ^= h >> 32;
    h = (h ^ LoadHead(p + i, std::min<size_t>(8, n - i))) * kMul;
  }
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return h;
}

constexpr std::array<int8_t, 256> MakeBase64Table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr std::array<int8_t, 256> kBase64 = MakeBase64Table();

// Appends the standard (padded) base64 decoding of `in` to `out`; false when `in` is malformed.
bool AppendBase64Decoded(std::string_view in, std::string& out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  size_t pad = 0;
  if (in.back() == '=') pad = in[in.size() - 2] == '=' ? 2 : 1;
  const size_t body = in.size() - pad;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < body; ++i) {
    const int8_t v = kBase64[static_cast<uint8_t>(in[i])];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

bool ParseUint32(std::string_view s, uint32_t& out) {
  if (s.empty() || s.size() > 9) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  out = v;
  return true;
}

}  // namespace

absl::StatusOr<BpeRanks> BpeRanks::Parse(std::string_view text) {
  struct Token {
    uint32_t rank;
    uint32_t offset;  // into `decoded`
    uint32_t length;
  };
  std::vector<Token> tokens;
  std::string decoded;
  decoded.reserve(text.size() * 3 / 4);
  size_t line_number = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    // Fields: "!", the first rank, then the tokens.
    size_t field = 0;
    uint32_t next_rank = 0;
    for (size_t start = 0; start <= line.size();) {
      size_t end = line.find(' ', start);
      if (end == std::string_view::npos) end = line.size();
      const std::string_view f = line.substr(start, end - start);
      start = end + 1;
      if (f.empty()) continue;
      if (field == 0) {
        if (f != "!")
          return absl::DataLossError(
              absl::StrCat("bpe_ranks line ", line_number, ": does not start with '!'"));
      } else if (field == 1) {
        if (!ParseUint32(f, next_rank)) {
          return absl::DataLossError(absl::StrCat("bpe_ranks line ", line_number, ": bad rank"));
        }
      } else {
        const size_t before = decoded.size();
        if (!AppendBase64Decoded(f, decoded) || decoded.size() == before) {
          return absl::DataLossError(absl::StrCat("bpe_ranks line ", line_number,
                                                  ": bad base64 token at rank ", next_rank));
        }
        if (decoded.size() > UINT32_MAX || next_rank == kNone - 1) {
          return absl::DataLossError("bpe_ranks too large");
        }
        tokens.push_back({next_rank++, static_cast<uint32_t>(before),
                          static_cast<uint32_t>(decoded.size() - before)});
      }
      ++field;
    }
    if (field < 2) {
      return absl::DataLossError(absl::StrCat("bpe_ranks line ", line_number, ": too short"));
    }
  }
  if (tokens.empty()) return absl::DataLossError("bpe_ranks holds no tokens");

  // Lay the bytes out in rank order; ranks nobody has get an empty range.
  if (!std::is_sorted(tokens.begin(), tokens.end(),
                      [](const Token& a, const Token& b) { return a.rank < b.rank; })) {
    std::stable_sort(tokens.begin(), tokens.end(),
                     [](const Token& a, const Token& b) { return a.rank < b.rank; });
  }
  BpeRanks r;
  const uint32_t max_rank = tokens.back().rank;
  r.arena_.reserve(decoded.size());
  r.offsets_.assign(static_cast<size_t>(max_rank) + 2, 0);
  uint32_t next = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    if (i > 0 && tokens[i - 1].rank == t.rank) {
      return absl::DataLossError(absl::StrCat("bpe_ranks: rank ", t.rank, " appears twice"));
    }
    for (; next <= t.rank; ++next) r.offsets_[next] = static_cast<uint32_t>(r.arena_.size());
    r.arena_.append(decoded, t.offset, t.length);
  }
  for (; next < r.offsets_.size(); ++next) {
    r.offsets_[next] = static_cast<uint32_t>(r.arena_.size());
  }

  size_t capacity = 16;
  while (capacity < tokens.size() * 2) capacity *= 2;
  r.slots_.assign(capacity, Slot{0, 0, kNone});
  r.mask_ = capacity - 1;
  for (const Token& t : tokens) {
    const std::string_view bytes = r.Bytes(t.rank);
    if (r.Find(bytes) != kNone) {
      return absl::DataLossError(
          absl::StrCat("bpe_ranks: the token of rank ", t.rank, " appears twice"));
    }
    const uint64_t head = LoadHead(bytes.data(), bytes.size());
    uint64_t i = HashBytes(head, bytes.data(), bytes.size()) & r.mask_;
    while (r.slots_[i].rank != kNone) i = (i + 1) & r.mask_;
    r.slots_[i] = Slot{head, t.length, t.rank};
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    if (r.Find(std::string_view(&c, 1)) == kNone) {
      return absl::DataLossError(absl::StrCat("bpe_ranks: byte ", b, " has no rank"));
    }
  }
  return r;
}

uint32_t BpeRanks::Find(std::string_view bytes) const {
  const char* p = bytes.data();
  const size_t n = bytes.size();
  const uint64_t head = LoadHead(p, n);
  for (uint64_t i = HashBytes(head, p, n) & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.rank == kNone) return kNone;
    if (s.head == head && s.length == n &&
        (n <= 8 || std::memcmp(arena_.data() + offsets_[s.rank] + 8, p + 8, n - 8) == 0)) {
      return s.rank;
    }
  }
}

std::string_view BpeRanks::Bytes(uint32_t rank) const {
  if (static_cast<size_t>(rank) + 1 >= offsets_.size()) return {};
  return std::string_view(arena_).substr(offsets_[rank], offsets_[rank + 1] - offsets_[rank]);
}

template <typename Sink>
void BpeRanks::MergeQuadratic(std::string_view piece, Sink&& sink) const {
  // parts[i].start: where part i begins (parts[count - 1] is the end sentinel);
  // parts[i].rank: the rank of part i joined with part i + 1, kNone when they are no token.
  struct Part {
    uint32_t start;
    uint32_t rank;
  };
  const size_t n = piece.size();
  Part stack_parts[kHeapMergeThreshold + 1];
  std::vector<Part> heap_parts;
  Part* parts = stack_parts;
  if (n + 1 > std::size(stack_parts)) {
    heap_parts.resize(n + 1);
    parts = heap_parts.data();
  }
  size_t count = n + 1;
  auto pair_rank = [&](size_t i) {  // requires i + 2 < count
    return Find(piece.substr(parts[i].start, parts[i + 2].start - parts[i].start));
  };
  for (size_t i = 0; i <= n; ++i) parts[i] = Part{static_cast<uint32_t>(i), kNone};
  for (size_t i = 0; i + 2 < count; ++i) parts[i].rank = pair_rank(i);
  while (count > 2) {
    uint32_t best = kNone;
    size_t at = 0;
    for (size_t i = 0; i + 2 < count; ++i) {
      if (parts[i].rank < best) {
        best = parts[i].rank;
        at = i;
      }
    }
    if (best == kNone) break;
    // Join parts `at` and `at + 1` by dropping the boundary between them.
    std::memmove(&parts[at + 1], &parts[at + 2], (count - at - 2) * sizeof(Part));
    --count;
    parts[at].rank = at + 2 < count ? pair_rank(at) : kNone;
    if (at > 0) parts[at - 1].rank = pair_rank(at - 1);
  }
  for (size_t i = 0; i + 1 < count; ++i) sink(parts[i].start, parts[i + 1].start);
}

template <typename Sink>
void BpeRanks::MergeHeap(std::string_view piece, Sink&& sink) const {
  // Parts form a linked list keyed by their start byte; the heap holds candidate pairs as
  // rank << 32 | start of the left part, so it pops exactly the quadratic loop's choice (lowest
  // rank, then leftmost). Entries go stale when a neighbour merges; an entry is still good when
  // its left part is alive and the pair still spans the rank's length (then its bytes, hence
  // its rank, are unchanged).
  const uint32_t n = static_cast<uint32_t>(piece.size());
  constexpr uint32_t kDead = kNone - 1;
  std::vector<uint32_t> next(n), prev(n);  // prev == kDead: absorbed into the part before
  for (uint32_t i = 0; i < n; ++i) {
    next[i] = i + 1;
    prev[i] = i == 0 ? kNone : i - 1;
  }
  std::vector<uint64_t> heap;
  heap.reserve(n);
  auto candidate = [&](uint32_t left) -> bool {
    const uint32_t mid = next[left];
    if (mid >= n) return false;
    const uint32_t rank = Find(piece.substr(left, next[mid] - left));
    if (rank == kNone) return false;
    heap.push_back(static_cast<uint64_t>(rank) << 32 | left);
    return true;
  };
  for (uint32_t i = 0; i + 1 < n; ++i) candidate(i);
  auto later = std::greater<uint64_t>();
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const uint64_t key = heap.back();
    heap.pop_back();
    const uint32_t left = static_cast<uint32_t>(key);
    const uint32_t rank = static_cast<uint32_t>(key >> 32);
    if (prev[left] == kDead) continue;
    const uint32_t mid = next[left];
    const uint32_t end = left + (offsets_[rank + 1] - offsets_[rank]);
    if (mid >= n || next[mid] != end) continue;
    prev[mid] = kDead;
    next[left] = end;
    if (end < n) prev[end] = left;
    if (prev[left] != kNone && candidate(prev[left])) {
      std::push_heap(heap.begin(), heap.end(), later);
    }
    if (candidate(left)) std::push_heap(heap.begin(), heap.end(), later);
  }
  for (uint32_t i = 0; i < n; i = next[i]) sink(i, next[i]);
}

template <typename Sink>
void BpeRanks::Merge(std::string_view piece, Sink&& sink) const {
  if (piece.size() > kHeapMergeThreshold) {
    MergeHeap(piece, sink);
  } else {
    MergeQuadratic(piece, sink);
  }
}

void BpeRanks::AppendPiece(std::string_view piece, std::vector<uint32_t>& ids) const {
  if (const uint32_t whole = Find(piece); whole != kNone) {
    ids.push_back(whole);
    return;
  }
  Merge(piece, [&](uint32_t begin, uint32_t end) {
    ids.push_back(Find(piece.substr(begin, end - begin)));
  });
}

size_t BpeRanks::CountPiece(std::string_view piece) const {
  if (piece.size() == 1 || Find(piece) != kNone) return 1;
  size_t count = 0;
  Merge(piece, [&](uint32_t, uint32_t) { ++count; });
  return count;
}

void BpeRanks::AppendMergedQuadratic(std::string_view piece, std::vector<uint32_t>& ids) const {
  MergeQuadratic(piece, [&](uint32_t begin, uint32_t end) {
    ids.push_back(Find(piece.substr(begin, end - begin)));
  });
}

void BpeRanks::AppendMergedHeap(std::string_view piece, std::vector<uint32_t>& ids) const {
  MergeHeap(piece, [&](uint32_t begin, uint32_t end) {
    ids.push_back(Find(piece.substr(begin, end - begin)));
  });
}

}  // namespace terse::compressor
