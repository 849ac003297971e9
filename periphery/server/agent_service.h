// The periphery's gRPC Agent service (called by core).
//
// Every call must come from an address the guard admits (--allow; not too
// many failed authentications: PERMISSION_DENIED / RESOURCE_EXHAUSTED), and
// until registration succeeds (the CredentialHolder the uplink fills is
// empty) every call is refused with UNAVAILABLE. Then, with core's cluster
// CA pinned (the default), the call must come over mutual TLS presenting a
// certificate of that CA for "varan-core" (checked against the pins,
// pki::VerifyPinned); no token is needed, as core keeps only a hash of the
// credential. Otherwise it must carry the credential core issued at
// registration (`authorization: Bearer ...`): core is the only holder of it
// besides this periphery, so no operator token or other periphery's
// credential works. Failing either is UNAUTHENTICATED.
// Execute and Cancel go to the periphery's Executor (shared with the tunnel
// to core), which admits, runs and holds executions.
//
// Thread-safe. The service must outlive the grpc::Server it is registered
// with; Shutdown() cancels running executions and waits for them.
#pragma once

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/peer_guard.h"
#include "periphery/core_pins.h"
#include "periphery/exec/execution.h"
#include "periphery/exec/executor.h"
#include "periphery/host/facts.h"
#include "periphery/uplink/credential_holder.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::periphery {

class AgentService final : public varan::v1::Agent::CallbackService {
 public:
  // `credential`, `host`, `executor` and `guard` must outlive the service.
  // `guard` (the allowlist and failed-authentication limit, checked before
  // the credential) may be null: none.
  AgentService(const CredentialHolder* credential, const HostSnapshot* host,
               Executor* executor, PeerGuard* guard = nullptr);

  // Calls must present core's certificate from a CA `pins` holds (they
  // change as core rotates its CA), instead of the credential (set before
  // serving; null: the credential). `pins` must outlive the service.
  void set_core_pins(const CorePins* pins) { core_pins_ = pins; }

  grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext* context,
      const varan::v1::ExecuteRequest* request) override;
  grpc::ServerUnaryReactor* Cancel(
      grpc::CallbackServerContext* context,
      const varan::v1::CancelRequest* request,
      varan::v1::CancelResponse* response) override;
  grpc::ServerUnaryReactor* GetFacts(grpc::CallbackServerContext* context,
                                     const varan::v1::GetFactsRequest* request,
                                     varan::v1::HostFacts* response) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const varan::v1::GetStatsRequest* request,
                                     varan::v1::HostStats* response) override;

  // Commands running now (including those that survived their caller).
  uint32_t running();

  // Cancels every running command (through the Executor, so including
  // those that survived their caller or run for the tunnel) and waits (up to
  // `timeout`) until the Execute streams are done. Returns false on timeout.
  bool CancelAllAndWait(absl::Duration timeout);

 private:
  class ExecuteReactor;
  grpc::Status Authenticate(const grpc::CallbackServerContext& context) const;
  void OnExecutionDone(ExecuteReactor* reactor);
  bool NoneRunning() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return running_.empty();
  }

  const CredentialHolder* credential_;
  const CorePins* core_pins_ = nullptr;
  // The chain of core's last verified (the PEM text) and until when it is
  // taken without verifying it again.
  mutable absl::Mutex verified_mu_;
  mutable std::string verified_chain_ ABSL_GUARDED_BY(verified_mu_);
  mutable absl::Time verified_until_ ABSL_GUARDED_BY(verified_mu_);
  const HostSnapshot* const host_;
  Executor* const executor_;
  PeerGuard* const guard_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<ExecuteReactor*> running_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::periphery
