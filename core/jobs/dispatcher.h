// Dispatcher: turns a DispatchRequest into a Job and runs it: sends each
// matched periphery its target through a PeripheryLink (at most max_parallel
// at once, stopping after stop_after_failures), feeds what comes back into
// the Job, cancels on request, and marks targets LOST when their periphery
// goes away.
//
// Jobs are kept in memory while they run (and until their final record is
// committed to the Store); finished jobs are read back from the Store. A
// job is committed before any target is sent, so a job a caller has an id
// for survives a core crash.
//
// Losing nothing: core asks peripheries to hold the result of every
// command it sends (ExecuteRequest.hold_result), and they report what they
// hold in their heartbeats (OnPeripheryReport). When a call breaks (a cut
// link, a restarting periphery), its target is not given up — even when the
// command's "started" never reached core, since the request may have: it
// waits for the periphery to report the command — finished (its result and
// output tail are recorded), still running (it waits on), or unknown in two
// heartbeats in a row (LOST, or FAILED with the reason if it never started
// there). Only a call that never reached the periphery (IsNotDelivered: no
// tunnel, no connection) or that the periphery refused fails at once —
// except one that went by a stale route (IsMisrouted: several replicas, the
// one holding the periphery died), which is sent again through the
// periphery's next replica for options.redelivery_window (Redeliver). After
// a core restart, Recover() puts the targets that were sent or running into
// that same wait.
// A periphery that goes offline (its TTL, or the restart grace) loses its
// targets as before; should it report an outcome later, that replaces LOST
// (Job::AmendLost).
//
// Code layout: dispatcher.cc (lookups, cancel, periphery gone, shutdown),
// dispatcher_rollout.cc (Dispatch and starting targets, with Rollout in
// rollout.h), dispatcher_recovery.cc (Recover, OnPeripheryReport); each
// target's call is a TargetRun (target_run.h), named by an ExecutionId
// (execution_id.h).
//
// Ownership: the dispatcher owns its running jobs' Rollouts and TargetRuns
// and shares the Jobs with callers; fleet, links, store and clock are
// borrowed.
//
// Thread-safe. Shutdown() cancels calls in flight and waits for them, so links
// and observers never outlive the dispatcher.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "core/fleet/registry.h"
#include "core/jobs/job.h"
#include "core/jobs/rollout.h"
#include "core/jobs/stored_job_views.h"
#include "core/jobs/target_run.h"
#include "core/link/periphery_link.h"
#include "core/store/store.h"

namespace varan::core {

struct DispatcherOptions {
  // Output stored per target and stream when the request does not say:
  // the first head bytes and the last tail bytes.
  uint64_t default_output_head = 1 << 20;
  uint64_t default_output_tail = 3 << 20;
  // Output events each job keeps in memory for watchers (older ones are
  // output_gap records; see Job).
  uint64_t live_window_bytes = 8 << 20;
  // Several replicas (core/jobs/job_owner.h): this replica's tag, carried
  // in the ids of the jobs it creates; empty for a core alone.
  std::string replica_tag;
  // Whether this dispatcher answers for the job with that id — the jobs it
  // created, and those of dead replicas while it holds the jobs lease. A
  // late or stray report of any other job is left to the replica running
  // it, and AdoptOrphans takes over the unfinished ones it answers for but
  // does not run. Empty: every job (a core alone).
  std::function<bool(const std::string& job_id)> owns_job;
  // Several replicas: fences the replica with tag `tag` (Cluster::Fence)
  // before AdoptOrphans takes over its jobs, so that it can no longer
  // write them; its jobs are left alone while this fails (it is live after
  // all, or the database is out of reach). Empty: no fencing.
  std::function<absl::Status(const std::string& tag)> fence_creator;
  // How long a target whose call went by a stale route (IsMisrouted: the
  // replica holding its periphery died or let it go) is sent again for,
  // about twice a second, before it fails: longer than a dead replica
  // stays in the others' views (core sets Cluster's ttl + 5 s).
  absl::Duration redelivery_window = absl::Seconds(15);
  // Runs the store reads that heartbeats need (a late or stray report of a
  // job no longer in memory: StoredJobViews) off their thread; an error
  // when it will not. Core: BlockingWork::Run. Empty: read at once, on the
  // heartbeat's thread.
  StoredJobViews::Runner run_reads;
};

// The output limits of a job dispatched with `options` (DispatchOptions:
// output_head_bytes / output_tail_bytes, or the deprecated
// capture_limit_bytes as head = 1/4, tail = the rest; zero: the defaults).
OutputLimits JobOutputLimits(const varan::v1::DispatchOptions& options,
                             const DispatcherOptions& defaults);

class Dispatcher : private TargetRun::Owner {
 public:
  // All pointers must outlive the dispatcher.
  Dispatcher(const FleetRegistry* fleet, LinkProvider* links, Store* store,
             const Clock* clock, DispatcherOptions options);
  ~Dispatcher() override;

  // Takes over every job the store holds as still running (a previous core
  // stopped or crashed while it ran): targets never sent become FAILED;
  // targets sent or running wait for their periphery's report (see above),
  // or are LOST at once when their periphery is offline. Call after the
  // fleet is loaded and before serving. Returns how many jobs it took over.
  absl::StatusOr<size_t> Recover();

  // Several replicas: takes over, as Recover does, the jobs the store holds
  // as still running that this dispatcher answers for (options.owns_job)
  // and does not run — those of replicas that died. Call it periodically
  // while holding the jobs lease. Returns how many it took over.
  absl::StatusOr<size_t> AdoptOrphans();

  // How long OnPeripheryReport asks for the output tails of an end that
  // came without them.
  static constexpr absl::Duration kAskForTails = absl::Seconds(30);

  // What periphery `periphery_id` reports holding (from its heartbeat);
  // returns the execution ids whose results core has stored or does not
  // want (the periphery forgets them). A result applied now is not among
  // them: the periphery reports it again, and it is acknowledged once its
  // job's final record is committed — so a result is never forgotten by
  // the periphery while only this core's memory holds it (core dying, or
  // fenced, before it is stored). `cancel` (may be null) receives running
  // executions of canceled jobs that the cancel could not reach (the call
  // had broken, or the target was finished as LOST or CANCELED without the
  // periphery hearing of it): the periphery is to stop them. `complete`:
  // `reports` are all the periphery holds, so a waiting target missing from
  // two of them in a row is resolved as absent; false for the part of a
  // heartbeat another replica forwards (Replica.Report). `resend` (may be
  // null) receives finished executions a waiting target's periphery
  // reported without tails (their end went out on the call that broke, and
  // never arrived): the periphery is to report them again with their tails
  // (HeartbeatResponse.resend_with_tails). They are asked for in answer to
  // every such report until one brings the tails, for kAskForTails from the
  // first (the ask reaches the periphery a heartbeat or more later), then
  // a report without them is applied as it is.
  std::vector<std::string> OnPeripheryReport(
      const std::string& periphery_id,
      const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
          reports,
      std::vector<std::string>* cancel = nullptr, bool complete = true,
      std::vector<std::string>* resend = nullptr);

  // Whether a target of this dispatcher is sent to, runs on, or waits for a
  // report from periphery `periphery_id`: its heartbeats then go to
  // OnPeripheryReport even when they report nothing, since a waiting target
  // the periphery does not hold is resolved by its absence.
  bool HasRunsOn(const std::string& periphery_id) const;

  // The peripheries with targets waiting for their report (a call broke, or
  // the job was taken over). Several replicas: those whose heartbeats reach
  // another replica are asked for there (Enrollment::CheckAwaited).
  std::vector<std::string> AwaitedPeripheries() const;

  // Validates, resolves targets and creates the job; returns it at once.
  // Targets are sent once the job is committed; then `on_committed` (may be
  // empty) runs with the commit's status — a failed commit fails every
  // target. Errors: INVALID_ARGUMENT (selector, spec), NOT_FOUND (named
  // periphery), FAILED_PRECONDITION (no match and !allow_no_targets),
  // UNAVAILABLE (shutting down), RESOURCE_EXHAUSTED with a retry-after hint
  // (the store is behind: Store::CheckBacklog; nothing is created).
  absl::StatusOr<std::shared_ptr<Job>> Dispatch(
      const varan::v1::DispatchRequest& request, const std::string& created_by,
      CommitCallback on_committed = {});

  // The job with `id`, running or stored; NOT_FOUND (naming the id) if there
  // is none.
  absl::StatusOr<std::shared_ptr<Job>> Find(const std::string& id) const;

  // The job with `id` is running, or finished with its final record (and
  // its output) not committed yet: Find returns the live Job.
  bool Running(const std::string& id) const { return Live(id) != nullptr; }

  // The store jobs and their output are kept in (for the services' reads).
  Store* store() const { return store_; }

  // Jobs matching `request`, newest first, without output.
  // INVALID_ARGUMENT for a bad page token.
  absl::StatusOr<varan::v1::ListJobsResponse> List(
      const varan::v1::ListJobsRequest& request) const;

  // Cancels the job (see Jobs.CancelJob) on behalf of `by`; returns its
  // record. NOT_FOUND.
  absl::StatusOr<varan::v1::Job> Cancel(const std::string& id,
                                        const std::string& by);

  // The periphery with `periphery_id` went offline or was removed: its
  // running targets become LOST with `reason` and their calls are dropped.
  void PeripheryGone(const std::string& periphery_id,
                     const std::string& reason);

  // Cancels every call in flight and waits up to `timeout` for them to end.
  // Releases producers blocked on a job's live window first.
  void Shutdown(absl::Duration timeout);

  // Hands the output buffered by running jobs to the store; call it about
  // every second.
  void Tick();

 private:
  // TargetRun::Owner:
  bool Stopping() const override { return stopping_.load(); }
  void RunDone(TargetRun* run) override;
  absl::Time Now() const override { return clock_->Now(); }
  absl::Duration RedeliveryWindow() const override {
    return options_.redelivery_window;
  }
  // This dispatcher as its runs' owner (the base is private).
  TargetRun::Owner* AsOwner() { return this; }

  struct TakeOverCounts {
    size_t jobs = 0, waiting = 0, lost = 0, never_sent = 0;
  };
  // Takes over the jobs stored as running (only those this dispatcher
  // answers for and does not run, when `orphans_only`), logging how many
  // and `what` happened to them. Returns how many.
  absl::StatusOr<size_t> TakeOverStored(absl::string_view why,
                                        absl::string_view what,
                                        bool orphans_only);
  // Runs `stored` (left running by a core that stopped, `why`) from here:
  // see Recover.
  void TakeOver(StoredJob stored, absl::string_view why,
                TakeOverCounts* counts);

  // Sends queued targets of `job_id` while its limits allow.
  void StartMore(const std::string& job_id);
  // Sends again the runs whose call went by a stale route and whose next
  // try is due (TargetRun::redelivering); fails those whose window passed.
  // (A cancel ends a waiting run at once: Cancel.)
  void Redeliver();
  // The job with `id` if it is in memory (Running), else null.
  std::shared_ptr<Job> Live(const std::string& id) const;
  // A late report for a target no run waits for: amends it if it is LOST
  // — once the report brings the output tails: one without them has them
  // asked for through `resend` (if not null) for kAskForTails first, as for
  // a waiting run. True when the periphery may forget the report: the
  // target's outcome is stored (its job's final record committed, with no
  // amendment pending). A job not in memory is read through
  // stored_views_: false until it has been read.
  bool AmendLate(const varan::v1::ExecutionReport& report,
                 std::vector<std::string>* resend);
  // AmendLate with the report's job: `job`, stored with its final record
  // (`stored`) or in memory; `changed`: the targets amended in the stored
  // view since it was read (null for a job in memory).
  bool AmendLateIn(const std::shared_ptr<Job>& job, bool stored,
                   const varan::v1::ExecutionReport& report,
                   const std::string& target, std::vector<std::string>* resend,
                   StoredJobViews::Changed* changed);
  // Whether to ask again for the tails of late report `wire_id` at `now`
  // (kAskForTails from the first ask); forgets asks older than that.
  bool AskLateTails(const std::string& wire_id, absl::Time now);
  // A running execution no run waits for: true when its job was canceled
  // and its target is final (the periphery is to stop it). A job not in
  // memory is read through stored_views_: false until it has been read.
  bool CanceledWhileAway(const std::string& wire_id);
  void Forget(const std::string& job_id);
  // Indexes a new run (runs_, by_execution_, by_periphery_) / drops it.
  void AddRunLocked(std::shared_ptr<TargetRun> run)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveRunLocked(TargetRun* run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The runs on periphery `periphery_id`.
  std::vector<std::shared_ptr<TargetRun>> RunsOn(
      const std::string& periphery_id) const;
  bool NoRuns() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return runs_.empty(); }
  std::string NewJobId();

  const FleetRegistry* const fleet_;
  LinkProvider* const links_;
  Store* const store_;
  const Clock* const clock_;
  const DispatcherOptions options_;

  // shutting_down_ for TargetRuns, which must not take mu_.
  std::atomic<bool> stopping_{false};
  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t id_counter_ ABSL_GUARDED_BY(mu_) = 0;
  // Jobs running, or finished with their final record not yet committed.
  absl::flat_hash_map<std::string, std::unique_ptr<Rollout>> active_
      ABSL_GUARDED_BY(mu_);
  // shared_ptr: a run is referenced both here and by StartMore while it
  // starts the call, and the call may end before StartMore returns.
  absl::flat_hash_map<TargetRun*, std::shared_ptr<TargetRun>> runs_
      ABSL_GUARDED_BY(mu_);
  // The same runs by execution id, in its wire form (ExecutionId).
  absl::flat_hash_map<std::string, TargetRun*> by_execution_
      ABSL_GUARDED_BY(mu_);
  // The same runs by periphery: a heartbeat looks at its own runs only.
  absl::flat_hash_map<std::string, absl::flat_hash_set<TargetRun*>>
      by_periphery_ ABSL_GUARDED_BY(mu_);
  // Late reports of LOST targets whose tails were asked for: when first.
  absl::flat_hash_map<std::string, absl::Time> late_tails_asked_
      ABSL_GUARDED_BY(mu_);
  // Stored jobs that late and stray reports ask about. Last: its reads
  // (Find) use what is above, and it waits for them when destroyed.
  StoredJobViews stored_views_;
};

}  // namespace varan::core
