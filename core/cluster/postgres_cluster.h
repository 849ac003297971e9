// PostgresCluster: the Cluster (core/cluster/cluster.h) of core replicas
// sharing one PostgreSQL database (the one their PostgresStore uses; the
// tables are in its schema, core/store/postgres/schema.cc).
//
// Tables: cluster_replicas (id, address, expires_at: membership),
// cluster_leases (name, holder, epoch, expires_at), cluster_connections
// (periphery id, owning replica, epoch, seq: the newest claim of each
// periphery's connection). Expiry times are the database's clock
// (now() + ttl), so the replicas' clocks need not agree; a replica counts
// its own leases from its clock at the start of the renewing transaction,
// which is before the database's now(), so it stops using a lease before
// anyone else can take it.
//
// One thread per replica keeps the view: every refresh_interval (sooner
// when this replica claims or drops a connection, or when another replica
// says it did with NOTIFY varan_cluster on the LISTENing connection) it
// renews membership and leases, records this replica's pending claims in
// one transaction, and reads the live replicas and the claims changed
// since the last refresh. Claims are written under a transaction-level
// advisory lock and numbered from a sequence inside it, so they commit in
// seq order and "changed since seq N" misses none. The database being
// unreachable: the thread reconnects each refresh; claims wait; leases
// lapse by this replica's clock; the view keeps its last answers, and once
// it is back, replicas whose membership lapsed meanwhile stay in it for
// one ttl more unless they renew (they may be reconnecting too).
//
// Fences (cluster_fences, schema v5): Fence inserts the tag of a replica
// whose membership lapsed, under an advisory lock on the tag that every
// renewal of that replica takes too (shared) before it checks its fence; a
// renewal that finds it renews nothing, sets Fenced(), calls on_fenced and
// ends the refreshing thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "core/cluster/cluster.h"

namespace varan::core {

namespace postgres {
class Conn;
}  // namespace postgres

class PostgresCluster final : public Cluster {
 public:
  // Connects to `url` (as PostgresStore::Open; the schema is migrated if
  // it is not yet), joins the cluster (its first refresh done before this
  // returns) and starts the refreshing thread. Errors as PostgresStore's,
  // never with the URL's password. `clock` (null: the wall clock) times
  // this replica's leases.
  static absl::StatusOr<std::unique_ptr<PostgresCluster>> Open(
      const std::string& url, ClusterOptions options,
      const Clock* clock = nullptr);
  // Leaves (see Cluster), then closes.
  ~PostgresCluster() override;

  // For tests: stops refreshing without leaving, as if the process died.
  void Crash();

  const ReplicaInfo& self() const override { return self_; }
  const std::string& secret() const override { return secret_; }
  // Over a connection of its own (the refreshing thread's is its alone).
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
  Holding HoldingOf(const std::string& id) const override;
  // Over a connection of its own.
  absl::Status Fence(const std::string& tag) override;
  bool Fenced() const override;
  bool Reachable() const override;
  absl::Status Sync() override;

 private:
  PostgresCluster(ClusterOptions options, const Clock* clock,
                  std::unique_ptr<postgres::Conn> conn);

  void Run();
  // One refresh; the status is what Sync reports.
  absl::Status Refresh();
  // Writes membership, leases and pending claims; the leases held.
  absl::Status Renew(const absl::flat_hash_map<std::string, bool>& changes,
                     absl::flat_hash_map<std::string, absl::Time>* held);
  absl::Status ReadView();
  // Adds to `read` (the replicas live in the database) those presumed live
  // after a gap in the view (see the .cc), as of `now`.
  void PresumeLocked(std::vector<ReplicaInfo>& read, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Leave();
  // What the replicas agree on for setting `name` (Agree), through `conn`.
  static absl::StatusOr<std::string> AgreeOn(postgres::Conn& conn,
                                             const std::string& name,
                                             const std::string& proposal);

  // Waits for a wake-up, a notification or `timeout`.
  void Wait(absl::Duration timeout);
  void Wake();

  const ClusterOptions options_;
  const Clock* const clock_;
  const ReplicaInfo self_;
  const std::string tag_;
  // Set by Open, before the thread starts; constant after. The URL may hold
  // a password: never logged.
  std::string secret_;
  std::string url_;
  // Used by the thread only (and by Open and the destructor around it).
  const std::unique_ptr<postgres::Conn> conn_;
  // Setting and Replace's connection, made on first use and again after
  // an error.
  absl::Mutex settings_mu_;
  std::unique_ptr<postgres::Conn> settings_conn_ ABSL_GUARDED_BY(settings_mu_);
  int wake_fd_ = -1;
  int64_t last_seq_ = 0;
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  // Another replica fenced this one: it stopped refreshing.
  bool fenced_ ABSL_GUARDED_BY(mu_) = false;
  // When this replica last renewed its membership (Open counts as one).
  absl::Time renewed_ ABSL_GUARDED_BY(mu_);
  // Claims to record: periphery id -> connected (true) or dropped (false).
  absl::flat_hash_map<std::string, bool> pending_ ABSL_GUARDED_BY(mu_);
  // The view.
  std::vector<ReplicaInfo> replicas_ ABSL_GUARDED_BY(mu_);
  // When the view was last read, and the replicas kept in it after a gap
  // until they renew or `until` passes.
  absl::Time last_view_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  struct Presumed {
    ReplicaInfo info;
    absl::Time until;
  };
  absl::flat_hash_map<std::string, Presumed> presumed_ ABSL_GUARDED_BY(mu_);
  // Claims taken from pending_ by the refresh writing them now.
  size_t claims_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // Lease name -> the id of its live holder, as of the last refresh.
  absl::flat_hash_map<std::string, std::string> holders_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> leases_ ABSL_GUARDED_BY(mu_);
  struct Claim {
    std::string replica;  // empty: released
    int64_t epoch = 0;
  };
  absl::flat_hash_map<std::string, Claim> claims_ ABSL_GUARDED_BY(mu_);
  // Refreshes started and finished, for Sync; the last one's status.
  uint64_t started_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
