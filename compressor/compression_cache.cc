// The LRU behind CompressionCache: entries in a list by recency and a hash index into it, under
// one mutex.
#include "compressor/compression_cache.h"

#include <openssl/evp.h>

#include <cstring>
#include <utility>

namespace terse::compressor {

CompressionCache::Key CompressionCache::MakeKey(std::string_view material) {
  // SHA-256, so that one tenant cannot craft a prompt whose key collides with another's.
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  Key key;
  if (EVP_Digest(material.data(), material.size(), digest, &length, EVP_sha256(), nullptr) != 1 ||
      length < 16) {
    return key;  // not reached with OpenSSL's built-in SHA-256
  }
  std::memcpy(&key.hi, digest, 8);
  std::memcpy(&key.lo, digest + 8, 8);
  return key;
}

CompressionCache::CompressionCache(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

std::optional<CompressResult> CompressionCache::Lookup(const Key& key) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->result;
}

void CompressionCache::Insert(const Key& key, CompressResult result) {
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(key); it != index_.end()) {
    it->second->result = std::move(result);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.push_front(Entry{key, std::move(result)});
  index_[key] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

size_t CompressionCache::size() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

}  // namespace terse::compressor
