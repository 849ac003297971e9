// Host facts and live statistics, read from the kernel (uname, sysinfo,
// /proc, /etc/os-release, getifaddrs).
//
// Units: bytes for memory, seconds for uptime. Functions are thread-safe.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "varan/v1/common.pb.h"

namespace varan::periphery {

// Gathers static facts. Fields that cannot be read are left empty.
varan::v1::HostFacts CollectFacts();

// Mounted block-device filesystems from /proc/self/mounts with their sizes
// (statvfs), one per mount point, sorted by mount point.
std::vector<varan::v1::Filesystem> ListFilesystems();

// Gathers live statistics. CPU use is computed from the difference between
// this sample of /proc/stat and the previous one, so each caller that wants
// its own interval keeps its own collector. Thread-safe.
class StatsCollector {
 public:
  // running_executions is left 0 (the caller knows it).
  varan::v1::HostStats Collect();

 private:
  absl::Mutex mu_;
  uint64_t prev_busy_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t prev_total_ ABSL_GUARDED_BY(mu_) = 0;
};

// The host's facts (gathered once, at start) and its latest stats sample.
// The uplink samples on its own thread at every heartbeat; the Agent service
// answers GetFacts and GetStats from here, so no gRPC reaction ever reads
// /proc or calls statvfs (which can hang on a dead network mount).
// Thread-safe.
class HostSnapshot {
 public:
  explicit HostSnapshot(varan::v1::HostFacts facts)
      : facts_(std::move(facts)) {}

  const varan::v1::HostFacts& facts() const { return facts_; }

  // Collects stats now (blocking I/O: call from a plain thread), keeps them
  // as the latest sample and returns them.
  varan::v1::HostStats Sample();

  // The latest sample (empty before the first Sample()).
  varan::v1::HostStats Latest() const;

 private:
  const varan::v1::HostFacts facts_;
  StatsCollector collector_;
  mutable absl::Mutex mu_;
  varan::v1::HostStats latest_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::periphery
