// MemoryStore: the Store (core/store/store.h) kept in memory, for tests and
// for running core without persistence. Nothing survives the object.
//
// It keeps the whole contract, so code written against a MemoryStore
// behaves the same on SqliteStore: writes are applied in call order, each
// all or nothing, with the same errors; commit callbacks run on the store's
// own thread, one at a time, in commit order, with no store lock held;
// Sync() waits for the callbacks of earlier writes and reports the first
// error since the previous Sync once; retention deletes the same jobs.
// Writes are visible to reads as soon as the write call returns (earlier
// than the contract requires).
//
// Ownership and threads: a MemoryStore owns its data and one thread, which
// runs commit callbacks, Sync markers and periodic retention. All public
// methods are thread-safe. The destructor runs every callback still queued,
// then joins the thread; no method may be called concurrently with it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/store/output_plan.h"
#include "core/store/store.h"

namespace varan::core {

struct MemoryStoreOptions {
  // As SqliteStoreOptions::retention: runs first right after construction,
  // then every `interval` (wall clock) after the previous run, when a limit
  // is set and the interval is positive. PruneNow works either way.
  RetentionOptions retention;
  // Time source for retention's max_age; null means the wall clock.
  const Clock* clock = nullptr;
};

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(MemoryStoreOptions options = {});
  ~MemoryStore() override;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // --- Store ---------------------------------------------------------------
  absl::StatusOr<std::vector<StoredPeriphery>> LoadPeripheries() override;
  void SavePeriphery(const StoredPeriphery& p) override;
  absl::StatusOr<std::vector<StoredToken>> LoadTokens() override;
  absl::StatusOr<std::vector<StoredJoinToken>> LoadJoinTokens() override;
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
  absl::StatusOr<StoredOutput> ReadOutput(const OutputKey& key, uint64_t offset,
                                          uint64_t max_bytes) override;
  absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>> OutputExtents(
      const std::string& job_id) override;
  absl::StatusOr<StoredJob> LoadJob(const std::string& id) override;
  absl::StatusOr<std::vector<StoredJob>> LoadUnfinishedJobs() override;
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query) override;
  absl::Status Sync() override;
  absl::Status CheckBacklog() override;
  absl::StatusOr<uint64_t> PruneNow() override;

  // What CheckBacklog answers from now on (OK at first): this store commits
  // at once, so tests of the callers set a backlog by hand.
  void SetBacklog(absl::Status status);

 private:
  // One stream's stored output: its state and its rows by stream offset
  // (head rows below head_bytes, tail rows at or past it).
  struct OutputRows {
    output::StreamState state;
    std::map<uint64_t, std::string> rows;
  };

  // One job as stored: the filter columns are CreateJob's, `state` and
  // `record` the latest write's.
  struct JobRow {
    int64_t create_nanos = 0;
    varan::v1::JobState state = varan::v1::JOB_STATE_UNSPECIFIED;
    std::string created_by;
    std::vector<std::string> targets;
    varan::v1::Job record;
    std::map<uint64_t, varan::v1::JobEvent> events;  // by sequence
    // By target, then stream; only streams that exist.
    std::map<std::pair<std::string, int>, OutputRows> output;
  };

  // The job's row, or NOT_FOUND naming it (`what` starts the message).
  absl::StatusOr<JobRow*> FindJobLocked(const std::string& id,
                                        absl::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Records the outcome of one write (for the next Sync) and queues its
  // callback behind those of earlier writes.
  void CommittedLocked(const absl::Status& status, CommitCallback done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Deletes what retention allows; returns how many jobs.
  uint64_t PruneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool PeriodicRetention() const;
  bool OnStoreThread() const;
  // Runs `marker` on the store thread after everything queued before it
  // and waits for it.
  void RunOnStoreThreadAndWait(std::function<void()> marker);
  void Loop();
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !callbacks_.empty() || stop_;
  }

  const MemoryStoreOptions options_;
  const Clock* const clock_;

  absl::Mutex mu_;
  std::map<std::string, StoredPeriphery> peripheries_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredToken> tokens_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, StoredJoinToken> join_tokens_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, JobRow> jobs_ ABSL_GUARDED_BY(mu_);
  // First failed write since the last Sync.
  absl::Status unsynced_error_ ABSL_GUARDED_BY(mu_);
  absl::Status backlog_ ABSL_GUARDED_BY(mu_);
  // Callbacks and Sync markers, in commit order, for the store thread.
  std::deque<std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);
  absl::Time next_prune_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;
};

}  // namespace varan::core
