#include "core/link/replica_peers.h"

#include <optional>
#include <utility>

#include "common/grpc_util.h"
#include "common/log.h"
#include "core/jobs/execution_id.h"
#include "grpcpp/create_channel.h"
#include "varan/v1/replica.grpc.pb.h"

namespace varan::core {

// One Replica.Report call; deletes itself when it ends.
class ReplicaPeers::ReportCall {
 public:
  ReportCall(ReplicaPeers* peers, std::shared_ptr<grpc::Channel> channel,
             std::string address, varan::v1::ReplicaReportRequest request)
      : peers_(peers),
        stub_(varan::v1::Replica::NewStub(channel)),
        address_(std::move(address)),
        request_(std::move(request)) {
    context_.AddMetadata("authorization", peers_->Authorization());
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(10));
  }

  void Start() {
    stub_->async()->Report(&context_, &request_, &response_,
                           [this](grpc::Status status) { Done(status); });
  }

 private:
  void Done(const grpc::Status& status) {
    if (status.ok()) {
      peers_->Answered(request_.periphery_id(), response_);
    } else {
      // The periphery reports again with its next heartbeat.
      spdlog::debug("forwarding reports of periphery {} to replica at {}: {}",
                    request_.periphery_id(), address_, status.error_message());
    }
    ReplicaPeers* peers = peers_;
    delete this;
    peers->CallEnded();
  }

  ReplicaPeers* const peers_;
  std::unique_ptr<varan::v1::Replica::Stub> stub_;
  const std::string address_;
  grpc::ClientContext context_;
  const varan::v1::ReplicaReportRequest request_;
  varan::v1::ReplicaReportResponse response_;
};

ReplicaPeers::ReplicaPeers(const Cluster* cluster, Keepalive keepalive,
                           ChannelSecurity security)
    : cluster_(cluster),
      keepalive_(keepalive),
      security_(security),
      owners_(cluster),
      relays_(keepalive, std::move(security), "none") {}

std::shared_ptr<PeripheryLink> ReplicaPeers::RelayLinkFor(
    const std::string& id) {
  auto owner = cluster_->OwnerOf(id);
  if (!owner.has_value() || owner->replica.id == cluster_->self().id) {
    return nullptr;
  }
  return relays_.RelayLinkFor(id, owner->replica.address, cluster_->secret());
}

ReplicaPeers::~ReplicaPeers() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return in_flight_ == 0;
  };
  mu_.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(5));
}

std::string ReplicaPeers::Authorization() const {
  return BearerHeader(cluster_->secret());
}

std::shared_ptr<grpc::Channel> ReplicaPeers::ChannelTo(
    const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& slot = channels_[address];
  if (slot == nullptr) {
    grpc::ChannelArguments args;
    SetClientChannelArgs(&args, keepalive_, absl::Milliseconds(200),
                         absl::Seconds(2));
    security_.Apply(&args);
    slot = grpc::CreateCustomChannel(address,
                                     security_.credentials != nullptr
                                         ? security_.credentials
                                         : grpc::InsecureChannelCredentials(),
                                     args);
  }
  return slot;
}

void ReplicaPeers::Forward(
    const std::string& periphery_id,
    const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
        reports) {
  const std::string& self = cluster_->self().id;
  // By replica id: the replica's address and the reports for it.
  absl::flat_hash_map<std::string,
                      std::pair<std::string, varan::v1::ReplicaReportRequest>>
      to;
  for (const varan::v1::ExecutionReport& report : reports) {
    auto id = ExecutionId::Parse(report.execution_id());
    if (!id.ok()) continue;  // not one of core's
    std::optional<ReplicaInfo> owner = owners_.CreatorOf(id->job_id);
    if (!owner.has_value()) owner = owners_.Adopter();
    if (!owner.has_value() || owner->id == self) continue;
    auto& [address, request] = to[owner->id];
    address = owner->address;
    *request.add_executions() = report;
  }
  for (auto& [replica, call] : to) {
    auto& [address, request] = call;
    request.set_periphery_id(periphery_id);
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    (new ReportCall(this, ChannelTo(address), address, std::move(request)))
        ->Start();
  }
}

void ReplicaPeers::Heard(
    const std::string& periphery_id,
    const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
        reports) {
  absl::MutexLock lock(&mu_);
  Heartbeat& h = heard_[periphery_id];
  ++h.count;
  h.execution_ids.clear();
  for (const auto& r : reports) h.execution_ids.push_back(r.execution_id());
}

void ReplicaPeers::Held(const varan::v1::ReplicaHeldRequest& request,
                        varan::v1::ReplicaHeldResponse* response) {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : request.periphery_ids()) {
    auto it = heard_.find(id);
    if (it == heard_.end()) continue;
    varan::v1::PeripheryHeld* held = response->add_peripheries();
    held->set_periphery_id(id);
    held->set_heartbeats(it->second.count);
    for (const auto& e : it->second.execution_ids) held->add_execution_ids(e);
  }
}

std::vector<varan::v1::PeripheryHeld> ReplicaPeers::AskHeld(
    const std::vector<std::string>& periphery_ids) {
  const std::string& self = cluster_->self().id;
  // By replica id: its address and what to ask it.
  absl::flat_hash_map<std::string,
                      std::pair<std::string, varan::v1::ReplicaHeldRequest>>
      ask;
  for (const std::string& id : periphery_ids) {
    auto owner = cluster_->OwnerOf(id);
    if (!owner.has_value() || owner->replica.id == self) continue;
    auto& [address, request] = ask[owner->replica.id];
    address = owner->replica.address;
    request.add_periphery_ids(id);
  }
  std::vector<varan::v1::PeripheryHeld> out;
  absl::flat_hash_map<std::string, Asked> asked;
  for (auto& [replica, call] : ask) {
    auto& [address, request] = call;
    auto stub = varan::v1::Replica::NewStub(ChannelTo(address));
    grpc::ClientContext context;
    context.AddMetadata("authorization", Authorization());
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(2));
    varan::v1::ReplicaHeldResponse response;
    grpc::Status status = stub->Held(&context, request, &response);
    if (!status.ok()) {
      spdlog::debug("asking the replica at {} what peripheries hold: {}",
                    address, status.error_message());
      continue;
    }
    absl::MutexLock lock(&mu_);
    for (auto& held : *response.mutable_peripheries()) {
      Asked now{replica, held.heartbeats()};
      auto before = asked_.find(held.periphery_id());
      const bool fresh = before == asked_.end() ||
                         before->second.replica_id != now.replica_id ||
                         before->second.count != now.count;
      asked[held.periphery_id()] = std::move(now);
      if (fresh) out.push_back(std::move(held));
    }
  }
  absl::MutexLock lock(&mu_);
  // Only the peripheries still asked about are remembered (as they were,
  // when their replica did not answer this time).
  for (const std::string& id : periphery_ids) {
    if (asked.contains(id)) continue;
    auto before = asked_.find(id);
    if (before != asked_.end()) asked[id] = std::move(before->second);
  }
  asked_ = std::move(asked);
  return out;
}

void ReplicaPeers::Answered(const std::string& periphery_id,
                            const varan::v1::ReplicaReportResponse& response) {
  if (response.acknowledged().empty() && response.cancel().empty() &&
      response.resend_with_tails().empty()) {
    return;
  }
  absl::MutexLock lock(&mu_);
  Answers& a = answers_[periphery_id];
  for (const auto& id : response.acknowledged()) a.acknowledged.push_back(id);
  for (const auto& id : response.cancel()) a.cancel.push_back(id);
  for (const auto& id : response.resend_with_tails()) {
    a.resend_with_tails.push_back(id);
  }
}

void ReplicaPeers::CallEnded() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void ReplicaPeers::TakeAnswers(const std::string& periphery_id,
                               varan::v1::HeartbeatResponse* response) {
  Answers a;
  {
    absl::MutexLock lock(&mu_);
    auto it = answers_.find(periphery_id);
    if (it == answers_.end()) return;
    a = std::move(it->second);
    answers_.erase(it);
  }
  for (auto& id : a.acknowledged) response->add_acknowledged(std::move(id));
  for (auto& id : a.cancel) response->add_cancel(std::move(id));
  for (auto& id : a.resend_with_tails) {
    response->add_resend_with_tails(std::move(id));
  }
}

}  // namespace varan::core
