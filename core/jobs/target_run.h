// TargetRun: one target of one job while core sends it and waits for its
// outcome — the per-target call state machine of the Dispatcher.
//
// A run observes its Execute call (events go to the Job, the end finishes
// the target). When the call breaks in a way that may have left the command
// running on the periphery (see Recoverable), the run does not finish the
// target: it is "awaiting" the periphery's heartbeat report, which the
// Dispatcher's recovery code resolves (TakeAwaiting, Missed/Seen). A run taken
// over after a core restart starts out awaiting (Await), with no call.
// Cancel and Abort requested before the call exists apply when it is set.
//
// A call that never reached the periphery because it went by a stale route
// (IsMisrouted: several replicas, the one holding the periphery died or let
// it go) waits too, to be sent again (TakeRedelivery, by the Dispatcher)
// until Owner::RedeliveryWindow has passed since the first such failure.
//
// Ownership: the Dispatcher owns runs (shared_ptr, see dispatcher.h) and
// must outlive them; the run shares its Job. The ExecuteCall belongs to the
// link and is only used until OnDone.
//
// Thread-safe: its state is guarded by its own mutex, never held while
// calling the Job or the owner. It never takes the owner's lock itself:
// Owner::Stopping must answer without it.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/jobs/execution_id.h"
#include "core/jobs/job.h"
#include "core/link/periphery_link.h"

namespace varan::core {

class TargetRun final : public ExecuteObserver {
 public:
  // Who started the run (the Dispatcher).
  class Owner {
   public:
    virtual ~Owner() = default;
    // True once core is shutting down: a broken call then leaves its target
    // as it is in the store, for the next core to collect.
    virtual bool Stopping() const = 0;
    // The run is over (its target is final, or core is stopping); the owner
    // drops it, which may destroy it.
    virtual void RunDone(TargetRun* run) = 0;
    // Now, and how long a misrouted call may be sent again for.
    virtual absl::Time Now() const = 0;
    virtual absl::Duration RedeliveryWindow() const = 0;
  };

  // `owner` must outlive the run. `index` is the target's index in `job`.
  TargetRun(Owner* owner, std::shared_ptr<Job> job, size_t index,
            std::string periphery_id, ExecutionId execution_id);

  const std::shared_ptr<Job>& job() const { return job_; }
  size_t index() const { return index_; }
  const std::string& periphery_id() const { return periphery_id_; }
  const ExecutionId& execution_id() const { return execution_id_; }
  // execution_id() in its wire form, as sent and reported.
  const std::string& wire_id() const { return wire_id_; }

  // The call the link started for this run.
  void SetCall(ExecuteCall* call);
  // Asks the periphery to stop the command (through the call).
  void Cancel();
  // Drops the call.
  void Abort();

  // A run taken over after a restart: no call; it waits for a report.
  void Await(absl::Status why);
  bool awaiting();
  // Whoever resolves a waiting run claims it first: true exactly once.
  bool TakeAwaiting();
  // The periphery went away (the target is LOST): the run stops waiting.
  // True when it was waiting (the caller then ends it).
  bool Gone();
  // A report did not mention it: returns how many in a row did not.
  int Missed();
  // A report mentioned it.
  void Seen();
  // How the call broke (for a run that awaits a report).
  absl::Status broke();

  // Waiting to be sent again (see the class comment): the time of the
  // next try, and the end of the window (after which the target fails).
  bool redelivering();
  absl::Time next_redelivery();
  absl::Time redeliver_until();
  // Whoever sends a redelivering run again or fails it claims it first:
  // true exactly once per wait; the run is then ready for a new call.
  bool TakeRedelivery();
  // What a report of how the command ended does to a run (ClaimEnd).
  enum class EndClaim {
    kNotAwaiting,  // the run is not waiting for a report: ignore it
    kAskTails,     // ask the periphery for the end again with its tails
    kApply,        // apply the report; the run no longer waits (claimed)
  };
  // Checks and claims the run for a report of its end, in one step (a call
  // breaking at the same time sees one or the other). A report without the
  // output tails is answered kAskTails from the first such report `now`
  // until `ask_for` has passed — a periphery hears the ask a heartbeat or
  // two later, through another replica even later — then kApply, as it is
  // (a periphery that does not know the ask). `can_ask`: false when the
  // caller cannot ask, which applies it at once.
  EndClaim ClaimEnd(bool has_tails, bool can_ask, absl::Time now,
                    absl::Duration ask_for);

  // ExecuteObserver:
  void OnEvent(const varan::v1::ExecuteEvent& event) override;
  void OnDone(const absl::Status& status) override;

 private:
  // A call that ended like this may have left the command running (or
  // finished) on the periphery, which holds the result.
  bool Recoverable(const absl::Status& status) const;

  Owner* const owner_;
  const std::shared_ptr<Job> job_;
  const size_t index_;
  const std::string periphery_id_;
  const ExecutionId execution_id_;
  const std::string wire_id_;
  absl::Mutex mu_;
  ExecuteCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool awaiting_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  int misses_ ABSL_GUARDED_BY(mu_) = 0;
  bool redelivering_ ABSL_GUARDED_BY(mu_) = false;
  // When the first report without tails came (InfinitePast: none yet).
  absl::Time tails_asked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time next_redelivery_ ABSL_GUARDED_BY(mu_);
  absl::Time redeliver_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Status broke_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
