// Small helpers for absl::Status plumbing that Debian's Abseil 20220623 lacks.
//
// VARAN_RETURN_IF_ERROR(expr): returns the status of `expr` if it is not OK.
// VARAN_ASSIGN_OR_RETURN(lhs, expr): evaluates an absl::StatusOr expression,
// returns its status on error, else moves its value into `lhs` (which may be
// a declaration such as `auto x`).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VARAN_STATUS_CONCAT_INNER_(a, b) a##b
#define VARAN_STATUS_CONCAT_(a, b) VARAN_STATUS_CONCAT_INNER_(a, b)

#define VARAN_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status varan_status_ = (expr);         \
    if (!varan_status_.ok()) return varan_status_; \
  } while (false)

#define VARAN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(*tmp)

#define VARAN_ASSIGN_OR_RETURN(lhs, expr) \
  VARAN_ASSIGN_OR_RETURN_IMPL_(           \
      VARAN_STATUS_CONCAT_(varan_statusor_, __LINE__), lhs, expr)
