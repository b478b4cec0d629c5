// An LRU of finished compressions, so a repeated system prompt or demonstration costs a hash and
// a lookup instead of a model run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "compressor/compressor.h"

namespace terse::compressor {

// Thread-safe. Keys are 128-bit digests (truncated SHA-256) of everything that decides the output:
// the prompt, the options, the model digest and the tokenizers.
class CompressionCache {
 public:
  struct Key {
    uint64_t hi = 0;
    uint64_t lo = 0;
    bool operator==(const Key& o) const { return hi == o.hi && lo == o.lo; }
  };
  // Digest of `material`.
  static Key MakeKey(std::string_view material);

  explicit CompressionCache(size_t capacity);  // capacity >= 1

  // A copy of the stored result (cache_hit and ms as stored), marking it most recently used.
  std::optional<CompressResult> Lookup(const Key& key);
  // Stores `result`, evicting the least recently used entry when full.
  void Insert(const Key& key, CompressResult result);
  size_t size() const;

 private:
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.lo); }
  };
  struct Entry {
    Key key;
    CompressResult result;
  };

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // most recent first
  std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index_ ABSL_GUARDED_BY(mu_);
};

}  // namespace terse::compressor
