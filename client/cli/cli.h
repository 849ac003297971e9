// Shared pieces of varanctl's subcommands: global options, connecting,
// output formats and exit codes.
//
// Exit codes: 0 success; 1 the job failed or was canceled (or, for one
// target, that target's own exit code); 2 usage, connection or request
// error (the message says which).
#pragma once

#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "client/core_client.h"
#include "google/protobuf/message.h"

namespace varan::cli {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct GlobalOptions {
  std::string core = "localhost:7700";
  std::string token_file;
  double timeout_seconds = 10;
  // Words after the first "--" on the command line (the remote command of
  // `exec`); CLI11 never sees them, so they may look like flags.
  std::vector<std::string> after_dashes;
};

// Adds --core, --token-file and --timeout to `app`.
void AddGlobalOptions(CLI::App& app, GlobalOptions* options);

// Connects using the options; the token comes from --token-file, else
// VARAN_TOKEN_FILE, else VARAN_TOKEN (the token itself).
absl::StatusOr<std::unique_ptr<client::CoreClient>> Connect(
    const GlobalOptions& options);

// Prints "varanctl: error: <message>" to stderr and returns kExitUsage.
int Fail(const absl::Status& status);
int Fail(const std::string& message);

// Validates an -o value: "table" or "json".
CLI::Validator OutputFormat();

// Validates a count that must be at least 1 (e.g. --parallel).
CLI::Validator PositiveCount();

// Prints `message` as indented JSON (proto3 JSON mapping, fields with default
// values included so scripts see every field).
void PrintJson(const google::protobuf::Message& message);

// "3s ago", "2m ago", "5h ago", "4d ago".
std::string Ago(const google::protobuf::Timestamp& t);

// Prints rows as a table with aligned columns (first row is the header).
void PrintTable(const std::vector<std::vector<std::string>>& rows);

// Subcommands: each adds itself to `app` and, when chosen, stores its exit
// code in `*exit_code`.
void SetupPeripheries(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupExec(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupJobs(CLI::App& app, GlobalOptions* global, int* exit_code);

}  // namespace varan::cli
