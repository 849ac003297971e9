#include "core/server/replica_service.h"

#include <string>
#include <vector>

#include "common/grpc_util.h"
#include "common/secrets.h"

namespace varan::core {

bool ReplicaService::Authorized(grpc::CallbackServerContext* context,
                                grpc::ServerUnaryReactor* reactor) const {
  absl::string_view token = BearerToken(*context);
  if (!token.empty() && SecretEquals(token, cluster_->secret())) return true;
  reactor->Finish(
      grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                   "the Replica service is for core's own replicas"));
  return false;
}

grpc::ServerUnaryReactor* ReplicaService::Report(
    grpc::CallbackServerContext* context,
    const varan::v1::ReplicaReportRequest* request,
    varan::v1::ReplicaReportResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (!Authorized(context, reactor)) return reactor;
  std::vector<std::string> cancel;
  std::vector<std::string> resend;
  // Only this replica's part of the heartbeat.
  for (auto& ack : dispatcher_->OnPeripheryReport(
           request->periphery_id(), request->executions(), &cancel,
           /*complete=*/false, &resend)) {
    response->add_acknowledged(std::move(ack));
  }
  for (auto& c : cancel) response->add_cancel(std::move(c));
  for (auto& r : resend) response->add_resend_with_tails(std::move(r));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ReplicaService::Held(
    grpc::CallbackServerContext* context,
    const varan::v1::ReplicaHeldRequest* request,
    varan::v1::ReplicaHeldResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (!Authorized(context, reactor)) return reactor;
  peers_->Held(*request, response);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace varan::core
