// Runs a property of fuzz_targets.h over its inputs in the checked-in corpus (tests/fuzz/corpus):
// seeds written by hand and the inputs libFuzzer found that reached new code, or broke a property
// before it was fixed. For the test binaries of the folders whose parsers the corpus covers.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace terse::fuzz {

inline void ExpectHoldsOnCorpus(const std::string& name,
                                const std::function<std::string(std::string_view)>& check) {
  const std::filesystem::path dir = std::filesystem::path("tests/fuzz/corpus") / name;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int inputs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream file(entry.path(), std::ios::binary);
    std::stringstream bytes;
    bytes << file.rdbuf();
    EXPECT_EQ(check(bytes.str()), "") << entry.path();
    ++inputs;
  }
  EXPECT_GT(inputs, 0) << dir;
}

}  // namespace terse::fuzz
