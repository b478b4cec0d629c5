// RETURN_IF_ERROR / ASSIGN_OR_RETURN: Debian's abseil (2022) ships neither.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TERSE_CONCAT_INNER_(a, b) a##b
#define TERSE_CONCAT_(a, b) TERSE_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                            \
  do {                                                   \
    if (::absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, F());` declares/assigns x from an OK StatusOr, or returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  TERSE_ASSIGN_OR_RETURN_IMPL_(TERSE_CONCAT_(_status_or_, __LINE__), lhs, expr)
#define TERSE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
