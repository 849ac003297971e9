#include "core/daemon/open_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/secrets.h"
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

}  // namespace

absl::StatusOr<OpenedStore> OpenStore(const CoreConfig& config) {
  auto url = DatabaseUrl(config);
  if (!url.ok()) return url.status();
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
  auto store = PostgresStore::Open(*url, options);
  if (!store.ok()) return Prefixed(flag, store.status());
  opened.description = (*store)->name();
  opened.store = *std::move(store);
  return opened;
}

}  // namespace varan::core
