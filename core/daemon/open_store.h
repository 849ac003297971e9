// Which Store core runs on (core/store/store.h), from its configuration:
// SQLite in the data directory by default, PostgreSQL when a database URL
// is given (--database, VARAN_DATABASE, or --database-file holding it, e.g.
// a mounted Kubernetes Secret). Used by CoreServer::Start only.
//
// The URL may hold a password: it is never logged, and errors name the
// database by host, port and name only.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "core/cluster/cluster.h"
#include "core/store/store.h"

namespace varan::core {

struct CoreConfig;

struct OpenedStore {
  // With --replica-address: this replica's view of the others on the same
  // database (PostgresCluster); null for a core alone. Declared first, so
  // it outlives the store, whose retention asks it for its lease.
  std::unique_ptr<Cluster> cluster;
  std::unique_ptr<Store> store;
  // For messages: "<data-dir>/core.db" or "PostgreSQL database D on H:P".
  std::string description;
};

using LapsedCallback = std::function<void(
    const std::vector<ReplicaInfo>& others, absl::Time renewed)>;

// Opens the store `config` names, and with --replica-address joins the
// replicas on its database (`listen_port`: the port of a bare replica
// address; `clock` times the replica's leases; `on_fenced`: what the
// replica does when it finds another fenced it, ClusterOptions::on_fenced;
// its store then refuses its writes, PostgresStoreOptions::fence_tag;
// `on_lapsed`: ClusterOptions::on_lapsed).
// INVALID_ARGUMENT when both
// --database and --database-file are set, the URL is not a PostgreSQL one,
// --replica-address is malformed or given without a PostgreSQL database;
// the backends' own errors otherwise (see SqliteStore::Open,
// PostgresStore::Open and PostgresCluster::Open), prefixed with the flag
// that chose them.
absl::StatusOr<OpenedStore> OpenStore(const CoreConfig& config,
                                      uint16_t listen_port, const Clock* clock,
                                      std::function<void()> on_fenced,
                                      LapsedCallback on_lapsed = nullptr);

}  // namespace varan::core
