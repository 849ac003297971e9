// ReplicaService: the Replica service (proto/varan/v1/replica.proto) a
// core replica serves to the others: reports of executions a periphery
// made to another replica, answered by this replica's dispatcher for the
// jobs it runs (DispatcherOptions::owns_job). Only callers holding the
// replicas' shared secret are served.
//
// Thread-safe; the cluster and the dispatcher must outlive it.
#pragma once

#include "core/cluster/cluster.h"
#include "core/jobs/dispatcher.h"
#include "varan/v1/replica.grpc.pb.h"

namespace varan::core {

class ReplicaService final : public varan::v1::Replica::CallbackService {
 public:
  ReplicaService(const Cluster* cluster, Dispatcher* dispatcher)
      : cluster_(cluster), dispatcher_(dispatcher) {}

  grpc::ServerUnaryReactor* Report(
      grpc::CallbackServerContext* context,
      const varan::v1::ReplicaReportRequest* request,
      varan::v1::ReplicaReportResponse* response) override;

 private:
  const Cluster* const cluster_;
  Dispatcher* const dispatcher_;
};

}  // namespace varan::core
