#include "core/server/replica_service.h"

#include <string>
#include <vector>

#include "common/grpc_util.h"
#include "common/secrets.h"

namespace varan::core {

grpc::ServerUnaryReactor* ReplicaService::Report(
    grpc::CallbackServerContext* context,
    const varan::v1::ReplicaReportRequest* request,
    varan::v1::ReplicaReportResponse* response) {
  auto* reactor = context->DefaultReactor();
  absl::string_view token = BearerToken(*context);
  if (token.empty() || !SecretEquals(token, cluster_->secret())) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     "the Replica service is for core's own replicas"));
    return reactor;
  }
  std::vector<std::string> cancel;
  for (auto& ack : dispatcher_->OnPeripheryReport(
           request->periphery_id(), request->executions(), &cancel)) {
    response->add_acknowledged(std::move(ack));
  }
  for (auto& c : cancel) response->add_cancel(std::move(c));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace varan::core
