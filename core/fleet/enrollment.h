// Enrollment: how a periphery joins the fleet and stays in it, whichever
// transport carries it. Registry.Register and Registry.Heartbeat (unary
// calls) and the hello and heartbeats of a Registry.Connect tunnel all come
// here; the handlers only take the secret and the caller's address out of
// the call, and turn the result into their answer (and the retry-after hint
// of a shed handshake into trailing metadata).
//
// Every entry point first asks the PeerGuard about the caller's address
// (PERMISSION_DENIED for an address --allow refuses, RESOURCE_EXHAUSTED
// while it is over its failure budget) and counts a failed authentication
// against it — except TunnelHeartbeat, whose tunnel authenticated once when
// it opened. Handshakes (Register, Resume) are paced by HandshakeAdmission:
// over its limit they are shed with RESOURCE_EXHAUSTED and a retry-after
// hint (common/grpc_util.h, RetryAfter). Secrets are never logged;
// registrations, refusals and opened tunnels are, with the caller's address.
//
// Thread-safe; never blocks beyond short locks. The objects it points to
// must outlive it.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/peer_guard.h"
#include "core/fleet/periphery_ca.h"
#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/link/replica_peers.h"
#include "core/server/admission.h"
#include "core/server/tokens.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

class Enrollment {
 public:
  // `admission` may be null (no limit on handshakes). `certificates`: core's
  // built-in CA (null when core has none, with --tls-cert or plaintext):
  // registrations must then carry a certificate request, and heartbeats,
  // tunnels and renewals the periphery's certificate (periphery_ca.h).
  Enrollment(TokenRegistry* tokens, FleetRegistry* fleet,
             Dispatcher* dispatcher, PeerGuard* guard,
             HandshakeAdmission* admission, ReplicaPeers* peers = nullptr,
             PeripheryCa* certificates = nullptr);

  // A periphery admitted by Register or Resume.
  struct Admitted {
    std::string periphery_id;
    // The credential its heartbeats must carry.
    std::string credential;
    // Its name, for messages.
    std::string name;
    // How often it is to heartbeat.
    absl::Duration heartbeat_interval;
    // A registration with core's built-in CA: its certificate chain (PEM).
    std::string certificate;
  };

  // Registers the periphery `request` describes, from `peer` (a bare
  // address as NormalizePeerAddress gives it), with the join token secret
  // `join_secret`; `connection` says whether core dials it or it holds a
  // tunnel. One use of the join token is taken, and given back when the
  // registration is shed or refused. Errors: those of the guard;
  // UNAUTHENTICATED for a join token that is unknown, expired, revoked or
  // used up (counted as a failure); RESOURCE_EXHAUSTED with a retry-after
  // hint when shed; those of FleetRegistry::Register; INVALID_ARGUMENT for a
  // missing or bad certificate request (with the built-in CA).
  absl::StatusOr<Admitted> Register(absl::string_view join_secret,
                                    const std::string& peer,
                                    const varan::v1::RegisterRequest& request,
                                    varan::v1::Connection connection);

  // A registered periphery opens a tunnel with the credential core issued
  // it: the credential is checked before the handshake may use up
  // admission (callers without one cannot starve the fleet), then the open
  // counts as a heartbeat. Errors: those of the guard; NOT_FOUND for an
  // unknown or removed periphery (it registers again), UNAUTHENTICATED for
  // a wrong credential (both counted as failures); RESOURCE_EXHAUSTED with a
  // retry-after hint when shed. With the built-in CA, `certificate` (the
  // chain the caller presented in its TLS handshake, empty for none) must
  // be the one core issued to this periphery: UNAUTHENTICATED otherwise
  // (counted as a failure).
  absl::StatusOr<Admitted> Resume(const std::string& periphery_id,
                                  absl::string_view credential,
                                  const std::string& peer,
                                  const std::string& certificate = "");

  // A Registry.Heartbeat call: records the periphery's stats and hands the
  // executions it reports to the dispatcher; the answer carries the
  // acknowledged and the to-be-canceled execution ids. Errors: those of the
  // guard; NOT_FOUND / UNAUTHENTICATED as for Resume (counted as failures),
  // `certificate` too.
  absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      absl::string_view credential, const std::string& peer,
      const varan::v1::HeartbeatRequest& request,
      const std::string& certificate = "");

  // Registry.RenewCertificate: a new certificate for periphery
  // `periphery_id`, authenticated as Resume except that the presented
  // certificate may have expired. FAILED_PRECONDITION without the built-in
  // CA; the guard's errors; NOT_FOUND / UNAUTHENTICATED (counted as
  // failures); INVALID_ARGUMENT for a bad request.
  absl::StatusOr<std::string> RenewCertificate(const std::string& periphery_id,
                                               absl::string_view credential,
                                               const std::string& peer,
                                               const std::string& certificate,
                                               const std::string& csr_pem);

  // A heartbeat on the tunnel periphery `periphery_id` opened with
  // `credential` (through Register or Resume), presenting `certificate`:
  // as Heartbeat, without the guard and without counting failures (an
  // error ends the tunnel).
  absl::StatusOr<varan::v1::HeartbeatResponse> TunnelHeartbeat(
      const std::string& periphery_id, absl::string_view credential,
      const std::string& peer, const varan::v1::HeartbeatRequest& request,
      const std::string& certificate = "");

  // The tunnel of `periphery_id` closed (logged).
  void TunnelClosed(const std::string& periphery_id);

  // Several replicas: targets of this replica waiting for the report of a
  // periphery whose heartbeats reach another replica learn from that
  // replica what the periphery reported last (ReplicaPeers::AskHeld) — an
  // execution it no longer holds is never reported, only missed. Call it
  // periodically (every fleet refresh); blocks for the calls.
  void CheckAwaited();

 private:
  // OK, or the shedding error (with its retry-after hint).
  absl::Status Admit(absl::string_view what);
  // Records the heartbeat and the reports it carries.
  absl::StatusOr<varan::v1::HeartbeatResponse> Record(
      const std::string& periphery_id, absl::string_view credential,
      const std::string& peer, const varan::v1::HeartbeatRequest& request);
  // With the built-in CA: `certificate` is the one issued to the periphery
  // (a refusal is counted and logged).
  absl::Status CheckCertificate(const std::string& periphery_id,
                                const std::string& peer,
                                const std::string& certificate);
  // With the built-in CA: asks the periphery for a new certificate when
  // `certificate` (what it presented) is of a CA being retired.
  void AskRenewal(const std::string& certificate,
                  varan::v1::HeartbeatResponse* answer) const;
  // Counts a failed authentication when `status` says the credential did
  // not fit (NOT_FOUND, UNAUTHENTICATED); returns `status`.
  absl::Status CountFailure(const std::string& peer, absl::Status status);

  TokenRegistry* const tokens_;
  FleetRegistry* const fleet_;
  Dispatcher* const dispatcher_;
  // Null for a core alone.
  ReplicaPeers* const peers_;
  PeerGuard* const guard_;
  HandshakeAdmission* const admission_;
  // Null without the built-in CA.
  PeripheryCa* const certificates_;
};

}  // namespace varan::core
