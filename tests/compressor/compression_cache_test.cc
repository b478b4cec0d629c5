#include "compressor/compression_cache.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace terse::compressor {
namespace {

CompressResult WithPrompt(std::string prompt) {
  CompressResult r;
  r.prompt = std::move(prompt);
  return r;
}

TEST(CompressionCacheTest, KeysDependOnEveryByte) {
  const auto a = CompressionCache::MakeKey("system prompt");
  EXPECT_EQ(a, CompressionCache::MakeKey("system prompt"));
  EXPECT_FALSE(a == CompressionCache::MakeKey("system prompt "));
  EXPECT_FALSE(a == CompressionCache::MakeKey("System prompt"));
  EXPECT_FALSE(CompressionCache::MakeKey("") == CompressionCache::MakeKey(std::string(1, '\0')));
}

TEST(CompressionCacheTest, EvictsTheLeastRecentlyUsed) {
  CompressionCache cache(2);
  const auto k1 = CompressionCache::MakeKey("1");
  const auto k2 = CompressionCache::MakeKey("2");
  const auto k3 = CompressionCache::MakeKey("3");
  cache.Insert(k1, WithPrompt("one"));
  cache.Insert(k2, WithPrompt("two"));
  ASSERT_TRUE(cache.Lookup(k1).has_value());  // 1 is now the most recent
  cache.Insert(k3, WithPrompt("three"));      // evicts 2
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(cache.Lookup(k2).has_value());
  EXPECT_EQ(cache.Lookup(k1)->prompt, "one");
  EXPECT_EQ(cache.Lookup(k3)->prompt, "three");
  cache.Insert(k3, WithPrompt("three again"));
  EXPECT_EQ(cache.Lookup(k3)->prompt, "three again");
  EXPECT_EQ(cache.size(), 2u);
}

TEST(CompressionCacheTest, ConcurrentUseIsSafe) {
  CompressionCache cache(16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 500; ++i) {
        const auto key = CompressionCache::MakeKey(std::to_string((i * 7 + t) % 40));
        if (auto hit = cache.Lookup(key)) {
          EXPECT_EQ(hit->prompt, std::to_string((i * 7 + t) % 40));
        } else {
          cache.Insert(key, WithPrompt(std::to_string((i * 7 + t) % 40)));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.size(), 16u);
}

}  // namespace
}  // namespace terse::compressor
