// PostgresStore's schema (core/store/postgres_store.h) and its migrations:
// numbered steps recorded in the table varan_schema, applied under a
// transaction-scoped advisory lock so that replicas starting at once on an
// empty database migrate it once (the others wait, then find it current).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "core/store/postgres/conn.h"

namespace varan::core::postgres {

// The schema version this binary writes.
extern const int kSchemaVersion;

// Applies the pending steps on `conn`, each with its version row, in one
// transaction holding the advisory lock. FAILED_PRECONDITION, naming the
// database, when it was migrated by a newer binary.
absl::Status Migrate(Conn& conn);

// Fences (Cluster::Fence, schema v5). A replica's writing transactions
// (its store's batches, its cluster renewals) take kLockFenceShared on its
// tag, then check kIsFenced, and write nothing when it is; fencing takes
// kLockFence on the tag. So a write either commits before the fence (and
// whoever fenced reads it) or sees the fence. $1: the tag.
inline constexpr char kLockFenceShared[] =
    "SELECT pg_advisory_xact_lock_shared(1986097766, hashtext($1))";
inline constexpr char kLockFence[] =
    "SELECT pg_advisory_xact_lock(1986097766, hashtext($1))";
inline constexpr char kIsFenced[] =
    "SELECT fenced_by, fenced_at::text FROM cluster_fences WHERE tag = $1";

// FAILED_PRECONDITION, saying who fenced it and when, when the replica
// with tag `tag` is fenced; OK when it is not. Call inside the writing
// transaction on `conn` (it takes kLockFenceShared).
absl::Status CheckNotFenced(Conn& conn, const std::string& tag);

}  // namespace varan::core::postgres
