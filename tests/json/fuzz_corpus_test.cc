// The JSON codec's properties (tests/fuzz/fuzz_targets.h) on every input of the checked-in corpus.
#include "gtest/gtest.h"
#include "tests/fuzz/corpus.h"
#include "tests/fuzz/fuzz_targets.h"

namespace terse::fuzz {
namespace {

TEST(FuzzCorpusTest, JsonTextAgreesWithNlohmann) {
  ExpectHoldsOnCorpus("json_text", CheckJsonText);
}

TEST(FuzzCorpusTest, WireJsonEditsAgreeWithTheSameEditsOfTheValue) {
  ExpectHoldsOnCorpus("wire_json", CheckWireJson);
}

}  // namespace
}  // namespace terse::fuzz
