// Host facts and live statistics, read from the kernel (uname, sysinfo,
// /proc, /etc/os-release, getifaddrs).
//
// Units: bytes for memory, seconds for uptime. Functions are thread-safe.
#pragma once

#include <cstdint>
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

}  // namespace varan::periphery
