// SqliteStore: the Store (core/store/store.h) kept in one SQLite database
// file, <data-dir>/core.db.
//
// Durability: the database runs in WAL mode with synchronous=NORMAL. A
// committed write survives the process being killed (kill -9) at any point;
// a power loss or kernel crash may lose the last commits (never corrupts the
// file). The WAL is checkpointed into the file every 16384 pages (64 MiB,
// also its size limit), not SQLite's default 1000: a stream of output
// rewrites the same few MiB of pages, and each checkpoint costs two fsyncs on
// the writer thread. The file and its -wal/-shm companions are private (mode
// 0600): periphery credentials are stored in it.
//
// Ownership and threads: a SqliteStore owns two connections and, through
// QueuedStore (core/store/queued_store.h), the writer and completer threads:
// writes are queued, the writer thread executes all that is queued (up to
// `max_batch_ops`) in one transaction with cached prepared statements, and
// the completer runs the callbacks in commit order. Reads use a second
// connection of their own, so they never wait for a commit in progress.
// Retention also runs on the writer thread, at most `prune_batch_jobs` jobs
// per transaction, interleaved with queued writes. All public methods are
// thread-safe. The destructor commits everything still queued and runs its
// callbacks, then joins both threads; no method may be called concurrently
// with it.
//
// Schema changes are numbered migrations recorded in PRAGMA user_version,
// each applied in a transaction of its own; Open refuses a database written
// by a newer binary.
//
// The parts, in core/store/sqlite/: the connection and its statements
// (db.h), schema, migrations and opening (schema.h), the statements of the
// queued ops (ops.h, writes.cc), retention (retention.cc) and reads
// (reads.cc). sqlite_store.cc opens the store and executes a batch in one
// transaction (group commit).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/file_lock.h"
#include "core/store/queued_store.h"
#include "core/store/store.h"

namespace varan::core {

namespace sqlite {
class Db;
}  // namespace sqlite

struct SqliteStoreOptions {
  // Runs first right after Open, then every `interval` after the previous
  // run ended. Periodic runs are off when both limits are zero or the
  // interval is not positive (PruneNow still applies the limits).
  RetentionOptions retention;
  // Writes committed in one transaction at most. A larger batch amortizes
  // the commit further but delays the callbacks of its first writes.
  size_t max_batch_ops = 10000;
  // Jobs deleted in one retention transaction at most, so that queued
  // writes are not held up for long.
  size_t prune_batch_jobs = 500;
  // How long a statement waits for a lock held by another connection (for
  // example a checkpoint in progress) before failing with UNAVAILABLE.
  absl::Duration busy_timeout = absl::Seconds(5);
  // Upper bound for the database file, rounded down to whole pages; a write
  // that would grow it further fails with RESOURCE_EXHAUSTED. Zero: no
  // bound beyond the disk.
  uint64_t max_size_bytes = 0;
  // Writes waiting for their commit (queued or in the transaction being
  // written) beyond which CheckBacklog answers RESOURCE_EXHAUSTED. About
  // 15 s of writes at this machine's full rate (6,000 jobs/s, two writes
  // each), a few hundred MB at most.
  size_t max_pending_writes = 200000;
  // Time source for retention's max_age; null means the wall clock. The
  // retention interval itself always runs on the wall clock.
  const Clock* clock = nullptr;
};

class SqliteStore final : public QueuedStore {
 public:
  // The schema version this binary writes (PRAGMA user_version).
  static const int kSchemaVersion;

  // Opens (creating if missing, with mode 0600) the database at `path`,
  // checks it (PRAGMA quick_check), applies pending migrations and starts
  // the writer thread, holding a lock on `path`.lock (common/file_lock.h)
  // while open. The parent directory must exist. Errors, each naming
  // `path`:
  //  * FAILED_PRECONDITION: another process (another varan-core, with its
  //    pid) or another SqliteStore in this one has the database open.
  //  * DATA_LOSS: the file is not a valid database, or fails its integrity
  //    check. The file is left as it is.
  //  * FAILED_PRECONDITION: the schema is newer than this binary supports.
  //  * PERMISSION_DENIED: the file or its directory cannot be written (the
  //    store never falls back to read-only).
  //  * INVALID_ARGUMENT / NOT_FOUND / others: the path cannot be opened.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const std::string& path, SqliteStoreOptions options);

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  // --- Store (writes, Sync, CheckBacklog and PruneNow: QueuedStore) -------
  // Peripheries come back ordered by id.
  absl::StatusOr<std::vector<StoredPeriphery>> LoadPeripheries() override;
  absl::StatusOr<std::vector<StoredToken>> LoadTokens() override;
  absl::StatusOr<std::vector<StoredJoinToken>> LoadJoinTokens() override;
  // Writes: a job id that exists already fails CreateJob (ALREADY_EXISTS to
  // `done` and to the next Sync); events of an unknown job, or a sequence
  // number stored already, fail the whole AppendEvents call; FinishJob
  // replaces the record and the state (created_by, create_time and the
  // target names stay as CreateJob stored them) or fails with NOT_FOUND.
  // Output in a record's targets is not stored.
  //
  // Each append that changes the stream is one transaction step: the stream
  // row (output_streams) updated, its new bytes inserted as at most two rows
  // of output_chunks (the head part, the tail part), and tail rows that fell
  // out of the tail deleted. A tail row straddling the tail's start stays
  // whole until it is wholly out (so the file may hold up to one append more
  // per stream than the retention); reads clip it, so what they return is
  // exactly the contract's.

  absl::StatusOr<StoredOutput> ReadOutput(const OutputKey& key, uint64_t offset,
                                          uint64_t max_bytes) override;
  absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>> OutputExtents(
      const std::string& job_id) override;
  absl::StatusOr<StoredJob> LoadJob(const std::string& id) override;
  absl::StatusOr<std::vector<StoredJob>> LoadUnfinishedJobs() override;
  // A limit of 0 returns no jobs; `more` then tells whether any match.
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query) override;

 private:
  SqliteStore(std::string path, SqliteStoreOptions options,
              std::unique_ptr<FileLock> lock,
              std::unique_ptr<sqlite::Db> writer,
              std::unique_ptr<sqlite::Db> reader);

  // QueuedStore: one transaction per batch; retention in transactions of
  // at most `options.prune_batch_jobs` jobs (retention.cc).
  void ExecuteWrites(std::vector<queued::Op>& batch,
                     std::vector<absl::Status>* results,
                     absl::Status* commit) override;
  absl::StatusOr<bool> PruneStep(queued::PruneRun& run) override;
  absl::StatusOr<StoredJob> LoadJobLocked(const std::string& id,
                                          std::string record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_);

  const std::string path_;
  const SqliteStoreOptions options_;
  const Clock* const clock_;
  // <path>.lock, held while the store is open (declared before the
  // connections, so released after they close).
  const std::unique_ptr<FileLock> lock_;

  // Used by the writer thread only (and by Open before it starts).
  const std::unique_ptr<sqlite::Db> writer_;

  absl::Mutex read_mu_;
  const std::unique_ptr<sqlite::Db> reader_ ABSL_PT_GUARDED_BY(read_mu_);
};

}  // namespace varan::core
