#include "periphery/uplink/core_connection.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "common/address.h"
#include "common/grpc_util.h"
#include "common/keepalive.h"
#include "common/proxy.h"
#include "grpcpp/grpcpp.h"
#include "periphery/uplink/tunnel.h"
#include "periphery/uplink/uplink.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::periphery {
namespace {

class GrpcCoreConnection final : public CoreConnection {
 public:
  GrpcCoreConnection(const HostPort& core, const UplinkOptions& options,
                     const Clock* clock)
      : clock_(clock) {
    grpc::ChannelArguments args;
    SetClientChannelArgs(
        &args, Keepalive{options.keepalive_time, options.keepalive_timeout},
        options.min_backoff, options.max_backoff);
    options.security.Apply(&args);
    // A connection of its own (gRPC shares connections between channels
    // whose arguments are equal): it presents the certificate of the moment
    // it is made, so a renewed one is used by the next connection.
    static std::atomic<int> connections{0};
    args.SetInt("varan.core_connection", ++connections);
    ApplyProxy(options.proxy, &args);
    channel_ =
        grpc::CreateCustomChannel(FormatHostPort(core),
                                  options.security.credentials != nullptr
                                      ? options.security.credentials
                                      : grpc::InsecureChannelCredentials(),
                                  args);
    stub_ = varan::v1::Registry::NewStub(channel_);
  }

  absl::StatusOr<varan::v1::RegisterResponse> Register(
      const varan::v1::RegisterRequest& request, const std::string& join_token,
      absl::Duration timeout) override {
    grpc::ClientContext ctx;
    // gRPC deadlines are real time, whatever clock the uplink waits on.
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    ctx.AddMetadata("authorization", BearerHeader(join_token));
    varan::v1::RegisterResponse response;
    grpc::Status status = stub_->Register(&ctx, request, &response);
    if (!status.ok()) return WithRetryAfter(FromGrpcStatus(status), ctx);
    return response;
  }

  absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      const varan::v1::HeartbeatRequest& request, const std::string& credential,
      absl::Duration timeout) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    ctx.AddMetadata("authorization", BearerHeader(credential));
    varan::v1::HeartbeatResponse response;
    grpc::Status status = stub_->Heartbeat(&ctx, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  }

  absl::StatusOr<varan::v1::RenewCertificateResponse> RenewCertificate(
      const varan::v1::RenewCertificateRequest& request,
      const std::string& credential, absl::Duration timeout) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    ctx.AddMetadata("authorization", BearerHeader(credential));
    varan::v1::RenewCertificateResponse response;
    grpc::Status status = stub_->RenewCertificate(&ctx, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    return response;
  }

  bool AwaitUp(absl::Duration timeout,
               const absl::Notification& stop) override {
    const absl::Time until = absl::Now() + timeout;
    grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
    while (state != GRPC_CHANNEL_READY) {
      const absl::Time now = absl::Now();
      if (stop.HasBeenNotified() || now >= until) return false;
      // In slices, so that a stop is noticed within one.
      const absl::Time slice = std::min(until, now + absl::Milliseconds(100));
      if (channel_->WaitForStateChange(state, absl::ToChronoTime(slice))) {
        state = channel_->GetState(/*try_to_connect=*/true);
      }
    }
    return true;
  }

  bool Up() override {
    return channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
  }

  std::unique_ptr<CoreTunnel> OpenTunnel(
      Executor* executor, const std::string& bearer,
      varan::v1::TunnelHello hello) override {
    auto session = std::make_unique<TunnelSession>(
        stub_.get(), executor, clock_, bearer, std::move(hello));
    session->Begin();
    return session;
  }

 private:
  const Clock* const clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<varan::v1::Registry::Stub> stub_;
};

}  // namespace

std::unique_ptr<CoreConnection> NewGrpcCoreConnection(
    const HostPort& core, const UplinkOptions& options, const Clock* clock) {
  return std::make_unique<GrpcCoreConnection>(core, options, clock);
}

}  // namespace varan::periphery
