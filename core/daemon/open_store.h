// Which Store core runs on (core/store/store.h), from its configuration:
// SQLite in the data directory by default, PostgreSQL when a database URL
// is given (--database, VARAN_DATABASE, or --database-file holding it, e.g.
// a mounted Kubernetes Secret). Used by CoreServer::Start only.
//
// The URL may hold a password: it is never logged, and errors name the
// database by host, port and name only.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/store/store.h"

namespace varan::core {

struct CoreConfig;

struct OpenedStore {
  std::unique_ptr<Store> store;
  // For messages: "<data-dir>/core.db" or "PostgreSQL database D on H:P".
  std::string description;
};

// Opens the store `config` names. INVALID_ARGUMENT when both --database and
// --database-file are set, or the URL is not a PostgreSQL one; the
// backends' own errors otherwise (see SqliteStore::Open and
// PostgresStore::Open), prefixed with the flag that chose them.
absl::StatusOr<OpenedStore> OpenStore(const CoreConfig& config);

}  // namespace varan::core
