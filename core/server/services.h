// core's gRPC services: Registry (peripheries), Fleet, Jobs and Admin
// (operators).
//
// Each is a thin edge: authenticate (with the role each RPC needs, see
// core.proto), translate, call FleetRegistry, Dispatcher or TokenRegistry,
// turn absl::Status into grpc::Status. Dispatches and cancels are logged as
// audit lines with the token name and the caller's address. Thread-safe; the
// objects they point to must outlive them, and they must outlive the
// grpc::Server.
#pragma once

#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/link/tunnel_link.h"
#include "core/server/admission.h"
#include "core/server/auth.h"
#include "core/server/tokens.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::core {

// Also the TunnelHandler of Registry.Connect streams: a tunnel's hello
// registers (join token) or resumes (credential), and its heartbeats are
// checked and recorded like Heartbeat calls.
class RegistryService final : public varan::v1::Registry::CallbackService,
                              public TunnelHandler {
 public:
  // `tunnels` serves Connect; `dispatcher` takes the executions reported in
  // heartbeats; `admission` (null: no limit) paces registrations and tunnel
  // hellos, which are shed with RESOURCE_EXHAUSTED and a retry-after hint
  // over its limit. All must outlive the service.
  RegistryService(const Authenticator* auth, FleetRegistry* fleet,
                  TunnelHub* tunnels, Dispatcher* dispatcher,
                  HandshakeAdmission* admission = nullptr)
      : auth_(auth),
        fleet_(fleet),
        tunnels_(tunnels),
        dispatcher_(dispatcher),
        admission_(admission) {}

  grpc::ServerUnaryReactor* Register(
      grpc::CallbackServerContext* context,
      const varan::v1::RegisterRequest* request,
      varan::v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(
      grpc::CallbackServerContext* context,
      const varan::v1::HeartbeatRequest* request,
      varan::v1::HeartbeatResponse* response) override;
  grpc::ServerBidiReactor<varan::v1::TunnelUp, varan::v1::TunnelDown>* Connect(
      grpc::CallbackServerContext* context) override;

  // TunnelHandler:
  absl::StatusOr<Opened> Open(const grpc::CallbackServerContext& context,
                              const varan::v1::TunnelHello& hello) override;
  absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      const grpc::CallbackServerContext& context, const std::string& id,
      const std::string& credential,
      const varan::v1::HeartbeatRequest& request) override;
  void Closed(const std::string& id, const absl::Status& status) override;

 private:
  // A heartbeat, by unary call or tunnel.
  absl::StatusOr<varan::v1::HeartbeatResponse> RecordHeartbeat(
      const std::string& id, absl::string_view credential,
      const varan::v1::HeartbeatRequest& request, const std::string& peer);

  const Authenticator* const auth_;
  FleetRegistry* const fleet_;
  // OK, or the shedding error (with its retry-after hint).
  absl::Status Admit(absl::string_view what);

  TunnelHub* const tunnels_;
  Dispatcher* const dispatcher_;
  HandshakeAdmission* const admission_;
};

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

class AdminService final : public varan::v1::Admin::CallbackService {
 public:
  // `admission` (may be null) gives the count of shed handshakes.
  AdminService(const Authenticator* auth, const FleetRegistry* fleet,
               TokenRegistry* tokens, absl::Time start_time,
               const HandshakeAdmission* admission = nullptr)
      : auth_(auth),
        fleet_(fleet),
        tokens_(tokens),
        start_time_(start_time),
        admission_(admission) {}

  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* context,
                                    const varan::v1::GetInfoRequest* request,
                                    varan::v1::CoreInfo* response) override;
  grpc::ServerUnaryReactor* CreateToken(
      grpc::CallbackServerContext* context,
      const varan::v1::CreateTokenRequest* request,
      varan::v1::CreateTokenResponse* response) override;
  grpc::ServerUnaryReactor* ListTokens(
      grpc::CallbackServerContext* context,
      const varan::v1::ListTokensRequest* request,
      varan::v1::ListTokensResponse* response) override;
  grpc::ServerUnaryReactor* RevokeToken(
      grpc::CallbackServerContext* context,
      const varan::v1::RevokeTokenRequest* request,
      varan::v1::Token* response) override;
  grpc::ServerUnaryReactor* CreateJoinToken(
      grpc::CallbackServerContext* context,
      const varan::v1::CreateJoinTokenRequest* request,
      varan::v1::CreateJoinTokenResponse* response) override;
  grpc::ServerUnaryReactor* ListJoinTokens(
      grpc::CallbackServerContext* context,
      const varan::v1::ListJoinTokensRequest* request,
      varan::v1::ListJoinTokensResponse* response) override;
  grpc::ServerUnaryReactor* RevokeJoinToken(
      grpc::CallbackServerContext* context,
      const varan::v1::RevokeJoinTokenRequest* request,
      varan::v1::JoinToken* response) override;

 private:
  const Authenticator* const auth_;
  const FleetRegistry* const fleet_;
  TokenRegistry* const tokens_;
  const absl::Time start_time_;
  const HandshakeAdmission* const admission_;
};

class JobsService final : public varan::v1::Jobs::CallbackService {
 public:
  JobsService(const Authenticator* auth, Dispatcher* dispatcher)
      : auth_(auth), dispatcher_(dispatcher) {}

  grpc::ServerUnaryReactor* Dispatch(
      grpc::CallbackServerContext* context,
      const varan::v1::DispatchRequest* request,
      varan::v1::DispatchResponse* response) override;
  grpc::ServerWriteReactor<varan::v1::JobEvent>* Exec(
      grpc::CallbackServerContext* context,
      const varan::v1::DispatchRequest* request) override;
  grpc::ServerWriteReactor<varan::v1::JobEvent>* WatchJob(
      grpc::CallbackServerContext* context,
      const varan::v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const varan::v1::GetJobRequest* request,
                                   varan::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(
      grpc::CallbackServerContext* context,
      const varan::v1::ListJobsRequest* request,
      varan::v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(
      grpc::CallbackServerContext* context,
      const varan::v1::CancelJobRequest* request,
      varan::v1::Job* response) override;

 private:
  const Authenticator* const auth_;
  Dispatcher* const dispatcher_;
};

}  // namespace varan::core
