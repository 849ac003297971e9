#include "core/server/registry_service.h"

#include "common/address.h"
#include "common/grpc_util.h"
#include "common/time_util.h"
#include "core/server/operator_call.h"

namespace varan::core {

grpc::ServerUnaryReactor* RegistryService::Register(
    grpc::CallbackServerContext* context,
    const varan::v1::RegisterRequest* request,
    varan::v1::RegisterResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto answer = [this, context, reactor](absl::Status status) {
    AddRetryAfterTrailer(status, context);
    reactor->Finish(ToGrpcStatus(status));
  };
  RunBlocking(
      work_,
      [this, context, request, response, answer] {
        auto admitted = enrollment_->Register(
            BearerToken(*context), NormalizePeerAddress(context->peer()),
            *request, varan::v1::CONNECTION_DIAL);
        if (!admitted.ok()) {
          answer(admitted.status());
          return;
        }
        response->set_periphery_id(admitted->periphery_id);
        response->set_credential(admitted->credential);
        response->set_certificate(admitted->certificate);
        SetDuration(admitted->heartbeat_interval,
                    response->mutable_heartbeat_interval());
        answer(absl::OkStatus());
      },
      answer);
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::Heartbeat(
    grpc::CallbackServerContext* context,
    const varan::v1::HeartbeatRequest* request,
    varan::v1::HeartbeatResponse* response) {
  auto answer = enrollment_->Heartbeat(
      BearerToken(*context), NormalizePeerAddress(context->peer()), *request,
      PeerCertificateChain(*context));
  if (!answer.ok()) return Done(context, ToGrpcStatus(answer.status()));
  *response = *std::move(answer);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* RegistryService::RenewCertificate(
    grpc::CallbackServerContext* context,
    const varan::v1::RenewCertificateRequest* request,
    varan::v1::RenewCertificateResponse* response) {
  auto cert = enrollment_->RenewCertificate(
      request->periphery_id(), BearerToken(*context),
      NormalizePeerAddress(context->peer()), PeerCertificateChain(*context),
      request->csr());
  if (!cert.ok()) return Done(context, ToGrpcStatus(cert.status()));
  response->set_certificate(*std::move(cert));
  return Done(context, grpc::Status::OK);
}

grpc::ServerBidiReactor<varan::v1::TunnelUp, varan::v1::TunnelDown>*
RegistryService::Connect(grpc::CallbackServerContext* context) {
  return tunnels_->Accept(context, this);
}

void RegistryService::Open(const grpc::CallbackServerContext& context,
                           const varan::v1::TunnelHello& hello, OpenDone done) {
  // A resume checks the credential in memory: answered at once.
  if (!hello.has_register_()) {
    std::move(done)(OpenNow(context, hello));
    return;
  }
  // One owner of `done` for whichever of the two runs.
  auto shared = std::make_shared<OpenDone>(std::move(done));
  RunBlocking(
      work_,
      [this, &context, &hello, shared] {
        std::move (*shared)(OpenNow(context, hello));
      },
      [shared](absl::Status refused) { std::move (*shared)(refused); });
}

absl::StatusOr<TunnelHandler::Opened> RegistryService::OpenNow(
    const grpc::CallbackServerContext& context,
    const varan::v1::TunnelHello& hello) {
  const std::string peer = NormalizePeerAddress(context.peer());
  absl::StatusOr<Enrollment::Admitted> admitted;
  if (hello.has_register_()) {
    admitted =
        enrollment_->Register(BearerToken(context), peer, hello.register_(),
                              varan::v1::CONNECTION_TUNNEL);
  } else if (hello.periphery_id().empty()) {
    return absl::InvalidArgumentError(
        "a tunnel hello needs a registration or a periphery id");
  } else {
    admitted = enrollment_->Resume(hello.periphery_id(), BearerToken(context),
                                   peer, PeerCertificateChain(context));
  }
  if (!admitted.ok()) return admitted.status();
  Opened out;
  out.message.set_periphery_id(admitted->periphery_id);
  // Only a registration hands out a credential; a resume uses its own.
  if (hello.has_register_()) {
    out.message.set_credential(admitted->credential);
    out.message.set_certificate(admitted->certificate);
  }
  SetDuration(admitted->heartbeat_interval,
              out.message.mutable_heartbeat_interval());
  out.credential = admitted->credential;
  out.name = admitted->name;
  return out;
}

absl::StatusOr<varan::v1::HeartbeatResponse> RegistryService::Heartbeat(
    const grpc::CallbackServerContext& context, const std::string& id,
    const std::string& credential, const varan::v1::HeartbeatRequest& request) {
  return enrollment_->TunnelHeartbeat(id, credential,
                                      NormalizePeerAddress(context.peer()),
                                      request, PeerCertificateChain(context));
}

void RegistryService::Closed(const std::string& id, const absl::Status&) {
  enrollment_->TunnelClosed(id);
}

}  // namespace varan::core
