// CoreConnection: the periphery's calls to core's Registry service, behind an
// interface so the uplink's logic (register, resume, heartbeat, register
// again, back off) can be tested against an in-memory core
// (tests/fakes/periphery/fake_core_connection.h) with a fake clock.
//
// A CoreConnection talks to one core; with several core replicas the
// uplink makes one for the core it uses (a CoreConnector). The real
// implementation (NewGrpcCoreConnection) holds one gRPC channel to it with
// the keepalive, reconnect backoff and TLS the options give.
// Errors are absl::Status with core's gRPC code; a registration or tunnel
// that core refused for load carries its retry-after hint (see
// common/grpc_util.h, RetryAfter).
//
// Ownership: the Uplink owns its CoreConnection; a CoreTunnel belongs to the
// caller of OpenTunnel and must be deleted only once its done() is notified.
// Thread-safe: calls may come from any thread (the uplink uses one).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/address.h"
#include "common/clock.h"
#include "periphery/exec/executor.h"
#include "varan/v1/core.pb.h"

namespace varan::periphery {

struct UplinkOptions;

// One Registry.Connect stream (the tunnel of `varan-periphery --tunnel`): the
// hello is sent when it opens; core's execute and cancel requests run through
// the Executor given to OpenTunnel.
class CoreTunnel {
 public:
  virtual ~CoreTunnel() = default;

  // Waits up to `timeout` for core's answer to the hello. Errors: the
  // stream's status when it ended first, DEADLINE_EXCEEDED on timeout.
  virtual absl::StatusOr<varan::v1::TunnelOpened> WaitOpened(
      absl::Duration timeout) = 0;
  // Queues a heartbeat (dropped once the stream ended).
  virtual void SendHeartbeat(varan::v1::HeartbeatRequest heartbeat) = 0;
  // When core last answered a heartbeat (or opened the tunnel), on the
  // connection's clock, and the heartbeat interval core asks for (zero
  // until it said).
  virtual absl::Time last_answer() = 0;
  virtual absl::Duration interval() = 0;
  // Core's last heartbeat answer that sent CA pins or asked for a new
  // certificate (HeartbeatResponse.ca_pins, renew_certificate), once:
  // empty until another such answer arrives.
  virtual std::optional<varan::v1::HeartbeatResponse> TakeTrustAnswer() = 0;
  // Ends the stream; done() is notified once it has ended.
  virtual void Cancel() = 0;
  virtual const absl::Notification& done() const = 0;
  // How the stream ended (meaningful once done()).
  virtual absl::Status status() = 0;
};

class CoreConnection {
 public:
  virtual ~CoreConnection() = default;

  // Registry.Register with `join_token` as the bearer, giving up after
  // `timeout`. Errors carry core's retry-after hint when it sent one.
  virtual absl::StatusOr<varan::v1::RegisterResponse> Register(
      const varan::v1::RegisterRequest& request, const std::string& join_token,
      absl::Duration timeout) = 0;

  // Registry.Heartbeat with the periphery's `credential` as the bearer,
  // giving up after `timeout`. NOT_FOUND / UNAUTHENTICATED: core does not
  // know this periphery (any more).
  virtual absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      const varan::v1::HeartbeatRequest& request, const std::string& credential,
      absl::Duration timeout) = 0;

  // Registry.RenewCertificate with the periphery's `credential` as the
  // bearer (the connection presents the current certificate).
  virtual absl::StatusOr<varan::v1::RenewCertificateResponse> RenewCertificate(
      const varan::v1::RenewCertificateRequest& request,
      const std::string& credential, absl::Duration timeout) = 0;

  // Waits until the connection to core is up, trying to connect meanwhile,
  // for at most `timeout` (gRPC's connectivity waits are real time, whatever
  // clock the uplink uses) or until `stop` is notified; true when it is up.
  // A down core is waited for with this rather than a plain sleep, so the
  // uplink calls again as soon as core is back: a sleep would miss it by up
  // to a whole backoff, and over TLS nothing would move the handshake on
  // while no thread waits on the channel.
  virtual bool AwaitUp(absl::Duration timeout,
                       const absl::Notification& stop) = 0;
  // Whether the connection is up now (without trying to connect).
  virtual bool Up() = 0;

  // Opens a tunnel and sends `hello`; `bearer` is the join token (hello
  // registers) or the periphery's credential (hello resumes). `executor`
  // runs what core sends and must outlive the tunnel.
  virtual std::unique_ptr<CoreTunnel> OpenTunnel(
      Executor* executor, const std::string& bearer,
      varan::v1::TunnelHello hello) = 0;
};

// Makes the connection to one core (the uplink calls it for the core it
// talks to, again when it moves to another).
using CoreConnector =
    std::function<std::unique_ptr<CoreConnection>(const HostPort& core)>;

// The real connection: a gRPC channel to `core` with the options' keepalive,
// reconnect backoff and security. `clock` (outliving the connection) stamps
// the tunnel's answers.
std::unique_ptr<CoreConnection> NewGrpcCoreConnection(
    const HostPort& core, const UplinkOptions& options, const Clock* clock);

}  // namespace varan::periphery
