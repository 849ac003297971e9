// core's Registry service (called by peripheries): Register, Heartbeat,
// RenewCertificate and the Connect tunnel.
//
// A translation layer over Enrollment (core/fleet/enrollment.h), which
// holds the use cases: each handler takes the bearer secret and the
// caller's address out of the call, calls Enrollment, adds the retry-after
// hint of a shed handshake to the trailing metadata and turns absl::Status
// into grpc::Status. It is also the TunnelHandler of Registry.Connect
// streams (core/link/tunnel_link.h): a tunnel's hello registers (join
// token) or resumes (credential), and its heartbeats are recorded like
// Heartbeat calls.
//
// Registrations (Register, and a tunnel hello with one) may wait on the
// store for a join token's use: they run on BlockingWork's threads, never
// on gRPC's, which every call shares.
//
// Thread-safe; the Enrollment and the TunnelHub must outlive it, and it must
// outlive the grpc::Server.
#pragma once

#include <string>

#include "core/fleet/enrollment.h"
#include "core/link/tunnel_link.h"
#include "core/server/blocking_work.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::core {

class RegistryService final : public varan::v1::Registry::CallbackService,
                              public TunnelHandler {
 public:
  // `tunnels` serves Connect; `work` (null: gRPC's threads) runs
  // registrations, which may wait on the store (a join token's use).
  RegistryService(Enrollment* enrollment, TunnelHub* tunnels,
                  BlockingWork* work = nullptr)
      : enrollment_(enrollment), tunnels_(tunnels), work_(work) {}

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
  grpc::ServerUnaryReactor* RenewCertificate(
      grpc::CallbackServerContext* context,
      const varan::v1::RenewCertificateRequest* request,
      varan::v1::RenewCertificateResponse* response) override;

  // TunnelHandler:
  void Open(const grpc::CallbackServerContext& context,
            const varan::v1::TunnelHello& hello, OpenDone done) override;
  absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      const grpc::CallbackServerContext& context, const std::string& id,
      const std::string& credential,
      const varan::v1::HeartbeatRequest& request) override;
  void Closed(const std::string& id, const absl::Status& status) override;

 private:
  // The hello's answer (on work_'s thread).
  absl::StatusOr<Opened> OpenNow(const grpc::CallbackServerContext& context,
                                 const varan::v1::TunnelHello& hello);

  Enrollment* const enrollment_;
  TunnelHub* const tunnels_;
  BlockingWork* const work_;
};

}  // namespace varan::core
