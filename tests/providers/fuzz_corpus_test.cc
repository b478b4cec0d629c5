// The providers' parsers' properties (tests/fuzz/fuzz_targets.h) on every input of the checked-in
// corpus.
#include "gtest/gtest.h"
#include "tests/fuzz/corpus.h"
#include "tests/fuzz/fuzz_targets.h"

namespace terse::fuzz {
namespace {

TEST(FuzzCorpusTest, Http1ResponsesReadTheSameWholeOrInPieces) {
  ExpectHoldsOnCorpus("http1_response", CheckHttp1Response);
}

TEST(FuzzCorpusTest, SseEventsReadTheSameWholeOrInPieces) { ExpectHoldsOnCorpus("sse", CheckSse); }

}  // namespace
}  // namespace terse::fuzz
