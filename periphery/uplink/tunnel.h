// TunnelSession: one Registry.Connect stream from the periphery to core (the
// tunnel of `varan-periphery --tunnel`).
//
// It sends the hello, then carries heartbeats (SendHeartbeat) up and core's
// execute and cancel requests down, running them through the periphery's
// Executor. Each execution's events go up the one stream interleaved fairly:
// one write in flight, control messages (hello, heartbeats, refusals) first,
// then one event from each execution with events ready in turn. An
// execution's events come from its bounded queue, so a slow stream pauses
// the reading of the commands' output (back-pressure) and one busy command
// never starves another.
//
// When the stream ends, executions still attached go on running (core starts
// them with hold_result) and the Executor reports their results in later
// heartbeats.
//
// It is the gRPC implementation of CoreTunnel (core_connection.h), made by
// the gRPC CoreConnection's OpenTunnel.
//
// Ownership and threads: the uplink thread owns the session; reactions run on
// gRPC threads and never block; delete the session only after done() is
// notified. Writes also start from the uplink and supervisor threads,
// so the session holds the call (AddHold) until its read side has closed and
// the last write is done: a write never starts on a call gRPC has finished.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "grpcpp/grpcpp.h"
#include "periphery/exec/executor.h"
#include "periphery/uplink/core_connection.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::periphery {

class TunnelSession final
    : public grpc::ClientBidiReactor<varan::v1::TunnelUp,
                                     varan::v1::TunnelDown>,
      public CoreTunnel {
 public:
  // `stub`, `executor` and `clock` must outlive the session. `bearer` is the
  // join token (hello registers) or the periphery's credential (hello
  // resumes).
  TunnelSession(varan::v1::Registry::Stub* stub, Executor* executor,
                const Clock* clock, const std::string& bearer,
                varan::v1::TunnelHello hello);

  // Starts the call and sends the hello.
  void Begin();

  // CoreTunnel.
  absl::StatusOr<varan::v1::TunnelOpened> WaitOpened(
      absl::Duration timeout) override;
  void SendHeartbeat(varan::v1::HeartbeatRequest heartbeat) override;
  absl::Time last_answer() override;
  absl::Duration interval() override;
  std::optional<varan::v1::HeartbeatResponse> TakeTrustAnswer() override;
  void Cancel() override { context_.TryCancel(); }
  const absl::Notification& done() const override { return done_; }
  absl::Status status() override;

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  struct Attached {
    std::shared_ptr<Execution> execution;
    // In ready_ (has, or may have, events to send).
    bool queued = false;
    bool exited_written = false;
  };

  // Starts the next write if none is in flight. Never blocks.
  void TryWrite();
  // Releases the hold Begin took once the read side closed and no write is
  // in flight (then OnDone can come).
  void ReleaseHoldIfIdle();
  // An execution's queue has events again (runs on its supervisor thread).
  void OnReady(const std::string& id);
  // TunnelDown.detach: stops sending the events of execution `id`.
  void Detach(const std::string& id);
  void HandleExecute(const varan::v1::ExecuteRequest& request);

  Executor* const executor_;
  const Clock* const clock_;
  grpc::ClientContext context_;
  varan::v1::TunnelDown incoming_;  // owned by the read in flight
  varan::v1::TunnelUp current_;     // owned by the write in flight

  absl::Mutex mu_;
  // A write is in flight, or being started (set under mu_ before
  // StartWrite, so the hold is not released under it).
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  // The read side closed: the call is ending, no write may start.
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  // The event in flight was an `exited` of this execution.
  std::string writing_exited_ ABSL_GUARDED_BY(mu_);
  std::deque<varan::v1::TunnelUp> control_ ABSL_GUARDED_BY(mu_);
  std::optional<varan::v1::HeartbeatResponse> trust_answer_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Attached> attached_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> ready_ ABSL_GUARDED_BY(mu_);
  bool opened_ ABSL_GUARDED_BY(mu_) = false;
  varan::v1::TunnelOpened opened_message_ ABSL_GUARDED_BY(mu_);
  absl::Time last_answer_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration interval_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

}  // namespace varan::periphery
