// Job: one dispatched command, its targets' states and its event log.
//
// The event log is the job's truth: every change of state is an event with
// a sequence number (0, 1, 2, ... without gaps), applied to the record as it
// is appended. The same code replays a stored log after a restart
// (Job::Restore), so a restored job is exactly the job that was recorded.
// Watchers read the log from any sequence and are told (through a callback)
// when more arrives.
//
// Output (issue #16) is never cut: every byte becomes an output event. The
// log keeps the output events of the last `live_window_bytes` in memory;
// older ones are evicted into output_gap records (adjacent evicted output
// events merged into one, whatever their target), which EventAt hands to a
// watcher reading an evicted sequence. One watcher may be *pacing* (Exec's
// caller): no output event is evicted before it consumed it, and the thread
// delivering output blocks (OnExecuteEvent) while the window is full, until
// the pacer consumes, goes away, the job is canceled or ReleaseProducers()
// (core stopping). OutputChunk.offset is checked per target and stream:
// duplicates are dropped, overlaps trimmed, jumps counted as missed bytes.
//
// Persistence: the record at Persist(), then every non-output event in
// order (the stored log has holes where output events were); the output
// itself goes to Store::AppendOutput per target and stream, the first
// head_bytes and the last tail_bytes (buffered up to 256 KiB, one append in
// flight per stream, trimmed when the store lags). When the job finishes,
// its final record is written once every output append has committed; the
// `on_finished_persisted` callback runs after that write.
//
// Code layout: job.cc holds the record, the log and its replay,
// persistence and watchers; job_execution.cc turns what happens to a target
// (sent, call events and end, heartbeat reports, cancel) into events;
// job_output.cc the output: offsets, the live window and its gaps, pacing,
// stored output.
//
// Thread-safe. Watcher callbacks run on the thread that appended the event,
// without the job's lock held; RemoveWatcher waits for a running callback,
// so after it returns the callback's captures may be destroyed. Store
// commit callbacks take the job's lock briefly; the job must outlive its
// store writes (the dispatcher keeps it until its final record is
// committed, and syncs the store before it goes).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/jobs/tail_ring.h"
#include "core/store/store.h"
#include "varan/v1/core.pb.h"
#include "varan/v1/periphery.pb.h"

namespace varan::core {

// What a job keeps of its output: stored (per target and stream) and in
// memory for watchers (per job).
struct OutputLimits {
  uint64_t head_bytes = 1 << 20;
  uint64_t tail_bytes = 3 << 20;
  uint64_t live_window_bytes = 8 << 20;
};

// Sequences a running job skips when it is restored after a core restart
// (more events than one core's lifetime gives a job).
inline constexpr uint64_t kRestoreSequenceSkip = uint64_t{1} << 32;

class Job {
 public:
  // A new job. `record` holds id, target, spec, options, created_by and one
  // queued JobTarget per matched periphery. Appends the `accepted` event; a
  // job without targets finishes at once. `store` must not be null and
  // must outlive the job. Nothing is written to the store until Persist().
  Job(varan::v1::Job record, OutputLimits limits, const Clock* clock,
      Store* store);

  // Waits for a running output commit callback; later ones do nothing.
  ~Job();

  // Writes the new job to the store (Store::CreateJob) and from then on every
  // event as it is appended. `on_created` runs once the job's record is
  // committed (on a store thread). Call once.
  void Persist(CommitCallback on_created);

  // A job rebuilt from its stored record and event log (events are not
  // written again). Holes in the log (output events, not stored as events)
  // become output_gap records; the streams' sizes come from the store's
  // output extents. INVALID_ARGUMENT if the log does not fit the record
  // (unknown targets, no events). `live_window_bytes` as OutputLimits.
  static absl::StatusOr<std::shared_ptr<Job>> Restore(
      StoredJob stored, const Clock* clock, Store* store,
      uint64_t live_window_bytes = OutputLimits{}.live_window_bytes);

  const std::string& id() const { return id_; }
  size_t target_count() const { return target_count_; }

  // The job record: target_count, output_head/tail_bytes, and per target
  // stdout_info/stderr_info sizes (total_bytes, head_end, tail_start,
  // omitted_bytes; no previews) with *_uncaptured_bytes = omitted_bytes.
  // JobTarget.stdout/stderr are always empty.
  varan::v1::Job Snapshot() const;
  // Runs `done` once the output of every final target is committed to the
  // store (a target's last bytes are written when it ends, a moment after
  // its `finished` event), so that reads of the stored output (GetJob's
  // previews) agree with its state: at once on this thread when it is,
  // else on the store thread that commits the last of it (without the
  // job's lock; reads of the store are allowed there, see store.h).
  void WhenFinalOutputStored(std::function<void()> done);
  // The target named `name` is final (false for an unknown name).
  bool TargetFinal(const std::string& name) const;
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
  // An event from the periphery's Execute stream. Its output data is taken
  // (moved out of `event`). Blocks while the live window is full and a
  // pacing watcher has not consumed it (see the class comment); so the
  // caller must not hold a lock the pacer or a canceler needs, and must be
  // a thread that may block (not a reader shared by other executions: use
  // OfferExecuteEvent there).
  void OnExecuteEvent(size_t target, varan::v1::ExecuteEvent& event);
  void OnExecuteEvent(size_t target, varan::v1::ExecuteEvent&& event) {
    OnExecuteEvent(target, event);
  }
  // The same, never blocking: true when the window has room (the caller
  // may take more at once, e.g. grant tunnel credit for the event's bytes);
  // false when it is full: `on_room` then runs once (on the thread that
  // makes room, without the job's lock) when it has room again or the
  // producer is released. `on_room` is not kept when true is returned.
  bool OfferExecuteEvent(size_t target, varan::v1::ExecuteEvent& event,
                         std::function<void()> on_room);
  // Releases every producer blocked on the window, now and later (core is
  // stopping). Idempotent.
  void ReleaseProducers();
  // Hands buffered output to the store (at most one append in flight per
  // stream; call it periodically, e.g. every second).
  void FlushOutput();
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
  // kEvent: `*out` is the event with sequence `seq`, or, when that output
  // event was evicted from memory, the output_gap event covering it
  // (sequence = the last covered: continue at out->sequence() + 1). kEnd:
  // the job finished and `seq` is past its last event. kWait: not yet
  // recorded.
  Read EventAt(uint64_t seq, varan::v1::JobEvent* out) const;
  // The same without a copy: the shared event stays valid while held.
  Read EventAt(uint64_t seq,
               std::shared_ptr<const varan::v1::JobEvent>* out) const;
  // Deprecated, unsafe once output is evicted: the pointer is valid only
  // until the event leaves the live window (a pacing watcher's unconsumed
  // events never do). Use one of the above.
  Read EventAt(uint64_t seq, const varan::v1::JobEvent** out) const;
  // Registers `callback`, run after each new event. Returns a handle. A
  // `pacing` watcher (at most one; a second one is not pacing) must call
  // Consumed after writing each event.
  uint64_t AddWatcher(std::function<void()> callback, bool pacing = false);
  // The pacing watcher `handle` has written every event before `next_seq`.
  void Consumed(uint64_t handle, uint64_t next_seq);
  // Removes the watcher; removing the pacing one releases a blocked
  // producer.
  void RemoveWatcher(uint64_t handle);

 private:
  // One target's stream: how much arrived and what is on its way to the
  // store (job_output.cc).
  struct Stream {
    // Offset just past the last byte core has (received or missed).
    uint64_t end = 0;
    // Bytes core never received (jumps of OutputChunk.offset, tails).
    uint64_t missed = 0;
    // Buffered for the store: bytes [head_off, +head_buf) of the stored
    // head, then the tail's last bytes up to tail_end (at most tail_bytes,
    // past the head). The head is flushed by size or time, the tail only
    // by time (kFlushInterval): a fast stream's tail is rewritten once a
    // second, not as fast as it arrives.
    uint64_t head_off = 0;
    std::string head_buf;
    uint64_t tail_end = 0;
    TailRing tail;
    bool in_flight = false;
    absl::Time last_flush = absl::InfinitePast();
  };
  // An entry of the log: an event, or an output_gap standing for evicted
  // output events (first_sequence .. sequence).
  using EventPtr = std::shared_ptr<const varan::v1::JobEvent>;

  // For Restore: no accepted event, nothing persisted.
  struct RestoreTag {};
  Job(RestoreTag, varan::v1::Job record, const Clock* clock, Store* store,
      uint64_t live_window_bytes);
  // Sets up the per-target state and the record's output fields.
  void InitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

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
  // Applies one ExecuteEvent of `target` (not final); output data is
  // moved out of `event`.
  // Applies an event of the periphery's Execute stream and tells watchers.
  void TakeExecuteEvent(size_t target, varan::v1::ExecuteEvent& event)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ExecuteEventLocked(size_t target, varan::v1::ExecuteEvent& event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // --- job_output.cc ---
  // Checks `chunk`'s offset against what core has of its stream, trims it,
  // and emits it as an output event (data moved), buffering it for the
  // store. A chunk with nothing new emits nothing.
  // `exact_offset`: offset 0 means 0 (a tail), not "a periphery that does
  // not set offsets".
  void OutputLocked(size_t target, varan::v1::OutputChunk& chunk,
                    bool exact_offset = false)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Buffers [offset, +data) of a stream for the store, trimming what can no
  // longer be stored, and flushes when enough is buffered.
  void BufferLocked(size_t target, size_t stream, uint64_t offset,
                    std::string_view data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts an append of the stream's buffer when none is in flight and
  // (`force`, 256 KiB buffered, or a second passed since the last one).
  void FlushLocked(size_t target, size_t stream, bool force)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // No output buffered: everything is handed to the store, whose writes
  // commit in call order, so a FinishJob called now commits after it.
  bool OutputIdleLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Records in buffered_ / storing_ where the streams of `target` are.
  void NoteStreamsLocked(size_t target) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // No final target has output buffered or an append in flight.
  bool FinalOutputStoredLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // An output append committed.
  void OutputCommitted(size_t target, size_t stream);
  // Evicts output events while the window is over its size and the pacer
  // (if any) consumed them.
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Replaces the output event `seq` by a gap (merged with the gap just
  // before it).
  void EvictOneLocked(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The window has room for the producer (or it is released).
  bool RoomLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Runs the waiting on_room callbacks when there is room.
  void WakeProducers();
  // Appends an output_gap record for the sequences [first, last] (restore).
  void AppendGapLocked(uint64_t first, uint64_t last)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The OutputInfo sizes of `target`'s `stream`.
  void FillInfoLocked(size_t target, size_t stream,
                      varan::v1::OutputInfo* info) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  uint64_t OmittedLocked(size_t target, size_t stream) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
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
  varan::v1::Job SnapshotLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool FinalLocked(size_t target) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void NotifyWatchers();

  const std::string id_;
  const size_t target_count_;
  const Clock* const clock_;
  Store* const store_;

  mutable absl::Mutex mu_;
  varan::v1::Job record_ ABSL_GUARDED_BY(mu_);
  OutputLimits limits_ ABSL_GUARDED_BY(mu_);
  // [target][0 = stdout, 1 = stderr]
  std::vector<std::array<Stream, 2>> streams_ ABSL_GUARDED_BY(mu_);
  // The targets with bytes buffered for the store, and those with bytes
  // buffered or an append in flight (NoteStreamsLocked keeps them): a
  // commit checks these, not every target of a job of thousands.
  absl::flat_hash_set<size_t> buffered_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<size_t> storing_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> started_ ABSL_GUARDED_BY(mu_);
  // [target][stream]: sequence of the next output chunk.
  std::vector<std::array<uint64_t, 2>> next_chunk_ ABSL_GUARDED_BY(mu_);
  size_t final_targets_ ABSL_GUARDED_BY(mu_) = 0;
  size_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  // The log by the last sequence each entry stands for (an event: its own;
  // a gap: the last it covers).
  std::map<uint64_t, EventPtr> log_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Output events in memory, oldest first, and their data's size.
  std::deque<uint64_t> window_ ABSL_GUARDED_BY(mu_);
  uint64_t window_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The pacing watcher (none: ~0) and the next sequence it will write.
  uint64_t pacer_ ABSL_GUARDED_BY(mu_) = ~uint64_t{0};
  uint64_t pacer_next_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> on_room_ ABSL_GUARDED_BY(mu_);
  // Sequences from persisted_ on are not handed to the store yet.
  uint64_t persisted_ ABSL_GUARDED_BY(mu_) = 0;
  // Persist() was called: events go to the store.
  bool created_ ABSL_GUARDED_BY(mu_) = false;
  bool final_persist_started_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> on_finished_persisted_ ABSL_GUARDED_BY(mu_);
  // WhenFinalOutputStored callbacks waiting for OutputCommitted.
  std::vector<std::function<void()>> output_stored_waiters_
      ABSL_GUARDED_BY(mu_);
  // Rate limit of the offset log lines.
  absl::Time last_offset_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();

  // What output commit callbacks reach the job through: null once the job
  // is destroyed (a callback may outlive it, e.g. a job read by Find).
  struct Alive {
    absl::Mutex mu;
    Job* job ABSL_GUARDED_BY(mu) = nullptr;
  };
  const std::shared_ptr<Alive> alive_ = std::make_shared<Alive>();

  // Held while callbacks run (see the class comment).
  absl::Mutex watchers_mu_;
  std::map<uint64_t, std::function<void()>> watchers_
      ABSL_GUARDED_BY(watchers_mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(watchers_mu_) = 0;
};

// True for target states that are final.
bool IsFinal(varan::v1::TargetState state);

}  // namespace varan::core
