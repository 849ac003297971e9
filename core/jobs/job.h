// Job: one dispatched command, its targets' states and its event log.
//
// The event log is the job's truth: every change of state is an event with
// a sequence number (0, 1, 2, ... without gaps), applied to the record as it
// is appended. The same code replays a stored log after a restart
// (Job::Restore), so a restored job is exactly the job that was recorded.
// Watchers read the log from any sequence and are told (through a callback)
// when more arrives, so a watcher that reconnects with the next sequence it
// expects misses nothing.
//
// Output is captured per target and stream up to the job's capture limit;
// bytes past it are counted (reported in the target's finished event and
// record as *_uncaptured_bytes), not kept and not streamed.
//
// Persistence: with a Store, every event is handed to it in order as it is
// appended, and when the job finishes its final record is written; the
// `on_finished_persisted` callback runs once that write is committed.
//
// Code layout: job.cc holds the record, the log and its replay,
// persistence and watchers; job_execution.cc turns what happens to a target
// (sent, call events and end, heartbeat reports, cancel) into events.
//
// Thread-safe. Watcher callbacks run on the thread that appended the event,
// without the job's lock held; RemoveWatcher waits for a running callback,
// so after it returns the callback's captures may be destroyed.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "core/store/store.h"
#include "varan/v1/core.pb.h"
#include "varan/v1/periphery.pb.h"

namespace varan::core {

class Job {
 public:
  // A new job. `record` holds id, target, spec, options, created_by and one
  // queued JobTarget per matched periphery. Appends the `accepted` event; a
  // job without targets finishes at once. `store` must not be null and
  // must outlive the job. Nothing is written to the store until Persist().
  Job(varan::v1::Job record, uint64_t capture_limit, const Clock* clock,
      Store* store);

  // Writes the new job to the store (Store::CreateJob) and from then on every
  // event as it is appended. `on_created` runs once the job's record is
  // committed (on a store thread). Call once.
  void Persist(CommitCallback on_created);

  // A job rebuilt from its stored record and event log (events are not
  // written again). INVALID_ARGUMENT if the log does not fit the record
  // (gaps, unknown targets).
  static absl::StatusOr<std::shared_ptr<Job>> Restore(StoredJob stored,
                                                      const Clock* clock,
                                                      Store* store);

  const std::string& id() const { return id_; }
  size_t target_count() const { return target_count_; }

  // The job record; without captured output unless `with_output`.
  varan::v1::Job Snapshot(bool with_output) const;
  bool finished() const;
  // Targets that are final and count as failures (anything but exit code 0,
  // except SKIPPED).
  size_t failures() const;
  // Runs `callback` (once, on a store thread) after the finished job's
  // record is committed. Set it before the job can finish.
  void SetOnFinishedPersisted(std::function<void()> callback);

  // --- Updates (any thread). Each is ignored for a target already final. --
  // The target was sent to its periphery.
  void MarkDispatched(size_t target);
  // An event from the periphery's Execute stream.
  void OnExecuteEvent(size_t target, const varan::v1::ExecuteEvent& event);
  // The Execute call ended. If the target is not final yet, it becomes
  // CANCELED (the job was canceled), LOST (the command had started: its
  // outcome is unknown) or FAILED (never started: `status` says why).
  void OnExecuteDone(size_t target, const absl::Status& status);
  // Finishes a target from core's side: FAILED, SKIPPED, CANCELED or LOST,
  // with `error` saying why.
  void FinishTarget(size_t target, varan::v1::TargetState state,
                    const std::string& error);
  // Records a cancel request by `by`. False if the job already finished or
  // was already canceled.
  bool RequestCancel(const std::string& by);
  // What the periphery reported about the target's execution after its call
  // ended (or core restarted): a start not seen yet, output past what core
  // received (from the report's tails), and the end. Ignored for a final
  // target.
  void ApplyReport(size_t target, const varan::v1::ExecutionReport& report);
  // The outcome the periphery reported for a target that became LOST: the
  // target takes it (a `finished` event marked late) and the job's summary
  // is recomputed (a new `job_finished` when it had finished). False when
  // the target is not LOST or the report has no outcome.
  bool AmendLost(size_t target, const varan::v1::ExecutionReport& report);
  // Index of the target named `name`, or -1.
  int TargetIndex(const std::string& name) const;
  // The target is final, or the job was canceled.
  bool Settled(size_t target) const;
  // The periphery reported the target's process started.
  bool Started(size_t target) const;
  // Someone asked to cancel the job.
  bool CancelRequested() const;

  // --- Watching. --------------------------------------------------------
  enum class Read { kEvent, kWait, kEnd };
  // kEvent: `*out` is the event with sequence `seq`. kEnd: the job finished
  // and `seq` is past its last event. kWait: not yet recorded.
  Read EventAt(uint64_t seq, varan::v1::JobEvent* out) const;
  // The same without a copy: kEvent sets `*out` to the event in the log,
  // which stays valid and unchanged while the job lives (the log is only
  // appended to), so a stream can write it without holding a lock.
  Read EventAt(uint64_t seq, const varan::v1::JobEvent** out) const;
  // Registers `callback`, run after each new event. Returns a handle.
  uint64_t AddWatcher(std::function<void()> callback);
  void RemoveWatcher(uint64_t handle);

 private:
  // What was captured of one target's stream: the bytes themselves are the
  // data of its output events in events_ (kept once, not a second time
  // here; SnapshotLocked joins them), this counts them.
  struct Capture {
    uint64_t captured = 0;
    uint64_t uncaptured = 0;
  };

  // For Restore: no accepted event, nothing persisted.
  struct RestoreTag {};
  Job(RestoreTag, varan::v1::Job record, const Clock* clock, Store* store);

  // Runs `change` under mu_ (it returns whether it appended events), hands
  // new events to the store, then, without mu_, notifies watchers. Returns
  // `change`'s result.
  bool Update(absl::FunctionRef<bool()> change);
  // Fills sequence, time and job id, applies the event to the record,
  // appends it to the log and queues it for the store.
  void EmitLocked(varan::v1::JobEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies an event's effect on the record (live and on replay).
  absl::Status ApplyLocked(const varan::v1::JobEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies one ExecuteEvent of `target` (not final).
  void ExecuteEventLocked(size_t target, const varan::v1::ExecuteEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Emits output events for what `tail` holds past what core received of
  // `stream` of `target`.
  void TailLocked(size_t target, varan::v1::OutputStream stream,
                  const varan::v1::OutputTail& tail)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Emits `job_finished` with the job's current summary.
  void EmitJobFinishedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Emits `finished` for a target (and `job_finished` when it was the last).
  void FinishTargetLocked(size_t target, varan::v1::TargetState state,
                          const varan::v1::ExitStatus* exit,
                          const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands events emitted since the last flush to the store, and the final
  // record when the job just finished. Requires mu_ so the store sees the
  // events in order.
  void PersistLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  varan::v1::Job SnapshotLocked(bool with_output) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool FinalLocked(size_t target) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void NotifyWatchers();

  const std::string id_;
  const size_t target_count_;
  const Clock* const clock_;
  Store* const store_;

  mutable absl::Mutex mu_;
  varan::v1::Job record_ ABSL_GUARDED_BY(mu_);
  uint64_t capture_limit_ ABSL_GUARDED_BY(mu_) = 0;
  // [target][0 = stdout, 1 = stderr]
  std::vector<std::array<Capture, 2>> captures_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> started_ ABSL_GUARDED_BY(mu_);
  // [target][stream]: sequence of the next output chunk.
  std::vector<std::array<uint64_t, 2>> next_chunk_ ABSL_GUARDED_BY(mu_);
  size_t final_targets_ ABSL_GUARDED_BY(mu_) = 0;
  size_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  // A deque: appending moves no event, so EventAt can hand out pointers.
  std::deque<varan::v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);
  // events_[persisted_..] are not handed to the store yet.
  size_t persisted_ ABSL_GUARDED_BY(mu_) = 0;
  // Persist() was called: events go to the store.
  bool created_ ABSL_GUARDED_BY(mu_) = false;
  bool final_persist_started_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_finished_persisted_ ABSL_GUARDED_BY(mu_);

  // Held while callbacks run (see the class comment).
  absl::Mutex watchers_mu_;
  std::map<uint64_t, std::function<void()>> watchers_
      ABSL_GUARDED_BY(watchers_mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(watchers_mu_) = 0;
};

// True for target states that are final.
bool IsFinal(varan::v1::TargetState state);

}  // namespace varan::core
