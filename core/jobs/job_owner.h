// Which core replica answers for a job (several replicas on one database,
// issue #19). A replica puts its tag — the first 8 hex digits of its id
// (Cluster: "r-" and 16 hex digits) — at the end of the id of every job it
// creates, so any replica can tell from an id, without asking the
// database, who runs that job: its creator while that one is live, else
// whichever replica holds the jobs lease (kJobsLease), which takes it over
// (Dispatcher::AdoptOrphans). Jobs created by a core alone (no tag) count
// as having no live creator.
//
// Thread-safe (the Cluster answers from its view).
#pragma once

#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/cluster/cluster.h"

namespace varan::core {

// The tag at the end of a job id (empty for an id without one).
std::string JobTag(absl::string_view job_id);

class JobOwners {
 public:
  // `cluster` must outlive this.
  explicit JobOwners(const Cluster* cluster);

  // This replica's tag (DispatcherOptions::replica_tag).
  const std::string& tag() const { return tag_; }
  // This replica's id.
  const std::string& self_id() const { return cluster_->self().id; }

  // The live replica that created the job, self included; none when it is
  // not live (or the job has no tag).
  std::optional<ReplicaInfo> CreatorOf(absl::string_view job_id) const;

  // The replica taking over the jobs of dead replicas (the jobs lease's
  // holder), if known.
  std::optional<ReplicaInfo> Adopter() const {
    return cluster_->HolderOf(kJobsLease);
  }

  // Whether this replica answers for the job (DispatcherOptions::owns_job):
  // it created it, or its creator is not live and this replica holds the
  // jobs lease.
  bool OwnsHere(absl::string_view job_id) const;

 private:
  const Cluster* const cluster_;
  const std::string tag_;
};

// When the jobs lease's holder looks for orphaned jobs
// (Dispatcher::AdoptOrphans reads every job stored as running, so not on
// every refresh): when a replica has left since the last look, when this
// replica has just taken the lease, after a scan that failed, and every
// `backstop` in case a change was missed. Used by one thread.
class AdoptionSchedule {
 public:
  // `cluster` must outlive this.
  explicit AdoptionSchedule(const Cluster* cluster,
                            absl::Duration backstop = absl::Minutes(1))
      : cluster_(cluster), backstop_(backstop) {}

  // Whether a scan is due at `now`; call it once per refresh, whether or
  // not the scan can run then (it notes the replicas seen).
  bool Due(absl::Time now);
  // The scan ran at `now` with `status`.
  void Scanned(const absl::Status& status, absl::Time now);

 private:
  const Cluster* const cluster_;
  const absl::Duration backstop_;
  absl::flat_hash_set<std::string> live_;
  bool held_ = false;
  // A replica left or the lease was taken, and no scan succeeded since.
  bool pending_ = false;
  absl::Time next_ = absl::InfinitePast();
};

}  // namespace varan::core
