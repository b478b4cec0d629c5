// The parsers' properties (tests/fuzz/fuzz_targets.h) on every input of the checked-in corpus:
// seeds written by hand and the inputs libFuzzer found that reached new code, or broke a property
// before it was fixed.
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_targets.h"

namespace terse::fuzz {
namespace {

void ExpectHoldsOnCorpus(const std::string& name,
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

TEST(FuzzCorpusTest, JsonTextAgreesWithNlohmann) {
  ExpectHoldsOnCorpus("json_text", CheckJsonText);
}

TEST(FuzzCorpusTest, WireJsonEditsAgreeWithTheSameEditsOfTheValue) {
  ExpectHoldsOnCorpus("wire_json", CheckWireJson);
}

TEST(FuzzCorpusTest, Http1ResponsesReadTheSameWholeOrInPieces) {
  ExpectHoldsOnCorpus("http1_response", CheckHttp1Response);
}

TEST(FuzzCorpusTest, SseEventsReadTheSameWholeOrInPieces) { ExpectHoldsOnCorpus("sse", CheckSse); }

}  // namespace
}  // namespace terse::fuzz
