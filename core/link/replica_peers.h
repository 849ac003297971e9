// ReplicaPeers: this replica's calls to the other core replicas on its
// database (issue #19) — channels to them (by the address each announces
// in the Cluster), forwarding what a periphery reports in its heartbeats
// to the replicas running its jobs (Replica.Report), and the channel a
// relayed call or a forwarded watch uses. Every call carries the replicas'
// shared secret (Cluster::secret).
//
// Reports go to every other live replica, since the jobs a periphery
// reports on may have been created by any of them (or taken over from a
// dead one); each answers for its own jobs. The answers come back
// asynchronously and wait for the periphery's next heartbeat
// (TakeAnswers), which carries them to it: the periphery reports an
// execution until it is told to forget it, so nothing depends on one
// answer arriving in time.
//
// Thread-safe. The destructor waits (up to 5 s) for the calls in flight.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/keepalive.h"
#include "common/tls.h"
#include "core/cluster/cluster.h"
#include "core/link/dial_link.h"
#include "grpcpp/channel.h"
#include "varan/v1/core.pb.h"
#include "varan/v1/periphery.pb.h"
#include "varan/v1/replica.pb.h"

namespace varan::core {

class ReplicaPeers {
 public:
  // `cluster` must outlive this; `security` secures the channels to the
  // other replicas (plaintext by default).
  ReplicaPeers(const Cluster* cluster, Keepalive keepalive,
               ChannelSecurity security = {});
  ~ReplicaPeers();
  ReplicaPeers(const ReplicaPeers&) = delete;
  ReplicaPeers& operator=(const ReplicaPeers&) = delete;

  // Sends `reports` of periphery `periphery_id` to every other live
  // replica; returns at once.
  void Forward(
      const std::string& periphery_id,
      const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
          reports);

  // Adds to `response` what the other replicas answered since the last call
  // for `periphery_id` (executions to forget, executions to stop).
  void TakeAnswers(const std::string& periphery_id,
                   varan::v1::HeartbeatResponse* response);

  // The channel to the replica at `address` (shared, created once).
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address);

  // The `authorization` metadata value of a call to another replica.
  std::string Authorization() const;

  // A link to periphery `id` through the other replica holding its
  // connection (RelayService there), or null when no other live replica
  // holds it.
  std::shared_ptr<PeripheryLink> RelayLinkFor(const std::string& id);

 private:
  struct Answers {
    std::vector<std::string> acknowledged;
    std::vector<std::string> cancel;
  };
  class ReportCall;

  void Answered(const std::string& periphery_id,
                const varan::v1::ReplicaReportResponse& response);
  void CallEnded();

  const Cluster* const cluster_;
  const Keepalive keepalive_;
  const ChannelSecurity security_;
  DialLinkProvider relays_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Answers> answers_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace varan::core
