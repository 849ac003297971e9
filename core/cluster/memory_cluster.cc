#include "core/cluster/memory_cluster.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace varan::core {

bool MemoryClusterState::LiveLocked(const std::string& id) const {
  auto it = replicas_.find(id);
  if (it == replicas_.end()) return false;
  const Replica& r = it->second;
  return !r.died.has_value() || clock_->Now() < *r.died + r.ttl;
}

MemoryCluster::MemoryCluster(std::shared_ptr<MemoryClusterState> state,
                             ClusterOptions options)
    : state_(std::move(state)),
      options_(std::move(options)),
      self_{options_.replica_id.empty() ? NewReplicaId() : options_.replica_id,
            options_.address} {
  absl::MutexLock lock(&state_->mu_);
  if (state_->LiveLocked(self_.id)) {
    spdlog::critical("replica {} joined a cluster twice", self_.id);
    std::abort();
  }
  state_->replicas_[self_.id] = {self_.address, std::nullopt, options_.ttl};
}

std::unique_ptr<MemoryCluster> MemoryCluster::Alone(const Clock* clock,
                                                    ClusterOptions options) {
  return std::make_unique<MemoryCluster>(
      std::make_shared<MemoryClusterState>(clock), std::move(options));
}

MemoryCluster::~MemoryCluster() {
  absl::MutexLock lock(&state_->mu_);
  if (crashed_) return;  // the others take over after its ttl
  state_->replicas_.erase(self_.id);
  for (auto& [name, lease] : state_->leases_) {
    if (lease.holder == self_.id) lease.holder.clear();
  }
  for (auto& [id, claim] : state_->claims_) {
    if (claim.replica == self_.id) claim.replica.clear();
  }
}

void MemoryCluster::Crash() {
  absl::MutexLock lock(&state_->mu_);
  crashed_ = true;
  state_->replicas_[self_.id].died = state_->clock_->Now();
}

absl::StatusOr<std::string> MemoryCluster::Agree(const std::string& name,
                                                 const std::string& proposal) {
  absl::MutexLock lock(&state_->mu_);
  return state_->settings_.try_emplace(name, proposal).first->second;
}

absl::StatusOr<std::string> MemoryCluster::Setting(const std::string& name) {
  absl::MutexLock lock(&state_->mu_);
  auto it = state_->settings_.find(name);
  if (it == state_->settings_.end()) {
    return absl::NotFoundError(absl::StrCat("no cluster setting ", name));
  }
  return it->second;
}

absl::Status MemoryCluster::Replace(const std::string& name,
                                    const std::string& expected,
                                    const std::string& value) {
  absl::MutexLock lock(&state_->mu_);
  auto it = state_->settings_.find(name);
  if (it == state_->settings_.end()) {
    return absl::NotFoundError(absl::StrCat("no cluster setting ", name));
  }
  if (it->second != expected) {
    return absl::AbortedError(absl::StrCat(
        "the cluster's ", name, " was changed by another replica meanwhile"));
  }
  it->second = value;
  return absl::OkStatus();
}

std::vector<ReplicaInfo> MemoryCluster::Replicas() const {
  std::vector<ReplicaInfo> out;
  absl::MutexLock lock(&state_->mu_);
  if (crashed_) return out;
  for (const auto& [id, r] : state_->replicas_) {
    if (state_->LiveLocked(id)) out.push_back({id, r.address});
  }
  absl::c_sort(out, [](const ReplicaInfo& a, const ReplicaInfo& b) {
    return a.id < b.id;
  });
  return out;
}

bool MemoryCluster::Holds(absl::string_view name) const {
  if (!absl::c_linear_search(options_.leases, name)) return false;
  absl::MutexLock lock(&state_->mu_);
  if (crashed_) return false;
  MemoryClusterState::Lease& lease = state_->leases_[name];
  if (lease.holder == self_.id) return true;
  if (!lease.holder.empty() && state_->LiveLocked(lease.holder)) return false;
  lease.holder = self_.id;
  ++lease.epoch;
  spdlog::info("cluster: replica {} took lease {} (epoch {})", self_.id, name,
               lease.epoch);
  return true;
}

std::optional<ReplicaInfo> MemoryCluster::HolderOf(
    absl::string_view name) const {
  absl::MutexLock lock(&state_->mu_);
  auto it = state_->leases_.find(name);
  if (it == state_->leases_.end() || it->second.holder.empty() ||
      !state_->LiveLocked(it->second.holder)) {
    return std::nullopt;
  }
  return ReplicaInfo{it->second.holder,
                     state_->replicas_.at(it->second.holder).address};
}

void MemoryCluster::Connected(const std::string& id) {
  absl::MutexLock lock(&state_->mu_);
  if (crashed_) return;
  MemoryClusterState::Claim& claim = state_->claims_[id];
  claim.replica = self_.id;
  ++claim.epoch;
}

void MemoryCluster::Disconnected(const std::string& id) {
  absl::MutexLock lock(&state_->mu_);
  if (crashed_) return;
  auto it = state_->claims_.find(id);
  if (it != state_->claims_.end() && it->second.replica == self_.id) {
    it->second.replica.clear();
  }
}

std::optional<PeripheryOwner> MemoryCluster::OwnerOf(
    const std::string& id) const {
  absl::MutexLock lock(&state_->mu_);
  if (crashed_) return std::nullopt;
  auto it = state_->claims_.find(id);
  if (it == state_->claims_.end() || it->second.replica.empty() ||
      !state_->LiveLocked(it->second.replica)) {
    return std::nullopt;
  }
  return PeripheryOwner{
      {it->second.replica, state_->replicas_.at(it->second.replica).address},
      it->second.epoch};
}

absl::Status MemoryCluster::Fence(const std::string& tag) {
  absl::MutexLock lock(&state_->mu_);
  for (const auto& [id, r] : state_->replicas_) {
    if (ReplicaTag(id) == tag && state_->LiveLocked(id)) {
      return absl::FailedPreconditionError(
          absl::StrCat("replica ", id, " is live: it cannot be fenced"));
    }
  }
  state_->fences_.insert(tag);
  return absl::OkStatus();
}

bool MemoryCluster::Reachable() const {
  absl::MutexLock lock(&state_->mu_);
  return !crashed_;
}

bool MemoryCluster::Fenced() const {
  absl::MutexLock lock(&state_->mu_);
  return state_->fences_.contains(ReplicaTag(self_.id));
}

}  // namespace varan::core
