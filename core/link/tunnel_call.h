// TunnelCall: one execution carried over a periphery's tunnel, and its
// output flow control (ExecuteRequest.output_window_bytes / OutputCredit).
//
// The tunnel's single reader thread hands each of the execution's events to
// Accept, which only queues it; a delivery thread (DeliveryThreads: one of
// its own while events wait, taken from those idle) passes them to the
// observer in order, then grants the delivered output bytes back to the
// periphery as credit, a quarter window at a time (CreditBatch). So an observer
// that blocks (a job whose live window is full and whose Exec caller lags)
// stalls its own execution, whose periphery runs out of credit and stops
// reading the command's output, and never the tunnel, its heartbeats or the
// other executions on it.
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

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/link/periphery_link.h"
#include "varan/v1/periphery.pb.h"

namespace varan::core {

// Output window core gives each execution on a tunnel.
inline constexpr uint64_t kTunnelOutputWindowBytes = 4 * 1024 * 1024;

// Output bytes delivered before a TunnelCall grants them back as credit,
// for an execution with `window`: a quarter of it (at least one byte).
constexpr uint64_t CreditBatch(uint64_t window) {
  return window / 4 > 0 ? window / 4 : 1;
}

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

// The calls' delivery threads. Each drain runs on a thread of its own for
// as long as it lasts (so one that blocks holds up no other); a thread
// whose drain ended takes the next one handed over, and ends after
// kIdleFor without one. So a fan-out to thousands of executions reuses a
// few threads instead of starting one per execution (whose start and end
// were about a tenth of core's CPU in a 10,000-target fan-out).
class DeliveryThreads {
 public:
  static constexpr absl::Duration kIdleFor = absl::Seconds(1);

  DeliveryThreads() = default;
  DeliveryThreads(const DeliveryThreads&) = delete;
  DeliveryThreads& operator=(const DeliveryThreads&) = delete;

  // Runs `drain` on an idle delivery thread, or on a new one.
  void Run(absl::AnyInvocable<void() &&> drain);
  // Returns once every drain handed over has run and every thread has
  // ended (idle ones end at once meanwhile).
  void WaitIdle();
  // Threads alive now.
  int threads() const;

 private:
  void Work(absl::AnyInvocable<void() &&> first);

  mutable absl::Mutex mu_;
  // Handed over to idle threads, not taken yet.
  std::deque<absl::AnyInvocable<void() &&>> ready_ ABSL_GUARDED_BY(mu_);
  int idle_ ABSL_GUARDED_BY(mu_) = 0;
  int threads_ ABSL_GUARDED_BY(mu_) = 0;
  // WaitIdle callers: idle threads end at once.
  int closing_ ABSL_GUARDED_BY(mu_) = 0;
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
  // Output bytes received and not delivered yet.
  uint64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  // Output bytes delivered and not granted back yet (CreditBatch).
  uint64_t ungranted_ ABSL_GUARDED_BY(mu_) = 0;
  // Only the delivery thread touches this.
  bool done_ = false;
};

}  // namespace varan::core
