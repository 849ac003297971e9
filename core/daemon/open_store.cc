#include "core/daemon/open_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/log.h"
#include "common/secrets.h"
#include "core/cluster/postgres_cluster.h"
#include "core/daemon/core_server.h"
#include "core/store/postgres_store.h"
#include "core/store/sqlite_store.h"

namespace varan::core {
namespace {

absl::Status Prefixed(const std::string& context, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

// The URL, from --database or the file; empty for SQLite.
absl::StatusOr<std::string> DatabaseUrl(const CoreConfig& config) {
  if (!config.database.empty() && !config.database_file.empty()) {
    return absl::InvalidArgumentError(
        "--database and --database-file are both set; give one");
  }
  if (config.database_file.empty()) return config.database;
  if (std::string warning = LoosePermissionsWarning(config.database_file);
      !warning.empty()) {
    spdlog::warn("{}", warning);
  }
  auto url = ReadSecretFile(config.database_file);
  if (!url.ok()) return Prefixed("--database-file", url.status());
  return *std::move(url);
}

// The address --replica-address gives, with `listen_port` when it has none.
absl::StatusOr<std::string> ReplicaAddress(const std::string& flag,
                                           uint16_t listen_port) {
  auto address = ParseDialAddress(flag, listen_port);
  if (!address.ok() && listen_port == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--replica-address: ", address.status().message(),
                     " (give a port: --listen picks a free one)"));
  }
  if (!address.ok()) return Prefixed("--replica-address", address.status());
  return FormatHostPort(*address);
}

}  // namespace

absl::StatusOr<OpenedStore> OpenStore(const CoreConfig& config,
                                      uint16_t listen_port, const Clock* clock,
                                      std::function<void()> on_fenced,
                                      LapsedCallback on_lapsed) {
  auto url = DatabaseUrl(config);
  if (!url.ok()) return url.status();
  if (url->empty() && !config.replica_address.empty()) {
    return absl::InvalidArgumentError(
        "--replica-address: replicas share a PostgreSQL database; give it "
        "with --database, VARAN_DATABASE or --database-file");
  }
  const std::string flag =
      config.database_file.empty() ? "--database" : "--database-file";
  OpenedStore opened;
  if (url->empty()) {
    SqliteStoreOptions options;
    options.retention.max_age = config.retention_age;
    options.retention.max_jobs = config.retention_jobs;
    options.max_pending_writes = config.max_pending_writes;
    opened.description = absl::StrCat(config.data_dir, "/core.db");
    auto store = SqliteStore::Open(opened.description, options);
    if (!store.ok()) return store.status();
    opened.store = *std::move(store);
    return opened;
  }
  if (!absl::StartsWith(*url, "postgres://") &&
      !absl::StartsWith(*url, "postgresql://")) {
    // Not the URL itself: it may be a key=value string with a password.
    return absl::InvalidArgumentError(absl::StrCat(
        flag,
        ": not a PostgreSQL URL (postgres://user@host:5432/database?"
        "sslmode=verify-full)"));
  }
  PostgresStoreOptions options;
  options.retention.max_age = config.retention_age;
  options.retention.max_jobs = config.retention_jobs;
  options.max_pending_writes = config.max_pending_writes;
  if (!config.replica_address.empty()) {
    auto address = ReplicaAddress(config.replica_address, listen_port);
    if (!address.ok()) return address.status();
    ClusterOptions cluster_options;
    cluster_options.address = *address;
    cluster_options.ttl = config.replica_ttl;
    cluster_options.leases = {kLivenessLease, kRetentionLease, kJobsLease};
    cluster_options.on_fenced = std::move(on_fenced);
    cluster_options.on_lapsed = std::move(on_lapsed);
    auto cluster = PostgresCluster::Open(*url, cluster_options, clock);
    if (!cluster.ok()) return Prefixed(flag, cluster.status());
    opened.cluster = *std::move(cluster);
    options.lock = DatabaseLock::kShared;
    options.fence_tag = ReplicaTag(opened.cluster->self().id);
    options.retention.due_here = [cluster = opened.cluster.get()] {
      return cluster->Holds(kRetentionLease);
    };
    spdlog::info("replica {} at {}", opened.cluster->self().id, *address);
  }
  auto store = PostgresStore::Open(*url, options);
  if (!store.ok()) return Prefixed(flag, store.status());
  opened.description = (*store)->name();
  opened.store = *std::move(store);
  return opened;
}

}  // namespace varan::core
