// core's Admin service (operators): core's info, operator and join tokens
// on TokenRegistry, and the cluster CA's rotation (ClusterCaControl).
//
// A thin edge: authenticate (admin role, viewer for GetInfo), call
// TokenRegistry or read FleetRegistry and HandshakeAdmission, turn
// absl::Status into grpc::Status. A step of the CA's rotation (a database
// round trip with replicas, new keys) runs on BlockingWork's threads.
// Thread-safe; the objects it points to
// must outlive it, and it must outlive the grpc::Server.
#pragma once

#include "absl/time/time.h"
#include "core/fleet/registry.h"
#include "core/server/admission.h"
#include "core/server/auth.h"
#include "core/server/blocking_work.h"
#include "core/server/cluster_ca_control.h"
#include "core/server/operator_certificates.h"
#include "core/server/tokens.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::core {

class AdminService final : public varan::v1::Admin::CallbackService {
 public:
  // `admission` (may be null) gives the count of shed handshakes;
  // `ca_rotation` (null without the built-in CA) the cluster CA's state;
  // `work` (null: gRPC's threads) runs the calls that may wait.
  AdminService(const Authenticator* auth, const FleetRegistry* fleet,
               TokenRegistry* tokens, absl::Time start_time,
               const HandshakeAdmission* admission = nullptr,
               ClusterCaControl* ca_rotation = nullptr,
               const OperatorCertificates* operator_certificates = nullptr,
               BlockingWork* work = nullptr)
      : auth_(auth),
        fleet_(fleet),
        tokens_(tokens),
        start_time_(start_time),
        admission_(admission),
        ca_rotation_(ca_rotation),
        operator_certificates_(operator_certificates),
        work_(work) {}

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
  grpc::ServerUnaryReactor* GetClusterCa(
      grpc::CallbackServerContext* context,
      const varan::v1::GetClusterCaRequest* request,
      varan::v1::ClusterCa* response) override;
  grpc::ServerUnaryReactor* RotateClusterCa(
      grpc::CallbackServerContext* context,
      const varan::v1::RotateClusterCaRequest* request,
      varan::v1::ClusterCa* response) override;
  grpc::ServerUnaryReactor* IssueClientCertificate(
      grpc::CallbackServerContext* context,
      const varan::v1::IssueClientCertificateRequest* request,
      varan::v1::IssueClientCertificateResponse* response) override;

 private:
  const Authenticator* const auth_;
  const FleetRegistry* const fleet_;
  TokenRegistry* const tokens_;
  const absl::Time start_time_;
  const HandshakeAdmission* const admission_;
  ClusterCaControl* const ca_rotation_;
  const OperatorCertificates* const operator_certificates_;
  BlockingWork* const work_;
};

}  // namespace varan::core
