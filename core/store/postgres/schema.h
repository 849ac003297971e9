// PostgresStore's schema (core/store/postgres_store.h) and its migrations:
// numbered steps recorded in the table varan_schema, applied under a
// transaction-scoped advisory lock so that replicas starting at once on an
// empty database migrate it once (the others wait, then find it current).
#pragma once

#include "absl/status/status.h"
#include "core/store/postgres/conn.h"

namespace varan::core::postgres {

// The schema version this binary writes.
extern const int kSchemaVersion;

// Applies the pending steps on `conn`, each with its version row, in one
// transaction holding the advisory lock. FAILED_PRECONDITION, naming the
// database, when it was migrated by a newer binary.
absl::Status Migrate(Conn& conn);

}  // namespace varan::core::postgres
