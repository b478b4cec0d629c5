// One libFuzzer target per property of tests/fuzz/fuzz_targets.h: built with
// -DTERSE_FUZZ_CHECK=<the check> when TERSE_FUZZ is on (clang only). A broken property aborts
// with what broke, so libFuzzer saves the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string broken =
      TERSE_FUZZ_CHECK(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!broken.empty()) {
    std::fprintf(stderr, "property broken: %s\n", broken.c_str());
    std::abort();
  }
  return 0;
}
