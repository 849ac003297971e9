// ReplicaPeers: this replica's calls to the other core replicas on its
// database (issue #19) — channels to them (by the address each announces
// in the Cluster), forwarding what a periphery reports in its heartbeats
// to the replicas running its jobs (Replica.Report), and the channel a
// relayed call or a forwarded watch uses. Every call carries the replicas'
// shared secret (Cluster::secret).
//
// Each report goes to the replica answering for its job (JobOwners: the
// job's creator while it is live, else the jobs lease's holder), none to
// this one, whose dispatcher has it already. The answers come back
// asynchronously and wait for the periphery's next heartbeat
// (TakeAnswers), which carries them to it: the periphery reports an
// execution until it is told to forget it, so nothing depends on one
// answer arriving in time.
//
// It also remembers what the peripheries whose heartbeats reach this
// replica reported last (Heard), for the replicas waiting on them to ask
// (Replica.Held, AskHeld).
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
#include "core/jobs/job_owner.h"
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

  // Sends each of `reports` of periphery `periphery_id` to the other
  // replica answering for its job, if any; returns at once.
  void Forward(
      const std::string& periphery_id,
      const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
          reports);

  // A heartbeat of periphery `periphery_id` reporting `reports` reached
  // this replica.
  void Heard(
      const std::string& periphery_id,
      const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
          reports);

  // Answers Replica.Held from what was Heard.
  void Held(const varan::v1::ReplicaHeldRequest& request,
            varan::v1::ReplicaHeldResponse* response);

  // What the peripheries `periphery_ids` reported in their latest
  // heartbeats, asked of the other replicas holding them (Replica.Held):
  // one entry per periphery that heartbeated since the last call, none for
  // peripheries held here or nowhere, or whose replica did not answer.
  // Blocks for the calls (up to 2 s each).
  std::vector<varan::v1::PeripheryHeld> AskHeld(
      const std::vector<std::string>& periphery_ids);

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
    std::vector<std::string> resend_with_tails;
  };
  class ReportCall;
  // The latest heartbeat of a periphery, as Heard.
  struct Heartbeat {
    uint64_t count = 0;
    std::vector<std::string> execution_ids;
  };
  // The latest heartbeat of a periphery seen through AskHeld.
  struct Asked {
    std::string replica_id;
    uint64_t count = 0;
  };

  void Answered(const std::string& periphery_id,
                const varan::v1::ReplicaReportResponse& response);
  void CallEnded();

  const Cluster* const cluster_;
  const Keepalive keepalive_;
  const ChannelSecurity security_;
  const JobOwners owners_;
  DialLinkProvider relays_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Answers> answers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Heartbeat> heard_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Asked> asked_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace varan::core
