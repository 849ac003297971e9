// Host facts and live statistics, read from the kernel (uname, sysinfo,
// /proc, /etc/os-release, getifaddrs).
//
// Units: bytes for memory, seconds for uptime. Functions are thread-safe.
#pragma once

#include "varan/v1/common.pb.h"

namespace varan::periphery {

// Gathers static facts. Fields that cannot be read are left empty.
varan::v1::HostFacts CollectFacts();

// Gathers current statistics (running_executions is left 0).
varan::v1::HostStats CollectStats();

}  // namespace varan::periphery
