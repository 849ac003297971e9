// JobForwarder: the calls about one job (Jobs.WatchJob, GetJob, CancelJob)
// made to a replica that does not run that job go to the replica that
// does (several replicas on one database, issue #19). A job runs on the
// replica that created it (its id says which: core/jobs/job_owner.h); a
// call through any other replica is passed on to it, with the replicas'
// secret and the caller's token name (kOnBehalfOfHeader, for the audit
// log), and its answer — a watch's events one by one, paced by the caller,
// with their own sequence numbers — comes back unchanged. A job whose
// creator is gone goes to the replica taking over dead replicas' jobs (the
// jobs lease's holder), which answers live once it took the job over and
// from the store until then.
//
// Thread-safe; what it points to must outlive it and its calls.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/jobs/dispatcher.h"
#include "core/jobs/job_owner.h"
#include "core/link/replica_peers.h"
#include "grpcpp/support/server_callback.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

// The token name of the operator a replica passes a call on for.
inline constexpr char kOnBehalfOfHeader[] = "varan-on-behalf-of";

class JobForwarder {
 public:
  JobForwarder(const JobOwners* owners, ReplicaPeers* peers,
               const Dispatcher* dispatcher)
      : owners_(owners), peers_(peers), dispatcher_(dispatcher) {}

  // The address of the replica a call about job `job_id` goes to, or empty
  // to answer it here.
  std::string ForwardTo(const std::string& job_id) const;

  // Passes the calls on to the replica at `address` for the operator
  // `caller` (a token name).
  grpc::ServerWriteReactor<varan::v1::JobEvent>* Watch(
      const std::string& address, const std::string& caller,
      const varan::v1::WatchJobRequest& request);
  void Get(const std::string& address, const std::string& caller,
           const varan::v1::GetJobRequest& request,
           std::function<void(absl::StatusOr<varan::v1::Job>)> done);
  void Cancel(const std::string& address, const std::string& caller,
              const varan::v1::CancelJobRequest& request,
              std::function<void(absl::StatusOr<varan::v1::Job>)> done);

 private:
  const JobOwners* const owners_;
  ReplicaPeers* const peers_;
  const Dispatcher* const dispatcher_;
};

}  // namespace varan::core
