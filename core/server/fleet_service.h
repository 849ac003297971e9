// core's Fleet service (operators): list, get and remove peripheries, and
// set their labels, on FleetRegistry.
//
// A thin edge: authenticate with the role each RPC needs (see core.proto),
// call FleetRegistry, turn absl::Status into grpc::Status; removals are
// logged as audit lines with the token name and the caller's address.
// Thread-safe; the objects it points to must outlive it, and it must
// outlive the grpc::Server.
#pragma once

#include "core/fleet/registry.h"
#include "core/server/auth.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::core {

class FleetService final : public varan::v1::Fleet::CallbackService {
 public:
  FleetService(const Authenticator* auth, FleetRegistry* fleet)
      : auth_(auth), fleet_(fleet) {}

  grpc::ServerUnaryReactor* ListPeripheries(
      grpc::CallbackServerContext* context,
      const varan::v1::ListPeripheriesRequest* request,
      varan::v1::ListPeripheriesResponse* response) override;
  grpc::ServerUnaryReactor* GetPeriphery(
      grpc::CallbackServerContext* context,
      const varan::v1::GetPeripheryRequest* request,
      varan::v1::Periphery* response) override;
  grpc::ServerUnaryReactor* RemovePeriphery(
      grpc::CallbackServerContext* context,
      const varan::v1::RemovePeripheryRequest* request,
      varan::v1::Periphery* response) override;
  grpc::ServerUnaryReactor* UpdateLabels(
      grpc::CallbackServerContext* context,
      const varan::v1::UpdateLabelsRequest* request,
      varan::v1::Periphery* response) override;

 private:
  const Authenticator* const auth_;
  FleetRegistry* const fleet_;
};

}  // namespace varan::core
