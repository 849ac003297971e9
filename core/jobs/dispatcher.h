// Dispatcher: turns a DispatchRequest into a Job and sends it to every
// matched periphery through its PeripheryLink, feeding what comes back into
// the Job.
//
// Jobs live in memory (the newest `max_jobs_kept`; older finished jobs are
// dropped). Thread-safe. Shutdown() cancels calls in flight and waits for
// them, so links and observers never outlive the dispatcher.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "core/fleet/registry.h"
#include "core/jobs/job.h"
#include "core/link/periphery_link.h"

namespace varan::core {

struct DispatcherOptions {
  // Output kept per target and stream when the request does not say.
  uint64_t default_capture_limit = 4 * 1024 * 1024;
  size_t max_jobs_kept = 1000;
};

class Dispatcher {
 public:
  Dispatcher(const FleetRegistry* fleet, LinkProvider* links,
             const Clock* clock, DispatcherOptions options);
  ~Dispatcher();

  // Validates, resolves targets and starts the job; returns it at once.
  // Errors: INVALID_ARGUMENT (selector, spec), NOT_FOUND (named periphery),
  // FAILED_PRECONDITION (no match and !allow_no_targets), UNAVAILABLE
  // (shutting down).
  absl::StatusOr<std::shared_ptr<Job>> Dispatch(
      const varan::v1::DispatchRequest& request, const std::string& created_by);

  // The job with `id`; NOT_FOUND (naming the id) if there is none.
  absl::StatusOr<std::shared_ptr<Job>> Find(const std::string& id) const;

  // Newest first, at most `limit`, without output.
  std::vector<varan::v1::Job> List(size_t limit) const;

  // Cancels every call in flight and waits up to `timeout` for them to end.
  void Shutdown(absl::Duration timeout);

 private:
  class TargetRun;
  void RunDone(TargetRun* run);
  bool NoRuns() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return runs_.empty(); }
  std::string NewJobId();

  const FleetRegistry* const fleet_;
  LinkProvider* const links_;
  const Clock* const clock_;
  const DispatcherOptions options_;

  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t id_counter_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::shared_ptr<Job>> jobs_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::string> job_order_ ABSL_GUARDED_BY(mu_);  // oldest first
  // shared_ptr: a run is referenced both here and by Dispatch while it
  // starts the call, and the call may end before Dispatch returns.
  absl::flat_hash_map<TargetRun*, std::shared_ptr<TargetRun>> runs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
