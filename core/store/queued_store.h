// QueuedStore: the part of a Store (core/store/store.h) that every backend
// writing through one connection shares — the write queue, the writer
// thread with group commit, the completer thread that runs commit callbacks
// in commit order, Sync, the write backlog (CheckBacklog) and the scheduling
// of retention. A backend (SqliteStore, PostgresStore) derives from it and
// supplies how a batch of writes is executed in one transaction
// (ExecuteWrites) and one retention step (PruneStep), plus the reads.
//
// Ownership and threads: writes (SavePeriphery, SaveToken, SaveJoinToken,
// CreateJob, AppendEvents, AppendOutput, FinishJob) serialize their rows
// into an op (core/store/write_ops.h) and append it to an in-memory queue
// under a mutex; the writer thread takes all that is queued (up to
// `max_batch_ops`), hands it to ExecuteWrites, and passes the callbacks with
// their statuses to the completer thread, which runs them in commit order
// (no store lock held) while the writer goes on. Retention runs on the
// writer thread between batches, one PruneStep at a time. All public methods
// are thread-safe.
//
// Lifecycle: the derived class starts the threads (StartThreads) once it is
// fully built and stops them (StopThreads: everything queued is committed
// and its callbacks run) first thing in its destructor, before its own
// members go; the virtual methods are called only in between.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/store/store.h"
#include "core/store/write_ops.h"

namespace varan::core {

struct QueuedStoreOptions {
  // Periodic retention runs first right after StartThreads, then every
  // `interval` after the previous run ended; off when both limits are zero
  // or the interval is not positive (PruneNow still applies the limits).
  RetentionOptions retention;
  // Writes handed to ExecuteWrites at once at most.
  size_t max_batch_ops = 10000;
  // Writes waiting for their commit (queued or in the batch being written)
  // beyond which CheckBacklog answers RESOURCE_EXHAUSTED.
  size_t max_pending_writes = 200000;
};

// The queue's part of a backend's options (SqliteStoreOptions,
// PostgresStoreOptions: fields of the same names).
template <typename BackendOptions>
QueuedStoreOptions QueueOptionsOf(const BackendOptions& o) {
  QueuedStoreOptions q;
  q.retention = o.retention;
  q.max_batch_ops = o.max_batch_ops;
  q.max_pending_writes = o.max_pending_writes;
  return q;
}

class QueuedStore : public Store {
 public:
  ~QueuedStore() override;
  QueuedStore(const QueuedStore&) = delete;
  QueuedStore& operator=(const QueuedStore&) = delete;

  void SavePeriphery(const StoredPeriphery& p) override;
  void SaveToken(const StoredToken& t, CommitCallback done) override;
  void SaveJoinToken(const StoredJoinToken& t, CommitCallback done) override;
  void UseJoinToken(const std::string& id, JoinUse use,
                    JoinUsesCallback done) override;
  void CreateJob(const varan::v1::Job& record, CommitCallback done) override;
  void AppendEvents(
      const std::string& job_id,
      absl::Span<const varan::v1::JobEvent* const> events) override;
  using Store::AppendEvents;
  void FinishJob(const varan::v1::Job& record, CommitCallback done) override;
  void AppendOutput(const OutputKey& key, uint64_t offset,
                    std::string_view data, const OutputRetention& retention,
                    CommitCallback done) override;
  // From a commit callback (the writer or completer thread) this returns
  // FAILED_PRECONDITION instead of deadlocking.
  absl::Status Sync() override;
  // RESOURCE_EXHAUSTED (retry after 1 s) while more than
  // options.max_pending_writes writes wait for their commit.
  absl::Status CheckBacklog() override;
  absl::StatusOr<uint64_t> PruneNow() override;

  // What the store is, for messages: a path, or "PostgreSQL database D on
  // H:P" (never a password).
  const std::string& name() const { return name_; }

 protected:
  // `name` names the store in log lines and errors (a path, a database).
  QueuedStore(std::string name, QueuedStoreOptions options);

  void StartThreads();
  void StopThreads();

  // Executes the writes of `batch` (it has at least one; markers are
  // skipped) in one transaction. Sets (*results)[i] to write i's own
  // failure (the other writes go on and commit), or `*commit` to an error
  // that undid the whole batch. Writer thread only.
  virtual void ExecuteWrites(std::vector<queued::Op>& batch,
                             std::vector<absl::Status>* results,
                             absl::Status* commit) = 0;
  // One retention transaction of `run`, with options().retention; true once
  // the run is complete. An error ends the run with it. Writer thread only.
  virtual absl::StatusOr<bool> PruneStep(queued::PruneRun& run) = 0;

  const QueuedStoreOptions& queue_options() const { return options_; }

 private:
  // False (and `op` dropped, its callback told) once the writer has exited.
  bool Enqueue(queued::Op op);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool OnStoreThread() const;
  void WriterLoop();
  void ExecuteBatch(std::vector<queued::Op>& batch);
  void StartPrune(queued::Waiter* waiter);
  void RunPruneStep();
  void FinishPrune(const absl::Status& status);

  const std::string name_;
  const QueuedStoreOptions options_;

  // Writer thread only.
  absl::Status unsynced_error_;  // first failed write since the last Sync
  std::unique_ptr<queued::PruneRun> prune_;
  absl::Time next_prune_ = absl::InfiniteFuture();

  absl::Mutex mu_;
  std::vector<queued::Op> queue_ ABSL_GUARDED_BY(mu_);
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;  // queued or being executed
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the writer has exited (or never started); later writes are
  // dropped with an error.
  bool closed_ ABSL_GUARDED_BY(mu_) = true;
  std::thread writer_thread_;

  // Commit callbacks and Sync markers run here, in commit order, so the
  // writer goes on to the next batch while they run.
  void CompleterLoop();
  void Complete(std::vector<std::function<void()>> work);
  bool CompletionReady() const ABSL_SHARED_LOCKS_REQUIRED(done_mu_) {
    return !done_queue_.empty() || done_stop_;
  }
  absl::Mutex done_mu_;
  std::vector<std::function<void()>> done_queue_ ABSL_GUARDED_BY(done_mu_);
  bool done_stop_ ABSL_GUARDED_BY(done_mu_) = false;
  std::thread completer_thread_;
};

}  // namespace varan::core
