// RelayService: the Agent service a core replica serves to the other
// replicas for the peripheries whose tunnel it holds (issue #19). Another
// replica, running a job with a target on such a periphery, calls
// Agent.Execute here with the periphery's id in its kRelayToHeader
// metadata and the replicas' shared secret as its bearer token; the call
// is carried down the periphery's tunnel, and its events come back up the
// relayed stream as they come, paced by the caller (at most
// kRelayBufferBytes wait here; beyond that the tunnel's output window
// stops the periphery). Agent.Cancel with the same header asks the
// periphery to stop a relayed execution. The caller dropping its call
// drops the tunnel call (the periphery holds the result, as for a broken
// dial).
//
// A relay that cannot be delivered (no tunnel of that periphery here any
// more) fails UNAVAILABLE with the trailer kNotDeliveredTrailer, so the
// caller knows the request never reached the periphery and may send it
// again elsewhere (Misrouted). The call's initial metadata goes out before
// the request is passed on: a caller that got none knows it never was.
//
// Thread-safe. Must outlive the grpc::Server serving it; `tunnels` and
// `cluster` must outlive it.
#pragma once

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "core/cluster/cluster.h"
#include "core/link/periphery_link.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::core {

// Bytes of a relayed execution's events waiting to be sent to the caller
// beyond which the tunnel's delivery waits.
inline constexpr size_t kRelayBufferBytes = 1 << 20;

class RelayService final : public varan::v1::Agent::CallbackService {
 public:
  RelayService(const Cluster* cluster, LinkProvider* tunnels);

  grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext* context,
      const varan::v1::ExecuteRequest* request) override;
  grpc::ServerUnaryReactor* Cancel(
      grpc::CallbackServerContext* context,
      const varan::v1::CancelRequest* request,
      varan::v1::CancelResponse* response) override;

  class RelayCall;
  // For RelayCall: a relayed execution ended.
  void Ended(const std::string& execution_id, const RelayCall* call);

 private:
  // OK when the call carries the replicas' secret and names a periphery.
  grpc::Status Check(const grpc::CallbackServerContext& context,
                     std::string* periphery_id) const;

  const Cluster* const cluster_;
  LinkProvider* const tunnels_;
  absl::Mutex mu_;
  // Relayed executions in flight, by execution id.
  absl::flat_hash_map<std::string, RelayCall*> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
