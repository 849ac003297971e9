// TunnelCall: one execution carried over a periphery's tunnel, and its
// output flow control (ExecuteRequest.output_window_bytes / OutputCredit).
//
// The tunnel's single reader thread hands each of the execution's events to
// Accept, which only queues it; the call's own delivery thread (started when
// events wait, gone after a short idle time) passes them to the observer in
// order, then grants the bytes of each delivered output chunk back to the
// periphery as credit. So an observer that blocks (a job whose live window is
// full and whose Exec caller lags) stalls its own execution, whose periphery
// runs out of credit and stops reading the command's output, and never the
// tunnel, its heartbeats or the other executions on it.
//
// Accept refuses output beyond the window (a periphery that ignores it): the
// caller then fails the execution, not the tunnel.
//
// Ownership: shared (the tunnel's routing table, the delivery thread, the
// hub's tasks); the observer must stay valid until its OnDone. Thread-safe.
// OnEvent and OnDone run only on the delivery thread, never concurrently.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/link/periphery_link.h"
#include "varan/v1/periphery.pb.h"

namespace varan::core {

// Output window core gives each execution on a tunnel.
inline constexpr uint64_t kTunnelOutputWindowBytes = 4 * 1024 * 1024;

// What a TunnelCall asks of its tunnel. Implemented by the tunnel connection
// (and by fakes in tests). Must not block.
class TunnelCallHost {
 public:
  virtual ~TunnelCallHost() = default;
  // Asks the periphery to stop the execution. False when the tunnel closed.
  virtual bool SendCancel(const std::string& execution_id) = 0;
  // Lets the periphery send `bytes` more output of the execution.
  virtual void SendCredit(const std::string& execution_id, uint64_t bytes) = 0;
  // Tells the periphery core stopped following the execution (it keeps
  // running; its result comes with the heartbeats, tails included).
  virtual void SendDetach(const std::string& execution_id) = 0;
  // Stops routing the execution's events.
  virtual void Forget(const std::string& execution_id) = 0;
};

// Counts delivery threads so their owner can wait for them to end.
class DeliveryThreads {
 public:
  void Started();
  void Ended();
  // Returns once every started thread has ended.
  void WaitIdle();

 private:
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

class TunnelCall final : public ExecuteCall,
                         public std::enable_shared_from_this<TunnelCall> {
 public:
  // `window`: output bytes the periphery may have in flight (0: none).
  // `threads` must outlive the call's delivery threads (WaitIdle).
  TunnelCall(std::weak_ptr<TunnelCallHost> host, DeliveryThreads* threads,
             std::string id, uint64_t window, ExecuteObserver* observer);

  void Cancel() override;
  // Dropped at once: events not delivered yet are dropped, OnDone follows
  // with CANCELLED. Like a dial call's, the command (held for core) runs on
  // and its result comes with the periphery's heartbeats, its output tails
  // included (the periphery is told: SendDetach).
  void Abort() override;

  // From the tunnel's reader: queues `event` (an `exited` one also ends the
  // call once delivered). RESOURCE_EXHAUSTED, and nothing queued, when it
  // takes the execution's output beyond its window.
  absl::Status Accept(varan::v1::ExecuteEvent event);

  // Ends the call with `status` after the events queued so far (`drop`:
  // instead of them). Only the first completion counts.
  void Complete(const absl::Status& status, bool drop = false);

  const std::string& id() const { return id_; }

 private:
  struct Item {
    std::optional<varan::v1::ExecuteEvent> event;
    absl::Status done;
  };
  void EnqueueLocked(Item item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Drain();

  const std::weak_ptr<TunnelCallHost> host_;
  DeliveryThreads* const threads_;
  const std::string id_;
  const uint64_t window_;
  ExecuteObserver* const observer_;

  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool completing_ ABSL_GUARDED_BY(mu_) = false;
  // Output bytes received and not granted back yet.
  uint64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  // Only the delivery thread touches this.
  bool done_ = false;
};

}  // namespace varan::core
