// Validation of CommandSpec, shared by core (at dispatch, so a bad spec is
// refused before anything is sent) and the periphery (before running it).
#pragma once

#include "absl/status/status.h"
#include "varan/v1/common.pb.h"

namespace varan {

// INVALID_ARGUMENT naming the problem: neither or both of argv and shell,
// empty argv[0], NUL bytes, bad environment names, negative timeout.
absl::Status ValidateCommandSpec(const varan::v1::CommandSpec& spec);

}  // namespace varan
