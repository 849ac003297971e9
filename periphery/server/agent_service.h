// The periphery's gRPC Agent service (called by core).
//
// Every call must carry the credential core issued at registration
// (`authorization: Bearer ...`), held in a CredentialHolder the uplink fills;
// until registration succeeds every call is refused with UNAUTHENTICATED.
// Execute runs the command through periphery::Execution, at most
// `max_concurrent` at once (RESOURCE_EXHAUSTED past that); Cancel stops one
// by its execution id.
//
// Thread-safe. The service must outlive the grpc::Server it is registered
// with; Shutdown() cancels running executions and waits for them.
#pragma once

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "periphery/exec/execution.h"
#include "periphery/host/facts.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::periphery {

// The credential shared between the uplink (which obtains it) and the Agent
// service (which checks it). Thread-safe.
class CredentialHolder {
 public:
  void Set(std::string credential) {
    absl::MutexLock lock(&mu_);
    credential_ = std::move(credential);
  }
  std::string Get() const {
    absl::MutexLock lock(&mu_);
    return credential_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string credential_ ABSL_GUARDED_BY(mu_);
};

struct AgentOptions {
  uint32_t max_concurrent = 64;
  ExecutionOptions execution;
};

class AgentService final : public varan::v1::Agent::CallbackService {
 public:
  // `credential` and `host` must outlive the service.
  AgentService(const CredentialHolder* credential, const HostSnapshot* host,
               AgentOptions options);

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

  // Cancels every running command, including those that survived their
  // caller, and waits (up to `timeout`) until they exited and their reactors
  // are done. Returns false on timeout.
  bool CancelAllAndWait(absl::Duration timeout);

 private:
  class ExecuteReactor;
  grpc::Status Authenticate(const grpc::CallbackServerContext& context) const;
  void OnExecutionDone(ExecuteReactor* reactor);
  // Drops finished executions from executions_; returns how many remain.
  uint32_t PruneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool NoneRunning() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return running_.empty();
  }

  const CredentialHolder* credential_;
  const AgentOptions options_;
  const HostSnapshot* const host_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<ExecuteReactor*> running_ ABSL_GUARDED_BY(mu_);
  // Every execution started, including those that survive their caller,
  // by execution id (or a generated key when the caller gave none); pruned
  // as they finish. Counted against max_concurrent.
  absl::flat_hash_map<std::string, std::weak_ptr<Execution>> executions_
      ABSL_GUARDED_BY(mu_);
  uint64_t anonymous_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace varan::periphery
