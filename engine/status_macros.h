// Status propagation helpers for engine/ code.
//
// Debian's abseil (20220623) ships no status_macros.h, so kvstream keeps the
// usual semantics here: both macros are single statements safe inside an
// unbraced `if` only where noted, and a lambda using them needs an explicit
// return type (absl::Status or absl::StatusOr<T>).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define KV_STATUS_CONCAT_INNER(a, b) a##b
#define KV_STATUS_CONCAT(a, b) KV_STATUS_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
// Brace-safe: expands to one statement.
#define KV_RETURN_IF_ERROR(expr)                         \
  do {                                                   \
    ::absl::Status kv_status_tmp_ = (expr);              \
    if (!kv_status_tmp_.ok()) return kv_status_tmp_;     \
  } while (0)

// KV_ASSIGN_OR_RETURN(auto x, Foo()): declares/assigns `lhs` from the value of
// a StatusOr, or returns its status. Expands to several statements: an `if`
// around it needs braces.
#define KV_ASSIGN_OR_RETURN(lhs, rexpr) \
  KV_ASSIGN_OR_RETURN_IMPL(KV_STATUS_CONCAT(kv_statusor_, __LINE__), lhs, rexpr)

#define KV_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                             \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
