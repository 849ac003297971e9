#include "core/server/admin_service.h"

#include <utility>

#include "absl/time/clock.h"
#include "common/log.h"
#include "common/time_util.h"
#include "core/server/operator_call.h"
#include "varan/version.h"

namespace varan::core {

using varan::v1::ROLE_ADMIN;
using varan::v1::ROLE_VIEWER;

grpc::ServerUnaryReactor* AdminService::GetInfo(
    grpc::CallbackServerContext* context, const varan::v1::GetInfoRequest*,
    varan::v1::CoreInfo* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::CoreInfo> {
        varan::v1::CoreInfo info;
        info.set_version(kVersion);
        SetTimestamp(start_time_, info.mutable_start_time());
        auto all = fleet_->List(varan::v1::Target());
        if (!all.ok()) return all.status();
        info.set_peripheries(static_cast<uint32_t>(all->size()));
        uint32_t online = 0;
        for (const auto& p : *all) {
          if (p.state() == varan::v1::PERIPHERY_STATE_ONLINE) ++online;
        }
        info.set_peripheries_online(online);
        SetDuration(fleet_->heartbeat_interval(),
                    info.mutable_heartbeat_interval());
        info.set_heartbeat_ttl_intervals(static_cast<uint32_t>(
            fleet_->ttl() / fleet_->heartbeat_interval()));
        if (admission_ != nullptr) {
          info.set_handshakes_shed(admission_->shed());
          info.set_handshake_rate(admission_->options().rate);
          info.set_handshake_burst(admission_->options().burst);
        }
        return info;
      });
}

grpc::ServerUnaryReactor* AdminService::CreateToken(
    grpc::CallbackServerContext* context,
    const varan::v1::CreateTokenRequest* request,
    varan::v1::CreateTokenResponse* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->CreateToken(*request, caller.name,
                                              std::move(done));
                       });
}

grpc::ServerUnaryReactor* AdminService::ListTokens(
    grpc::CallbackServerContext* context,
    const varan::v1::ListTokensRequest* request,
    varan::v1::ListTokensResponse* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ListTokensResponse> {
        varan::v1::ListTokensResponse out;
        for (auto& t : tokens_->ListTokens(request->include_revoked())) {
          *out.add_tokens() = std::move(t);
        }
        return out;
      });
}

grpc::ServerUnaryReactor* AdminService::RevokeToken(
    grpc::CallbackServerContext* context,
    const varan::v1::RevokeTokenRequest* request, varan::v1::Token* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->RevokeToken(request->name_or_id(),
                                              caller.name, std::move(done));
                       });
}

grpc::ServerUnaryReactor* AdminService::CreateJoinToken(
    grpc::CallbackServerContext* context,
    const varan::v1::CreateJoinTokenRequest* request,
    varan::v1::CreateJoinTokenResponse* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->CreateJoinToken(*request, caller.name,
                                                  std::move(done));
                       });
}

grpc::ServerUnaryReactor* AdminService::ListJoinTokens(
    grpc::CallbackServerContext* context,
    const varan::v1::ListJoinTokensRequest* request,
    varan::v1::ListJoinTokensResponse* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ListJoinTokensResponse> {
        varan::v1::ListJoinTokensResponse out;
        for (auto& t : tokens_->ListJoinTokens(request->include_revoked())) {
          *out.add_join_tokens() = std::move(t);
        }
        return out;
      });
}

grpc::ServerUnaryReactor* AdminService::RevokeJoinToken(
    grpc::CallbackServerContext* context,
    const varan::v1::RevokeJoinTokenRequest* request,
    varan::v1::JoinToken* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->RevokeJoinToken(request->name_or_id(),
                                                  caller.name, std::move(done));
                       });
}

namespace {

absl::Status NoBuiltinCa() {
  return absl::FailedPreconditionError(
      "this core has no built-in cluster CA: it serves an operator's "
      "certificates (--tls-cert) or plaintext");
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::GetClusterCa(
    grpc::CallbackServerContext* context, const varan::v1::GetClusterCaRequest*,
    varan::v1::ClusterCa* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ClusterCa> {
        if (ca_rotation_ == nullptr) return NoBuiltinCa();
        return ca_rotation_->State();
      });
}

grpc::ServerUnaryReactor* AdminService::RotateClusterCa(
    grpc::CallbackServerContext* context,
    const varan::v1::RotateClusterCaRequest* request,
    varan::v1::ClusterCa* response) {
  return OperatorBlocking(
      auth_, work_, ROLE_ADMIN, context, response,
      [this,
       request](const Caller& caller) -> absl::StatusOr<varan::v1::ClusterCa> {
        if (ca_rotation_ == nullptr) return NoBuiltinCa();
        spdlog::info("cluster CA rotation step {} asked by {}",
                     varan::v1::CaRotationStep_Name(request->step()),
                     caller.name);
        return ca_rotation_->Step(request->step(), request->force(),
                                  absl::Now());
      });
}

grpc::ServerUnaryReactor* AdminService::IssueClientCertificate(
    grpc::CallbackServerContext* context,
    const varan::v1::IssueClientCertificateRequest* request,
    varan::v1::IssueClientCertificateResponse* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller& caller)
          -> absl::StatusOr<varan::v1::IssueClientCertificateResponse> {
        if (operator_certificates_ == nullptr) return NoBuiltinCa();
        if (caller.token.id.empty()) {
          return absl::FailedPreconditionError(
              "a client certificate is issued for an operator token: call "
              "with one");
        }
        auto issued = varan::core::IssueClientCertificate(
            *operator_certificates_, caller.token, *request, absl::Now());
        if (issued.ok()) {
          spdlog::info(
              "issued a client certificate for operator token \"{}\" ({} "
              "role) to {}, valid until {}",
              caller.token.name, RoleName(caller.role), caller.peer,
              absl::FormatTime(FromTimestamp(issued->not_after())));
        }
        return issued;
      });
}

}  // namespace varan::core
