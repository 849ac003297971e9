#include "core/link/replica_peers.h"

#include <utility>

#include "common/grpc_util.h"
#include "common/log.h"
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
  for (const ReplicaInfo& replica : cluster_->Replicas()) {
    if (replica.id == self) continue;
    varan::v1::ReplicaReportRequest request;
    request.set_periphery_id(periphery_id);
    *request.mutable_executions() = reports;
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    (new ReportCall(this, ChannelTo(replica.address), replica.address,
                    std::move(request)))
        ->Start();
  }
}

void ReplicaPeers::Answered(const std::string& periphery_id,
                            const varan::v1::ReplicaReportResponse& response) {
  if (response.acknowledged().empty() && response.cancel().empty()) return;
  absl::MutexLock lock(&mu_);
  Answers& a = answers_[periphery_id];
  for (const auto& id : response.acknowledged()) a.acknowledged.push_back(id);
  for (const auto& id : response.cancel()) a.cancel.push_back(id);
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
}

}  // namespace varan::core
