// StoredJobViews: the stored jobs that heartbeats ask about, read off the
// heartbeat's thread.
//
// A heartbeat may report the result of a job this core no longer holds in
// memory (a late report: the target was LOST, or the job was taken over
// after a restart), or a command still running whose job was canceled
// while its periphery was away. Answering needs the job as stored. But
// heartbeats (Registry.Heartbeat, a tunnel's heartbeat, Replica.Report)
// are answered on gRPC's callback threads, which must never wait on the
// store: a stalled database would hold them all, and core would answer
// nothing (core/server/blocking_work.h). So the job is read through `run`
// (core: BlockingWork) and the heartbeat is answered without it; the
// periphery reports the result again with its next heartbeat (it keeps it
// until acknowledged), and finds the job read by then.
//
// A job read (restored as a Job, on the reading thread) is kept for
// `fresh_for` and shared by every report that asks in that time: after a
// take-over, thousands of peripheries may report results of the same job.
// Changes made to it in that time (Job::AmendLost) are made on the one
// view, so their events follow each other instead of colliding in the
// store; the targets changed are remembered with it, since the view then
// no longer says what is stored. Then it is read again. At most
// `max_views` are kept or being read; past that, With refuses (ask later).
//
// Thread-safe. The destructor waits for the reads `run` accepted: they
// must be able to run (core ends BlockingWork, which runs what it queued,
// before the dispatcher).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/jobs/job.h"

namespace varan::core {

class StoredJobViews {
 public:
  // Reads the job with an id from the store (Dispatcher::Find).
  using Read =
      std::function<absl::StatusOr<std::shared_ptr<Job>>(const std::string&)>;
  // Runs a read elsewhere; an error when it will not (the read is dropped).
  // Empty: reads on the caller's thread (tests, a dispatcher without one).
  using Runner = std::function<absl::Status(absl::AnyInvocable<void() &&>)>;
  struct Options {
    absl::Duration fresh_for = absl::Seconds(2);
    size_t max_views = 64;
  };
  // The targets (indexes) changed in a view since it was read.
  using Changed = absl::flat_hash_set<int>;
  using Use = absl::FunctionRef<void(
      const absl::StatusOr<std::shared_ptr<Job>>& job, Changed& changed)>;

  StoredJobViews(Read read, Runner run, const Clock* clock, Options options);
  ~StoredJobViews();

  StoredJobViews(const StoredJobViews&) = delete;
  StoredJobViews& operator=(const StoredJobViews&) = delete;

  // Calls `use` with the job with `id` as read at most fresh_for ago (or
  // the read's error: NOT_FOUND naming the id for none), under this
  // object's lock — `use` must not wait — and returns true. Returns false,
  // without calling it, while the job is being read (the read starts now
  // when none is under way), or when it cannot be read now (max_views, or
  // `run` refused): ask again later.
  bool With(const std::string& id, Use use);

  // Views kept or being read (for tests).
  size_t size() const;

 private:
  struct View {
    bool reading = true;
    absl::Time read_at;
    absl::StatusOr<std::shared_ptr<Job>> job = absl::UnknownError("unread");
    Changed changed;
  };
  void Done(const std::string& id, absl::StatusOr<std::shared_ptr<Job>> job);

  const Read read_;
  const Runner run_;
  const Clock* const clock_;
  const Options options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, View> views_ ABSL_GUARDED_BY(mu_);
  // Reads accepted by run_ and not yet done.
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace varan::core
