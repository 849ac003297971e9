// Rollout: the part of a running job that decides which targets start
// when — the targets as resolved, the command, the limits from the job's
// options (max_parallel, stop_after_failures) and the queue of targets not
// sent yet.
//
// Ownership: the Dispatcher keeps one per running job (dispatcher.h) and
// shares the Job with it. Not thread-safe: the Dispatcher only touches it
// under its own mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "core/fleet/registry.h"
#include "core/jobs/job.h"
#include "varan/v1/common.pb.h"

namespace varan::core {

struct Rollout {
  std::shared_ptr<Job> job;
  std::vector<DialTarget> targets;
  varan::v1::CommandSpec spec;
  uint32_t max_parallel = 0;
  uint32_t stop_after_failures = 0;
  // Committed to the store: targets may be sent.
  bool committed = false;
  // Indexes of targets not sent yet, in name order.
  std::deque<size_t> pending;
  // Targets sent whose run has not ended.
  size_t running = 0;

  // When `failures` reached stop_after_failures (if set): empties the queue
  // and returns the targets that are now not to start (to be SKIPPED).
  std::vector<size_t> TakeStopped(size_t failures) {
    std::vector<size_t> stopped;
    if (stop_after_failures > 0 && failures >= stop_after_failures) {
      stopped.assign(pending.begin(), pending.end());
      pending.clear();
    }
    return stopped;
  }

  // Whether another queued target may start now (max_parallel, 0 = no
  // limit).
  bool MayStartNext() const {
    return !pending.empty() && (max_parallel == 0 || running < max_parallel);
  }
};

}  // namespace varan::core
