// Daemon configuration from three sources, in order of precedence:
// command-line flags, then VARAN_* environment variables, then a TOML file.
//
// Each long flag `--some-flag` has environment variable VARAN_SOME_FLAG and
// TOML key `some-flag` (or `some_flag`). Repeatable flags take a TOML array.
// Unknown TOML keys are errors, so a typo never goes unnoticed.
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace varan {

// The environment variable for a long option name: "data-dir" ->
// "VARAN_DATA_DIR".
std::string EnvVarFor(const std::string& long_name);

// Gives every long option of `app` (except --help, --version and --config)
// its VARAN_* environment variable. Call after adding options, before parse.
void BindEnvironment(CLI::App& app);

// Applies the TOML file at `path` to the options of `app` that neither a
// flag nor an environment variable set. Call after app.parse(). Errors
// (INVALID_ARGUMENT / NOT_FOUND) name the file and the offending key.
absl::Status ApplyConfigFile(CLI::App& app, const std::string& path);

// Parses argv for a daemon: flags and environment via CLI11, then the file
// named by --config. On --help/--version prints and returns exit code 0 in
// `*exit_code`; on error prints one line "NAME: error: ..." to stderr and
// sets `*exit_code` to 2. Returns true when the program should go on.
bool ParseDaemonFlags(CLI::App& app, const std::string& config_path_option,
                      int argc, char** argv, int* exit_code);

}  // namespace varan
