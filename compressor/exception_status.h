// Exceptions end inside compressor/: what LibTorch, the standard library or the JSON library throws
// becomes an absl::Status at the function that calls them from the folder's API.
#pragma once

#include <exception>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace terse::compressor {

// The message of `e`, without the C++ backtrace LibTorch appends to its own.
std::string ExceptionMessage(const std::exception& e);

// "<what>: <message>", as ResourceExhausted when `e` reports running out of memory (so callers
// can shed load), else Internal.
absl::Status StatusFromException(const std::exception& e, absl::string_view what);

// f(), which returns absl::Status or absl::StatusOr<T>, or the status of the std::exception it
// threw (StatusFromException(e, what)).
template <typename F>
auto CatchExceptions(absl::string_view what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return StatusFromException(e, what);
  }
}

}  // namespace terse::compressor
