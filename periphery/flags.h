// The varan-periphery command line: every flag (and, through
// FinishDaemonFlags, its VARAN_* variable and the --config file) bound to a
// PeripheryConfig.
//
// Part of the binary, not the library: only main reads flags (STYLE).
#pragma once

#include "CLI/CLI.hpp"
#include "periphery/periphery_agent.h"

namespace varan::periphery {

// Adds the periphery's flags to `app`, each bound to its field of `config`
// (which must outlive the parse).
void AddPeripheryFlags(CLI::App& app, PeripheryConfig* config);

}  // namespace varan::periphery
