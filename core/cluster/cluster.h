// Cluster: what several core replicas sharing one database agree on — who
// is alive (and where the others reach it), who holds each fleet-wide duty
// (a lease), and which replica holds each periphery's connection (newest
// connection wins, with an epoch). Issue #19.
//
// A Cluster is this replica's view of that agreement. Questions are
// answered from the view, at once and without I/O, so a gRPC reaction or a
// store callback may ask them. Changes this replica makes (Connected,
// Disconnected) are recorded asynchronously; what the others change shows
// in the view after the next refresh. Sync() waits for both.
//
// Contract, for every implementation (tests/unit/cluster/cluster_contract.h
// checks it against MemoryCluster and PostgresCluster):
//  * Membership. A replica is live from its construction until its
//    destruction or, if it dies without leaving, until `ttl` after its last
//    renewal. Replicas() lists the live ones, self included, sorted by id.
//  * Leases. Each name in ClusterOptions::leases is held by at most one live
//    replica at a time. A free lease (never taken, released, or whose holder
//    stopped renewing for `ttl`) is taken by a live replica that wants it.
//    Holds(name) is true only while this replica holds it, by its own
//    clock: it turns false before anyone else can take it (when renewals
//    fail, Holds turns false within `ttl` of the last one that succeeded).
//  * Connections. Connected(id) records that this replica now holds the
//    connection of periphery `id`, with an epoch greater than every earlier
//    claim of that periphery; the newest claim wins. Disconnected(id) drops
//    this replica's claim if it is still the newest. OwnerOf(id) answers
//    the newest claim's replica while that replica is live; a periphery
//    whose owner died has none.
//  * Settings. Agree(name, proposal) answers the value of setting `name`
//    every replica agrees on: the first proposal recorded for it, by any
//    replica, is kept, and every later call answers it, until a replica
//    replaces it (Replace: compare-and-set, so of two replicas replacing
//    the same value one wins and the other is told). Setting(name) reads
//    the value now.
//  * Fencing. Fence(tag) records, for good, that the replica with that tag
//    (ReplicaTag) is dead, unless it is live: a replica about to take over
//    another's work fences it first. A fenced replica never renews again:
//    Fenced() turns true at its next refresh and ClusterOptions::on_fenced
//    is called once. (Its store refuses its writes too: PostgresStore's
//    fence_tag.)
//  * Leaving. The destructor releases this replica's leases and claims and
//    ends its membership, so the others take over at their next refresh
//    instead of after `ttl`.
//
// Thread-safe; every method may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace varan::core {

// One replica: its id and the address the others reach it at.
struct ReplicaInfo {
  std::string id;
  std::string address;
  friend bool operator==(const ReplicaInfo& a, const ReplicaInfo& b) {
    return a.id == b.id && a.address == b.address;
  }
};

// Where a periphery's connection is held (Cluster::HoldingOf).
enum class Holding { kNowhere, kHere, kElsewhere };

// The replica holding a periphery's connection, and the epoch of its claim.
struct PeripheryOwner {
  ReplicaInfo replica;
  int64_t epoch = 0;
};

struct ClusterOptions {
  // This replica's id; empty: a new random one (NewReplicaId).
  std::string replica_id;
  // Where the other replicas reach this one (host:port).
  std::string address;
  // How long membership and leases last without a renewal.
  absl::Duration ttl = absl::Seconds(10);
  // How often the view is refreshed (and membership and leases renewed);
  // a longer one is taken as ttl / 3.
  absl::Duration refresh_interval = absl::Seconds(1);
  // The fleet-wide duties this replica would take on.
  std::vector<std::string> leases;
  // Called once, from the refreshing thread, when this replica finds that
  // another fenced it (Cluster::Fence): it must stop at once, without
  // writing anything more (core exits). Empty: only Fenced() tells.
  std::function<void()> on_fenced;
  // Called from the refreshing thread after each refresh that failed once
  // this replica has not renewed its membership for `ttl` — the others may
  // take it for dead and fence it now — with the other replicas it last saw
  // live and when it last renewed (the same through one lapse). Empty:
  // nothing is called.
  std::function<void(const std::vector<ReplicaInfo>& others,
                     absl::Time renewed)>
      on_lapsed;
};

// The fleet-wide duties core runs under a lease:
//  * liveness: writing down that a periphery no live replica holds went
//    offline (FleetRegistry);
//  * retention: deleting old jobs (the store's periodic retention);
//  * jobs: taking over the running jobs of replicas that died (Dispatcher).
inline constexpr char kLivenessLease[] = "liveness";
inline constexpr char kRetentionLease[] = "retention";
inline constexpr char kJobsLease[] = "jobs";

// "r-" and 16 random hex digits.
std::string NewReplicaId();

// The tag of replica `replica_id`: the 8 hex digits after "r-" (empty for
// any other id). Job ids end with their creator's tag (job_owner.h), and
// fences name replicas by it.
std::string ReplicaTag(absl::string_view replica_id);

class Cluster {
 public:
  virtual ~Cluster() = default;

  virtual const ReplicaInfo& self() const = 0;

  // A secret every replica of this cluster shares (created by the first
  // one): replicas authenticate their calls to each other with it. Never
  // logged.
  virtual const std::string& secret() const = 0;

  // The value of setting `name` that every replica shares: `proposal` when
  // no replica recorded one before, otherwise the one recorded first (what
  // the replicas create once, e.g. the cluster CA). Blocks on the shared
  // state; UNAVAILABLE when it cannot be reached. Values may be secrets:
  // never logged.
  virtual absl::StatusOr<std::string> Agree(const std::string& name,
                                            const std::string& proposal) = 0;

  // The value of setting `name` now: NOT_FOUND when none was ever
  // recorded, UNAVAILABLE when the shared state cannot be reached. Blocks.
  virtual absl::StatusOr<std::string> Setting(const std::string& name) = 0;
  // Sets setting `name` to `value` if it still holds `expected`: OK when it
  // did; ABORTED when it holds another value (another replica changed it
  // first: read it again); NOT_FOUND when it holds none; UNAVAILABLE.
  // Blocks.
  virtual absl::Status Replace(const std::string& name,
                               const std::string& expected,
                               const std::string& value) = 0;

  // The live replicas, self included, sorted by id.
  virtual std::vector<ReplicaInfo> Replicas() const = 0;

  // Whether this replica holds lease `name` now.
  virtual bool Holds(absl::string_view name) const = 0;
  // The live replica holding lease `name` as of the last refresh (self
  // included), if any. A hint for routing, not a guarantee: only Holds
  // tells a replica it may act on the lease.
  virtual std::optional<ReplicaInfo> HolderOf(absl::string_view name) const = 0;

  // This replica now holds periphery `id`'s connection (newest wins).
  virtual void Connected(const std::string& id) = 0;
  // This replica no longer holds it.
  virtual void Disconnected(const std::string& id) = 0;
  // The live replica holding periphery `id`'s connection, if any.
  virtual std::optional<PeripheryOwner> OwnerOf(
      const std::string& id) const = 0;
  // What OwnerOf tells, without the owner: this replica, another live one
  // or none. Cheaper: the fleet asks it of every periphery every tick.
  virtual Holding HoldingOf(const std::string& id) const;

  // Fences the replica whose tag is `tag` (see the contract above): OK when
  // it is fenced now or was before, or no replica with that tag is live;
  // FAILED_PRECONDITION when one is live (it renewed: it is not dead);
  // UNAVAILABLE when the shared state cannot be reached. Blocks on it.
  virtual absl::Status Fence(const std::string& tag) = 0;
  // Whether another replica fenced this one.
  virtual bool Fenced() const = 0;
  // Whether the last refresh reached the shared state (false while the
  // database cannot be reached, and once fenced): what core's health
  // service "database" says to the other replicas.
  virtual bool Reachable() const = 0;

  // Waits until what this replica changed before the call is recorded and
  // the view has been refreshed after it. UNAVAILABLE when the shared state
  // cannot be reached.
  virtual absl::Status Sync() = 0;
};

}  // namespace varan::core
