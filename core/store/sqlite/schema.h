// The SQLite database under SqliteStore (core/store/sqlite_store.h): its
// schema as numbered migrations, and opening a file — private mode, the
// integrity check, WAL and the other pragmas, migrations — into the
// writer's and the readers' connections.
//
// Stateless functions; safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/store/sqlite/db.h"

namespace varan::core::sqlite {

// The schema version this code writes (PRAGMA user_version).
extern const int kSchemaVersion;

struct Connections {
  std::unique_ptr<Db> writer;
  // query_only.
  std::unique_ptr<Db> reader;
};

// Opens the database at `path` as SqliteStore::Open documents (the errors
// too), waiting up to `busy_timeout` for locks, bounded to `max_size_bytes`
// (zero: no bound).
absl::StatusOr<Connections> OpenDatabase(const std::string& path,
                                         absl::Duration busy_timeout,
                                         uint64_t max_size_bytes);

}  // namespace varan::core::sqlite
