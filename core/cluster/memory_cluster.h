// MemoryCluster: the Cluster (core/cluster/cluster.h) of replicas in one
// process, sharing a MemoryClusterState — core alone on SQLite (one
// replica, so it holds every lease and every connection) and unit tests of
// several replicas. Time comes from the state's Clock; changes are
// recorded at once, so Sync() has nothing to wait for.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/secrets.h"
#include "core/cluster/cluster.h"

namespace varan::core {

// What the replicas of one MemoryCluster agree on. Shared by them
// (shared_ptr: each replica and the test that made the state hold it).
class MemoryClusterState {
 public:
  // `clock` must outlive the state.
  explicit MemoryClusterState(const Clock* clock) : clock_(clock) {}

 private:
  friend class MemoryCluster;

  struct Replica {
    std::string address;
    // Set when it died without leaving: live until then + ttl.
    std::optional<absl::Time> died;
    absl::Duration ttl;
  };
  struct Lease {
    std::string holder;
    int64_t epoch = 0;
  };
  struct Claim {
    std::string replica;  // empty: released
    int64_t epoch = 0;
  };

  bool LiveLocked(const std::string& id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const std::string secret_ = GenerateSecret();
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Replica> replicas_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Claim> claims_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> settings_ ABSL_GUARDED_BY(mu_);
  // The tags of the replicas fenced (Cluster::Fence).
  absl::flat_hash_set<std::string> fences_ ABSL_GUARDED_BY(mu_);
};

class MemoryCluster final : public Cluster {
 public:
  // Joins `state` as a live replica. A replica id already live there is a
  // programming error (aborts).
  MemoryCluster(std::shared_ptr<MemoryClusterState> state,
                ClusterOptions options);
  // One replica alone, with a state of its own.
  static std::unique_ptr<MemoryCluster> Alone(const Clock* clock,
                                              ClusterOptions options);
  ~MemoryCluster() override;

  // For tests: this replica dies without leaving — it stops renewing, so
  // the others see it live for `ttl` more, then take over its leases and
  // drop its connections. Its own answers stop too (it holds nothing).
  void Crash();

  const ReplicaInfo& self() const override { return self_; }
  const std::string& secret() const override { return state_->secret_; }
  absl::StatusOr<std::string> Agree(const std::string& name,
                                    const std::string& proposal) override;
  absl::StatusOr<std::string> Setting(const std::string& name) override;
  absl::Status Replace(const std::string& name, const std::string& expected,
                       const std::string& value) override;
  std::vector<ReplicaInfo> Replicas() const override;
  bool Holds(absl::string_view name) const override;
  std::optional<ReplicaInfo> HolderOf(absl::string_view name) const override;
  void Connected(const std::string& id) override;
  void Disconnected(const std::string& id) override;
  std::optional<PeripheryOwner> OwnerOf(const std::string& id) const override;
  // Only a replica that is not live can be fenced, and a MemoryCluster
  // that died never comes back: Fenced() is true of crashed ones only, and
  // on_fenced is never called.
  absl::Status Fence(const std::string& tag) override;
  bool Fenced() const override;
  // Always, until it crashed (its state is in memory); on_lapsed is never
  // called.
  bool Reachable() const override;
  absl::Status Sync() override { return absl::OkStatus(); }

 private:
  const std::shared_ptr<MemoryClusterState> state_;
  const ClusterOptions options_;
  const ReplicaInfo self_;
  bool crashed_ ABSL_GUARDED_BY(state_->mu_) = false;
};

}  // namespace varan::core
