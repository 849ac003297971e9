// Process-wide logging set-up for the daemons and varanctl.
//
// Logs go to stderr through spdlog, as text or as one JSON object per line
// ({"time","level","logger","msg"}), timestamps in UTC. Call InitLogging once
// from main before starting threads; spdlog loggers are thread-safe after.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace varan {

// `level`: trace|debug|info|warn|error|off. `format`: text|json. `name`
// appears as the logger name. INVALID_ARGUMENT names a bad value.
absl::Status InitLogging(absl::string_view name, absl::string_view level,
                         absl::string_view format);

}  // namespace varan
