// PostgresStore: the Store (core/store/store.h) kept in a PostgreSQL
// database (15 or newer), for several core replicas sharing one state
// (`varan-core --database postgres://...`).
//
// Durability: a write is committed when PostgreSQL says so (its own
// synchronous_commit and replication decide what survives a crash of the
// database server). Writes are grouped as SqliteStore's are: one transaction
// per batch of queued writes (group commit).
//
// Ownership and threads: a PostgresStore owns two connections and, through
// QueuedStore (core/store/queued_store.h), the writer and completer threads.
// The writer thread executes each batch on its connection; reads use the
// second one under a mutex, so they never wait for a commit in progress.
// Retention runs on the writer thread, at most `prune_batch_jobs` jobs per
// transaction. All public methods are thread-safe; the destructor commits
// what is queued and runs its callbacks first.
//
// The database going away: a batch whose connection broke is retried on a
// new connection, with a capped backoff, for as long as the store is open —
// writes wait rather than being lost, and CheckBacklog pushes back once they
// pile up. Reads fail at once with UNAVAILABLE naming the database, and
// reconnect on their next call. At shutdown, writes still waiting for an
// unreachable database fail with UNAVAILABLE after `shutdown_grace`.
//
// The URL is never logged: messages name the database by host, port and
// name only.
//
// The parts, in core/store/postgres/: the libpq connection (conn.h), the
// schema and its migrations (schema.h), the statements of the queued ops
// (writes.cc), reads (reads.cc) and retention (retention.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/store/queued_store.h"
#include "core/store/store.h"

namespace varan::core {

namespace postgres {
class Conn;
}  // namespace postgres

// How a store shares its database with other cores.
enum class DatabaseLock {
  // Core alone: no other store, exclusive or shared, may use the database.
  kExclusive,
  // One of several replicas (--replica-address): other replicas may, a core
  // alone may not.
  kShared,
  // No lock (tests of concurrent opens).
  kNone,
};

struct PostgresStoreOptions {
  // As SqliteStoreOptions.
  RetentionOptions retention;
  size_t max_batch_ops = 10000;
  size_t prune_batch_jobs = 500;
  size_t max_pending_writes = 200000;
  // How long opening a connection may take.
  absl::Duration connect_timeout = absl::Seconds(5);
  // How long the destructor keeps retrying writes while the database is
  // unreachable before failing them.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Time source for retention's max_age; null means the wall clock.
  const Clock* clock = nullptr;
  // Who else may use the database (a session advisory lock on the
  // writer's connection, taken again after a reconnect), checked at Open.
  DatabaseLock lock = DatabaseLock::kExclusive;
  // With replicas: this replica's tag (ReplicaTag). Each batch checks, in
  // its transaction, that the replica is not fenced (Cluster::Fence); once
  // it is, every write fails with FAILED_PRECONDITION and nothing of it is
  // committed. Empty: no check.
  std::string fence_tag;
};

class PostgresStore final : public QueuedStore {
 public:
  static const int kSchemaVersion;

  // Connects to `url` (libpq's URI or key=value form; TLS as the URL says,
  // e.g. sslmode=verify-full&sslrootcert=...), migrates the schema (under an
  // advisory lock: replicas starting at once migrate it once) and starts the
  // writer. Errors name the database, never the URL's password:
  //  * UNAVAILABLE: the server cannot be reached or refuses the connection.
  //  * FAILED_PRECONDITION: the schema is newer than this binary supports,
  //    or another store holds the database in a way `options.lock` does
  //    not allow.
  //  * PERMISSION_DENIED: authentication or privileges.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> Open(
      const std::string& url, PostgresStoreOptions options);

  ~PostgresStore() override;

  // --- Store (writes, Sync, CheckBacklog and PruneNow: QueuedStore) -------
  absl::StatusOr<std::vector<StoredPeriphery>> LoadPeripheries() override;
  // By the id of the transaction that last saved each row (schema v4): the
  // cursor is the oldest transaction still running at the last call.
  absl::StatusOr<std::vector<StoredPeriphery>> LoadChangedPeripheries(
      uint64_t* cursor) override;
  absl::StatusOr<std::vector<StoredToken>> LoadTokens() override;
  absl::StatusOr<std::vector<StoredJoinToken>> LoadJoinTokens() override;
  absl::StatusOr<StoredOutput> ReadOutput(const OutputKey& key, uint64_t offset,
                                          uint64_t max_bytes) override;
  absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>> OutputExtents(
      const std::string& job_id) override;
  absl::StatusOr<StoredJob> LoadJob(const std::string& id) override;
  absl::StatusOr<std::vector<StoredJob>> LoadUnfinishedJobs() override;
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query) override;
  // While the writer cannot reach the database: UNAVAILABLE naming it, so
  // new jobs and registrations are refused at once instead of waiting; else
  // QueuedStore's backlog check.
  absl::Status CheckBacklog() override;

 private:
  PostgresStore(PostgresStoreOptions options,
                std::unique_ptr<postgres::Conn> writer,
                std::unique_ptr<postgres::Conn> reader);

  // QueuedStore (writes.cc, retention.cc).
  void ExecuteWrites(std::vector<queued::Op>& batch,
                     std::vector<absl::Status>* results,
                     absl::Status* commit) override;
  absl::StatusOr<bool> PruneStep(queued::PruneRun& run) override;
  // One attempt at the batch: false when the connection broke (nothing was
  // committed), else the results are final.
  bool TryBatch(std::vector<queued::Op>& batch,
                std::vector<absl::Status>* results, absl::Status* commit);

  // Reconnects the writer and takes its lock again.
  absl::Status ReconnectWriter();

  // The reader connection, reconnected if it broke.
  absl::StatusOr<postgres::Conn*> Reader()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);
  absl::StatusOr<StoredJob> LoadJobLocked(postgres::Conn& db,
                                          const std::string& id,
                                          std::string record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);

  const PostgresStoreOptions options_;
  const Clock* const clock_;
  // Used by the writer thread only (and by Open before it starts).
  const std::unique_ptr<postgres::Conn> writer_;
  // Set by the destructor: stop retrying after shutdown_grace.
  absl::Mutex stop_mu_;
  absl::Time give_up_ ABSL_GUARDED_BY(stop_mu_) = absl::InfiniteFuture();
  // Why the writer is waiting for the database; OK while it is not.
  absl::Status outage_ ABSL_GUARDED_BY(stop_mu_);

  absl::Mutex read_mu_;
  const std::unique_ptr<postgres::Conn> reader_ ABSL_PT_GUARDED_BY(read_mu_);
};

}  // namespace varan::core
