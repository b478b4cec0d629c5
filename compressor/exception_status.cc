// Exceptions as statuses; LibTorch's c10::Error is read without its backtrace.
#include "compressor/exception_status.h"

#include <c10/util/Exception.h>

#include <new>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace terse::compressor {

std::string ExceptionMessage(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

absl::Status StatusFromException(const std::exception& e, absl::string_view what) {
  const std::string message = ExceptionMessage(e);
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr ||
      absl::StrContains(message, "out of memory") ||
      absl::StrContains(message, "not enough memory")) {
    return absl::ResourceExhaustedError(absl::StrCat(what, ": ", message));
  }
  return absl::InternalError(absl::StrCat(what, ": ", message));
}

}  // namespace terse::compressor
