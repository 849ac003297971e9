// StepDown: what a core replica does when it is cut off from the database
// while the others reach it (ClusterOptions::on_lapsed). Its membership
// has lapsed, so the others take it for dead, fence it and take its jobs
// over; but its peripheries stay connected to it, and count as offline for
// everyone else, until it reaches the database again (and finds the fence).
// So once another replica has reached the database for as long as the
// others wait after an outage of their own before fencing (`grace`, the
// membership ttl), this one steps down: core exits as a fenced one does,
// and its peripheries and clients move to the others.
//
// When the database is down for every replica, none reaches it, and none
// steps down; a replica merely slower than the others to reconnect after
// an outage is not taken for cut off before `grace` has passed.
//
// Thread-safe (one mutex; Check may block on the probe for as long as the
// probe takes).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/cluster/cluster.h"
#include "grpcpp/channel.h"

namespace varan::core {

class StepDown {
 public:
  // Whether a replica reaches the database (ServesDatabase).
  using Probe = std::function<bool(const ReplicaInfo&)>;

  explicit StepDown(absl::Duration grace) : grace_(grace) {}

  // Called with the other replicas each time a refresh fails after this
  // replica's membership lapsed (`renewed`: when it last renewed, which
  // tells one lapse from the next; `now`: when). Returns the replica that
  // has reached the database, by `probe`, for `grace` since this replica
  // first saw one do so during this lapse — this replica is then to step
  // down — or none. A probe where none does starts the wait again.
  std::optional<ReplicaInfo> Check(const std::vector<ReplicaInfo>& others,
                                   absl::Time renewed, absl::Time now,
                                   const Probe& probe);

 private:
  const absl::Duration grace_;
  absl::Mutex mu_;
  // When a probe first found another replica reaching the database, with
  // every probe since finding one (InfiniteFuture: the last found none).
  absl::Time others_reach_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // The lapse the checks are of (its `renewed`).
  absl::Time lapse_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Runs StepDown::Check off the cluster's thread (whose refreshes Sync
// waits for) and off core's refresh thread (whose store reads wait for the
// database): Note hands it the others from ClusterOptions::on_lapsed, and a
// thread of its own asks them (ServesDatabase, through `channel_to`) and
// steps down when Check says so. The destructor stops the thread.
class CutOffWatch {
 public:
  using ChannelTo =
      std::function<std::shared_ptr<grpc::Channel>(const std::string&)>;
  CutOffWatch(absl::Duration grace, ChannelTo channel_to);
  ~CutOffWatch();

  // From on_lapsed: the others as the cluster last saw them, and when this
  // replica last renewed.
  void Note(std::vector<ReplicaInfo> others, absl::Time renewed);

 private:
  void Run();

  StepDown step_down_;
  const ChannelTo channel_to_;
  absl::Mutex mu_;
  std::optional<std::vector<ReplicaInfo>> noted_ ABSL_GUARDED_BY(mu_);
  absl::Time noted_renewed_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time announced_ = absl::InfinitePast();  // the lapse logged (thread)
  std::thread thread_;
};

// A replica another fenced (ClusterOptions::on_fenced) stops at once, as a
// crash would: a graceful shutdown would cancel the commands its jobs run,
// which the replica that took them over waits on, and write what it no
// longer may. Its peripheries and clients move to the other replicas; a
// supervisor (Kubernetes, systemd's Restart=) starts it again as a new
// replica. Exits with kExitFenced.
[[noreturn]] void StopFenced();

// Logs why this replica steps down (`reaching` reaches the database while
// it cannot) and exits at once with kExitFenced, as a fenced replica does.
[[noreturn]] void StepDownNow(const ReplicaInfo& reaching);

// Whether the core replica at the other end of `channel` serves the health
// service "database" (kDatabaseService: its cluster refreshes reach the
// database), asked within `timeout`.
bool ServesDatabase(const std::shared_ptr<grpc::Channel>& channel,
                    absl::Duration timeout);

}  // namespace varan::core
