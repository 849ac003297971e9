// Job: one dispatched command, its targets' states and its event log.
//
// The log holds every JobEvent with sequence numbers 0, 1, 2, ... without
// gaps; watchers read it from any sequence and are told (through a callback)
// when more arrives, so a watcher that reconnects with the next sequence it
// expects misses nothing. Output is captured per target and stream up to the
// job's capture limit; bytes past the limit are counted (in the target's
// record: *_uncaptured_bytes), not kept, and not streamed to watchers.
//
// Thread-safe. Watcher callbacks run on the thread that appended the event,
// without the job's lock held; RemoveWatcher waits for a running callback,
// so after it returns the callback's captures may be destroyed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "varan/v1/core.pb.h"
#include "varan/v1/periphery.pb.h"

namespace varan::core {

class Job {
 public:
  // `record` holds id, target, spec, options, created_by and one queued
  // JobTarget per matched periphery. Appends the `accepted` event; a job
  // without targets finishes at once.
  Job(varan::v1::Job record, uint64_t capture_limit, const Clock* clock);

  const std::string& id() const { return id_; }
  size_t target_count() const { return target_count_; }

  // The job record; without captured output unless `with_output`.
  varan::v1::Job Snapshot(bool with_output) const;
  bool finished() const;

  // --- Updates from the links (any thread). --------------------------------
  void MarkDispatched(size_t target);
  // An event from the periphery's Execute stream.
  void OnExecuteEvent(size_t target, const varan::v1::ExecuteEvent& event);
  // The Execute call ended. If the target is not final yet, it becomes
  // FAILED (never started: `status` says why) or LOST (was running).
  void OnExecuteDone(size_t target, const absl::Status& status);
  // Finishes a target that was never sent (e.g. periphery offline).
  void FailTarget(size_t target, const std::string& error);

  // --- Watching. --------------------------------------------------------
  enum class Read { kEvent, kWait, kEnd };
  // kEvent: `*out` is the event with sequence `seq`. kEnd: the job finished
  // and `seq` is past its last event. kWait: not yet recorded.
  Read EventAt(uint64_t seq, varan::v1::JobEvent* out) const;
  // Registers `callback`, run after each new event. Returns a handle.
  uint64_t AddWatcher(std::function<void()> callback);
  void RemoveWatcher(uint64_t handle);

 private:
  struct Capture {
    std::string data;
    uint64_t uncaptured = 0;
  };

  // Appends an event (filling sequence, time, job id) and then, without mu_,
  // runs the watchers.
  void Append(varan::v1::JobEvent event);
  // Sets a target final and appends `finished` (and `job_finished` when it
  // was the last). Requires mu_; returns the events to append.
  void FinishTargetLocked(size_t target, varan::v1::TargetState state,
                          const varan::v1::ExitStatus* exit,
                          const std::string& error,
                          std::vector<varan::v1::JobEvent>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AppendLocked(varan::v1::JobEvent event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyWatchers();

  const std::string id_;
  const size_t target_count_;
  const uint64_t capture_limit_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  varan::v1::Job record_ ABSL_GUARDED_BY(mu_);
  // [target][0 = stdout, 1 = stderr]
  std::vector<std::array<Capture, 2>> captures_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> started_ ABSL_GUARDED_BY(mu_);
  size_t final_targets_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<varan::v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);

  // Held while callbacks run (see the class comment).
  absl::Mutex watchers_mu_;
  std::map<uint64_t, std::function<void()>> watchers_
      ABSL_GUARDED_BY(watchers_mu_);
  uint64_t next_watcher_ ABSL_GUARDED_BY(watchers_mu_) = 0;
};

// True for target states that are final.
bool IsFinal(varan::v1::TargetState state);

}  // namespace varan::core
