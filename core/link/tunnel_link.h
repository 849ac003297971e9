// Tunnels: peripheries that connect to core (Registry.Connect) instead of
// being dialed.
//
// TunnelHub serves each Connect stream (Accept) and is the LinkProvider the
// dispatcher uses: a periphery with a tunnel open is reached through it (a
// TunnelLink: execute and cancel requests go down the stream, the
// execution's events come up it, routed by execution id), one without is
// dialed at its address, and one with neither fails the call at once with
// UNAVAILABLE. A periphery that opens a new tunnel replaces its old one.
// When a tunnel ends, its calls end with UNAVAILABLE.
//
// What the stream means (hello, heartbeats) is the TunnelHandler's business
// (the Registry service); the hub only carries it.
//
// Executions over a tunnel get an output window (ExecuteRequest.
// output_window_bytes, kTunnelOutputWindowBytes unless the request sets
// one); credit goes back as their observer takes the output (TunnelCall).
//
// Thread-safe. Observers' OnEvent/OnDone run on their call's delivery thread
// (TunnelCall), never on the tunnel's reader and never inside Execute,
// Cancel or Abort. The hub must outlive
// the grpc::Server and every link it handed out.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/link/periphery_link.h"
#include "core/link/replica_peers.h"
#include "core/link/tunnel_call.h"
#include "grpcpp/grpcpp.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

// Gives meaning to a tunnel's messages. Called in reactions: must not block
// (Open may answer later, from a thread of its own).
class TunnelHandler {
 public:
  virtual ~TunnelHandler() = default;

  struct Opened {
    varan::v1::TunnelOpened message;
    // The periphery's credential, which its heartbeats must match.
    std::string credential;
    // Its name, for messages.
    std::string name;
  };
  using OpenDone = absl::AnyInvocable<void(absl::StatusOr<Opened>) &&>;
  // Authenticates and answers the hello through `done`, exactly once and on
  // any thread (a registration may wait on the store: the handler answers
  // from a thread of its own). An error ends the tunnel with it. `context`
  // and `hello` stay valid until `done` is called; nothing else happens on
  // the stream meanwhile (the stream's end waits for the answer).
  virtual void Open(const grpc::CallbackServerContext& context,
                    const varan::v1::TunnelHello& hello, OpenDone done) = 0;
  // A heartbeat of the periphery `id` that opened the tunnel with
  // `credential`. An error ends the tunnel with it.
  virtual absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      const grpc::CallbackServerContext& context, const std::string& id,
      const std::string& credential,
      const varan::v1::HeartbeatRequest& request) = 0;
  // The tunnel of `id` ended (`status` says how).
  virtual void Closed(const std::string& id, const absl::Status& status) = 0;
};

class TunnelConnection;

class TunnelHub final : public LinkProvider {
 public:
  // `dial` reaches peripheries without a tunnel; `peers` (null for a core
  // alone) reaches those without an address whose tunnel another replica
  // holds, through it. Both must outlive the hub.
  explicit TunnelHub(LinkProvider* dial, ReplicaPeers* peers = nullptr);
  ~TunnelHub() override;

  // Serves one Registry.Connect call; `handler` must outlive the call.
  grpc::ServerBidiReactor<varan::v1::TunnelUp, varan::v1::TunnelDown>* Accept(
      grpc::CallbackServerContext* context, TunnelHandler* handler);

  std::shared_ptr<PeripheryLink> LinkFor(
      const std::string& id, const std::string& address,
      const std::string& credential) override;

  // Peripheries with a tunnel open now.
  size_t connected() const;
  // Several replicas: a periphery whose tunnel here closes may be on its
  // way to another (a call refused for that is Misrouted).
  bool replicas() const { return peers_ != nullptr; }

  // For TunnelConnection.
  void Attach(const std::string& id, std::shared_ptr<TunnelConnection> conn);
  void Detach(const std::string& id, const TunnelConnection* conn);
  // The executions' delivery threads (see TunnelCall), waited for when the
  // hub goes.
  DeliveryThreads* delivery() { return &delivery_; }

 private:
  LinkProvider* const dial_;
  ReplicaPeers* const peers_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<TunnelConnection>> tunnels_
      ABSL_GUARDED_BY(mu_);
  DeliveryThreads delivery_;
};

}  // namespace varan::core
