#include "core/fleet/enrollment.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/log.h"
#include "common/time_util.h"

namespace varan::core {

Enrollment::Enrollment(TokenRegistry* tokens, FleetRegistry* fleet,
                       Dispatcher* dispatcher, PeerGuard* guard,
                       HandshakeAdmission* admission, ReplicaPeers* peers,
                       PeripheryCa* certificates)
    : tokens_(tokens),
      fleet_(fleet),
      dispatcher_(dispatcher),
      peers_(peers),
      guard_(guard),
      admission_(admission),
      certificates_(certificates) {}

absl::StatusOr<Enrollment::Admitted> Enrollment::Register(
    absl::string_view join_secret, const std::string& peer,
    const varan::v1::RegisterRequest& request,
    varan::v1::Connection connection) {
  if (absl::Status s = guard_->Admit(peer); !s.ok()) return s;
  auto join_token = tokens_->ReserveJoin(join_secret);
  // The store not counting the use in time is not the caller's failure.
  if (absl::IsUnavailable(join_token.status())) return join_token.status();
  if (!join_token.ok()) {
    guard_->RecordFailure(peer);
    spdlog::warn("refused a call from {}: {}", peer,
                 join_token.status().message());
    return absl::UnauthenticatedError(join_token.status().message());
  }
  const bool tunnel = connection == varan::v1::CONNECTION_TUNNEL;
  if (certificates_ != nullptr) {
    // Before the registration commits: a request that cannot be signed
    // leaves nothing behind.
    if (absl::Status s = certificates_->CheckRequest(request.csr()); !s.ok()) {
      tokens_->ReleaseJoin(*join_token);
      spdlog::warn("refused registration of \"{}\" from {}: {}", request.name(),
                   peer, s.message());
      return s;
    }
  }
  // A new periphery is new work for the store (checked before it takes a
  // handshake slot); one registered already keeps its heartbeats and tunnel
  // whatever the store's backlog.
  if (absl::Status behind = dispatcher_->store()->CheckBacklog();
      !behind.ok()) {
    tokens_->ReleaseJoin(*join_token);
    return behind;
  }
  if (absl::Status shed =
          Admit(tunnel ? "registration (tunnel)" : "registration");
      !shed.ok()) {
    tokens_->ReleaseJoin(*join_token);
    return shed;
  }
  auto reg = fleet_->Register(request, peer, connection);
  if (!reg.ok()) {
    tokens_->ReleaseJoin(*join_token);
    spdlog::warn("refused registration of \"{}\" from {}{}: {}", request.name(),
                 peer, tunnel ? " (tunnel)" : "", reg.status().message());
    return reg.status();
  }
  const std::string how =
      tunnel ? "tunnel" : absl::StrCat("dial ", request.advertise_address());
  spdlog::info("periphery {} registered from {} with join token {} (id {}, {})",
               request.name(), peer, tokens_->JoinTokenName(*join_token),
               reg->id, how);
  Admitted out{reg->id, reg->credential, request.name(),
               fleet_->heartbeat_interval(), ""};
  if (certificates_ != nullptr) {
    auto cert = certificates_->Issue(reg->id, request.csr());
    // Only an internal failure is left (the request was checked): the
    // periphery registers again, taking over its unconfirmed record.
    if (!cert.ok()) return cert.status();
    out.certificate = *std::move(cert);
  }
  return out;
}

absl::StatusOr<Enrollment::Admitted> Enrollment::Resume(
    const std::string& periphery_id, absl::string_view credential,
    const std::string& peer, const std::string& certificate) {
  if (absl::Status s = guard_->Admit(peer); !s.ok()) return s;
  if (absl::Status s = fleet_->CheckCredential(periphery_id, credential);
      !s.ok()) {
    guard_->RecordFailure(peer);
    return s;
  }
  if (absl::Status s = CheckCertificate(periphery_id, peer, certificate);
      !s.ok()) {
    return s;
  }
  if (absl::Status shed = Admit("tunnel"); !shed.ok()) return shed;
  // Opening counts as a heartbeat (the periphery is online from now on).
  auto first =
      Record(periphery_id, credential, peer, varan::v1::HeartbeatRequest());
  if (!first.ok()) return CountFailure(peer, first.status());
  Admitted out{periphery_id, std::string(credential),
               fleet_->NameOf(periphery_id), fleet_->heartbeat_interval(), ""};
  spdlog::info("periphery {} opened a tunnel from {}", out.name, peer);
  return out;
}

absl::StatusOr<varan::v1::HeartbeatResponse> Enrollment::Heartbeat(
    absl::string_view credential, const std::string& peer,
    const varan::v1::HeartbeatRequest& request,
    const std::string& certificate) {
  if (absl::Status s = guard_->Admit(peer); !s.ok()) return s;
  if (absl::Status s =
          CheckCertificate(request.periphery_id(), peer, certificate);
      !s.ok()) {
    return s;
  }
  // Checked before anything is recorded; kept once the heartbeat is.
  std::string address;
  if (!request.advertise_address().empty()) {
    auto addr = ParseDialAddress(request.advertise_address());
    if (!addr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("advertise address: ", addr.status().message()));
    }
    address = FormatHostPort(*addr);
  }
  auto answer = Record(request.periphery_id(), credential, peer, request);
  if (!answer.ok()) return CountFailure(peer, answer.status());
  if (!address.empty()) fleet_->Readdress(request.periphery_id(), address);
  AskRenewal(certificate, &*answer);
  return answer;
}

absl::StatusOr<varan::v1::HeartbeatResponse> Enrollment::TunnelHeartbeat(
    const std::string& periphery_id, absl::string_view credential,
    const std::string& peer, const varan::v1::HeartbeatRequest& request,
    const std::string& certificate) {
  auto answer = Record(periphery_id, credential, peer, request);
  if (answer.ok()) AskRenewal(certificate, &*answer);
  return answer;
}

void Enrollment::AskRenewal(const std::string& certificate,
                            varan::v1::HeartbeatResponse* answer) const {
  if (certificates_ != nullptr && certificates_->IssuedByOther(certificate)) {
    answer->set_renew_certificate(true);
  }
}

absl::StatusOr<std::string> Enrollment::RenewCertificate(
    const std::string& periphery_id, absl::string_view credential,
    const std::string& peer, const std::string& certificate,
    const std::string& csr_pem) {
  if (certificates_ == nullptr) {
    return absl::FailedPreconditionError(
        "this core issues no certificates: it serves the operator's "
        "(--tls-cert) or plaintext");
  }
  if (absl::Status s = guard_->Admit(peer); !s.ok()) return s;
  if (absl::Status s = fleet_->CheckCredential(periphery_id, credential);
      !s.ok()) {
    return CountFailure(peer, s);
  }
  if (absl::Status s =
          certificates_->CheckForRenewal(periphery_id, certificate);
      !s.ok()) {
    guard_->RecordFailure(peer);
    spdlog::warn("refused a certificate renewal from {}: {}", peer,
                 s.message());
    return s;
  }
  if (absl::Status s = certificates_->CheckRequest(csr_pem); !s.ok()) return s;
  auto cert = certificates_->Issue(periphery_id, csr_pem);
  if (!cert.ok()) return cert.status();
  spdlog::info("renewed the certificate of periphery {} (from {})",
               fleet_->NameOf(periphery_id), peer);
  return cert;
}

absl::Status Enrollment::CheckCertificate(const std::string& periphery_id,
                                          const std::string& peer,
                                          const std::string& certificate) {
  if (certificates_ == nullptr) return absl::OkStatus();
  absl::Status s = certificates_->CheckPresented(periphery_id, certificate);
  if (s.ok()) return s;
  guard_->RecordFailure(peer);
  spdlog::warn("refused a call from {}: {}", peer, s.message());
  return s;
}

void Enrollment::TunnelClosed(const std::string& periphery_id) {
  spdlog::info("the tunnel of periphery {} closed",
               fleet_->NameOf(periphery_id));
}

absl::Status Enrollment::Admit(absl::string_view what) {
  if (admission_ == nullptr) return absl::OkStatus();
  return admission_->Admit(what);
}

absl::StatusOr<varan::v1::HeartbeatResponse> Enrollment::Record(
    const std::string& periphery_id, absl::string_view credential,
    const std::string& peer, const varan::v1::HeartbeatRequest& request) {
  if (absl::Status s =
          fleet_->Heartbeat(periphery_id, credential, request.stats(), peer);
      !s.ok()) {
    return s;
  }
  varan::v1::HeartbeatResponse response;
  SetDuration(fleet_->heartbeat_interval(),
              response.mutable_heartbeat_interval());
  if (certificates_ != nullptr) {
    // What it trusts, and what it is to trust (a rotation of the CA).
    fleet_->Trusts(periphery_id,
                   std::vector<std::string>(request.ca_pins().begin(),
                                            request.ca_pins().end()));
    for (std::string& pin : certificates_->pins()) {
      response.add_ca_pins(std::move(pin));
    }
  }
  // A heartbeat that reports nothing matters too when a target waits for
  // this periphery: what it does not hold never ran there, or was lost.
  if (!request.executions().empty() || dispatcher_->HasRunsOn(periphery_id)) {
    std::vector<std::string> cancel;
    std::vector<std::string> resend;
    for (auto& ack :
         dispatcher_->OnPeripheryReport(periphery_id, request.executions(),
                                        &cancel, /*complete=*/true, &resend)) {
      response.add_acknowledged(std::move(ack));
    }
    for (auto& c : cancel) response.add_cancel(std::move(c));
    for (auto& r : resend) response.add_resend_with_tails(std::move(r));
  }
  if (peers_ != nullptr) {
    peers_->Heard(periphery_id, request.executions());
    // The other replicas answer for their own jobs, with the next heartbeat.
    if (!request.executions().empty()) {
      peers_->Forward(periphery_id, request.executions());
    }
    peers_->TakeAnswers(periphery_id, &response);
  }
  return response;
}

void Enrollment::CheckAwaited() {
  if (peers_ == nullptr) return;
  for (const varan::v1::PeripheryHeld& held :
       peers_->AskHeld(dispatcher_->AwaitedPeripheries())) {
    google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> reports;
    for (const std::string& id : held.execution_ids()) {
      reports.Add()->set_execution_id(id);
    }
    dispatcher_->OnPeripheryReport(held.periphery_id(), reports);
  }
}

absl::Status Enrollment::CountFailure(const std::string& peer,
                                      absl::Status status) {
  if (absl::IsUnauthenticated(status) || absl::IsNotFound(status)) {
    guard_->RecordFailure(peer);
  }
  return status;
}

}  // namespace varan::core
