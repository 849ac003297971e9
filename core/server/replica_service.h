// ReplicaService: the Replica service (proto/varan/v1/replica.proto) a
// core replica serves to the others: reports of executions a periphery
// made to another replica, answered by this replica's dispatcher for the
// jobs it runs (DispatcherOptions::owns_job), and what the peripheries
// whose heartbeats reach this replica last reported (ReplicaPeers::Held).
// Only callers holding the replicas' shared secret are served.
//
// Thread-safe; the cluster and the dispatcher must outlive it.
#pragma once

#include "core/cluster/cluster.h"
#include "core/jobs/dispatcher.h"
#include "core/link/replica_peers.h"
#include "varan/v1/replica.grpc.pb.h"

namespace varan::core {

class ReplicaService final : public varan::v1::Replica::CallbackService {
 public:
  ReplicaService(const Cluster* cluster, Dispatcher* dispatcher,
                 ReplicaPeers* peers)
      : cluster_(cluster), dispatcher_(dispatcher), peers_(peers) {}

  grpc::ServerUnaryReactor* Report(
      grpc::CallbackServerContext* context,
      const varan::v1::ReplicaReportRequest* request,
      varan::v1::ReplicaReportResponse* response) override;

  grpc::ServerUnaryReactor* Held(
      grpc::CallbackServerContext* context,
      const varan::v1::ReplicaHeldRequest* request,
      varan::v1::ReplicaHeldResponse* response) override;

 private:
  const Cluster* const cluster_;
  // Whether the call carries the replicas' secret; else finishes it.
  bool Authorized(grpc::CallbackServerContext* context,
                  grpc::ServerUnaryReactor* reactor) const;

  Dispatcher* const dispatcher_;
  ReplicaPeers* const peers_;
};

}  // namespace varan::core
