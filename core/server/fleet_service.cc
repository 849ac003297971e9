#include "core/server/fleet_service.h"

#include <algorithm>

#include "common/log.h"
#include "core/server/operator_call.h"

namespace varan::core {

using varan::v1::ROLE_ADMIN;
using varan::v1::ROLE_OPERATOR;
using varan::v1::ROLE_VIEWER;

grpc::ServerUnaryReactor* FleetService::ListPeripheries(
    grpc::CallbackServerContext* context,
    const varan::v1::ListPeripheriesRequest* request,
    varan::v1::ListPeripheriesResponse* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ListPeripheriesResponse> {
        const uint32_t limit =
            request->limit() == 0 ? 500 : std::min(request->limit(), 1000u);
        return fleet_->ListPage(request->target(), request->include_removed(),
                                request->page_token(), limit);
      });
}

grpc::ServerUnaryReactor* FleetService::GetPeriphery(
    grpc::CallbackServerContext* context,
    const varan::v1::GetPeripheryRequest* request,
    varan::v1::Periphery* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) { return fleet_->Get(request->name_or_id()); });
}

grpc::ServerUnaryReactor* FleetService::RemovePeriphery(
    grpc::CallbackServerContext* context,
    const varan::v1::RemovePeripheryRequest* request,
    varan::v1::Periphery* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller& caller) -> absl::StatusOr<varan::v1::Periphery> {
        auto p = fleet_->Remove(request->name_or_id());
        if (p.ok()) {
          spdlog::info("audit: {} from {} removed periphery {}", caller.name,
                       caller.peer, p->name());
        }
        return p;
      });
}

grpc::ServerUnaryReactor* FleetService::UpdateLabels(
    grpc::CallbackServerContext* context,
    const varan::v1::UpdateLabelsRequest* request,
    varan::v1::Periphery* response) {
  return OperatorUnary(
      auth_, ROLE_OPERATOR, context, response,
      [&](const Caller&) { return fleet_->UpdateLabels(*request); });
}

}  // namespace varan::core
