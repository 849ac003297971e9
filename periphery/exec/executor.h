// Executor: the periphery's executions, whatever transport asked for them
// (the Agent service a dialing core calls, or the tunnel to core).
//
// It admits commands (at most max_concurrent running, execution ids unique
// among those it still holds), starts them as periphery::Execution, cancels
// them by id, and keeps what core must not lose: an execution started with
// hold_result stays known after its caller went away — running, or finished
// with its exit status and output tails — until core acknowledges it
// (Acknowledge), up to `max_held` finished ones and for at most `hold_for`
// (the oldest are dropped first, with a warning). Report() lists them for a
// heartbeat.
//
// A consumer (an Agent Execute stream or the tunnel) calls Detached() when it
// stops reading an execution, saying whether the `exited` event went out;
// until then the execution's result is reported without its tails only once
// that is known.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "periphery/exec/execution.h"
#include "varan/v1/periphery.pb.h"

namespace varan::periphery {

struct ExecutorOptions {
  uint32_t max_concurrent = 64;
  ExecutionOptions execution;
  // Finished held executions kept until core acknowledges them.
  size_t max_held = 1000;
  absl::Duration hold_for = absl::Hours(24);
};

class Executor {
 public:
  explicit Executor(ExecutorOptions options);

  // Admits and starts `request`. Errors, in this order: RESOURCE_EXHAUSTED
  // (max_concurrent running), ALREADY_EXISTS (id held), INVALID_ARGUMENT
  // (malformed spec).
  absl::StatusOr<std::shared_ptr<Execution>> Start(
      const varan::v1::ExecuteRequest& request);

  // Stops the execution with `id`. NOT_FOUND when none is running.
  absl::Status Cancel(const std::string& id);

  // The consumer of `id` stopped reading; `delivered`: the `exited` event
  // was written to it.
  void Detached(const std::string& id, bool delivered);

  // Core dropped what it received of execution `id` (TunnelDown.detach):
  // as Detached, and its result is reported with its tails even if its
  // `exited` event went out.
  void Dropped(const std::string& id);

  // Core did not receive the end of execution `id`, although its `exited`
  // event went out (HeartbeatResponse.resend_with_tails): it is reported
  // again with its tails.
  void ResendTails(const std::vector<std::string>& ids);

  // Held executions for a heartbeat: running ones, finished ones not yet
  // acknowledged (tails only for those whose result never went out).
  std::vector<varan::v1::ExecutionReport> Report();

  // Core recorded these; forget them.
  void Acknowledge(const std::vector<std::string>& ids);

  // Commands running now.
  uint32_t running();

  // Cancels every running command.
  void CancelAll();

 private:
  struct Entry {
    std::shared_ptr<Execution> execution;
    bool hold = false;
    // A consumer is reading its events.
    bool attached = true;
    // Its `exited` event went out to a consumer.
    bool delivered = false;
  };
  // Drops finished executions nobody needs any more; returns how many run.
  uint32_t PruneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ExecutorOptions options_;
  absl::Mutex mu_;
  // By execution id (a generated key for anonymous ones).
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t anonymous_ ABSL_GUARDED_BY(mu_) = 0;
};

// Stops the executions core's heartbeat answer asks to cancel
// (HeartbeatResponse.cancel: their job was canceled while core could not
// reach them); unknown or finished ones are skipped.
void CancelForCore(Executor* executor,
                   const google::protobuf::RepeatedPtrField<std::string>& ids);

}  // namespace varan::periphery
