// Shared pieces of varanctl's subcommands: global options, connecting,
// contexts, output formats and exit codes.
//
// Exit codes: 0 success; 1 the job failed or was canceled (or, for one
// target, that target's own exit code; never because of output a watcher
// missed or core did not store); 2 usage, connection or request error (the
// message says which). `jobs logs`: 0 once the stored output was written,
// else 2.
#pragma once

#include <iostream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/core_client.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"

namespace varan::cli {

inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

inline constexpr char kDefaultCore[] = "localhost:7700";

// What main() learns from the command line, the environment and the
// terminal; subcommands read only this (never flags or the environment).
struct GlobalOptions {
  // --core or VARAN_CORE; empty: the current context's, else kDefaultCore.
  std::string core;
  // --token-file or VARAN_TOKEN_FILE; empty: VARAN_TOKEN, else the current
  // context's token file.
  std::string token_file;
  // VARAN_TOKEN (the token itself).
  std::string token_env;
  // --tls-ca, --tls-cert, --tls-key, --tls-server-name or VARAN_TLS_CA,
  // VARAN_TLS_CERT, VARAN_TLS_KEY, VARAN_TLS_SERVER_NAME; each empty one
  // comes from the current context.
  // Also --ca-hash / VARAN_CA_HASH (tls.ca_pin) and --insecure-skip-verify
  // (tls.skip_verify).
  ClientTlsFiles tls;
  // --insecure-plaintext / VARAN_INSECURE_PLAINTEXT: core serves plaintext.
  bool insecure_plaintext = false;
  double timeout_seconds = 10;
  // The contexts file: VARAN_CONFIG_FILE, else
  // $XDG_CONFIG_HOME/varan/config.toml, else ~/.config/varan/config.toml.
  std::string config_file;
  // Whether stdout / stderr are terminals (colours, the progress line);
  // colours also need NO_COLOR unset.
  bool color_stdout = false;
  bool color_stderr = false;
  bool progress = false;
  // Words after the first "--" on the command line (the remote command of
  // `exec`); CLI11 never sees them, so they may look like flags.
  std::vector<std::string> after_dashes;
};

// Adds --core, --token-file, --tls-*, and --timeout to `app`.
void AddGlobalOptions(CLI::App& app, GlobalOptions* options);

// Connects using the options. Precedence: flags, then the environment
// (VARAN_CORE, VARAN_TOKEN_FILE, VARAN_TOKEN, VARAN_TLS_*), then the
// current context of the config file, then kDefaultCore (plaintext).
// FAILED_PRECONDITION without a token; INVALID_ARGUMENT for a bad address or
// config file.
absl::StatusOr<std::unique_ptr<client::CoreClient>> Connect(
    const GlobalOptions& options);

// How exec and jobs watch follow a job whose stream broke (core restarting):
// for up to a minute, saying so once on stderr ("varanctl: lost the stream
// from core at ADDR; following job ID again from event N").
client::FollowOptions FollowOptionsFor(const client::CoreClient& client);

// Prints "varanctl: error: <message>" to stderr and returns kExitUsage. An
// UNAUTHENTICATED status gets a hint about where the token comes from.
int Fail(const absl::Status& status);
int Fail(const std::string& message);

// Validates an -o value: "table", "wide", "json" or "yaml".
CLI::Validator OutputFormat();
inline constexpr char kOutputHelp[] = "table, wide, json or yaml";

// For -o json and yaml: prints `message` (proto3 JSON mapping, original
// field names, fields with default values included so scripts see every
// field) in that format to `out` and returns true;
// for table and wide returns false and prints nothing.
bool PrintStructured(const google::protobuf::Message& message,
                     const std::string& format, std::ostream& out = std::cout);

// Prints a protobuf Value tree (e.g. from MessageToValue) as JSON or YAML.
void PrintValue(const google::protobuf::Value& value,
                const std::string& format);

// `message` in the proto3 JSON mapping (original field names, defaults
// included, timestamps RFC 3339) as a Value tree.
absl::StatusOr<google::protobuf::Value> MessageToValue(
    const google::protobuf::Message& message);

// `value` as a YAML document (block style; strings quoted when they would
// otherwise read as something else).
std::string ToYaml(const google::protobuf::Value& value);

// A positive duration such as "90s", "30m", "1h", "2d" or "1h30m".
// INVALID_ARGUMENT naming the text otherwise.
absl::StatusOr<absl::Duration> ParseAge(std::string text);
// Validates such a duration (e.g. --since, --ttl).
CLI::Validator AgeValidator();

// Validates a count that must be at least 1 (e.g. --parallel).
CLI::Validator PositiveCount();

// "online", "offline", "removed", "unknown".
std::string StateName(varan::v1::PeripheryState s);
// "dial", "tunnel", "unknown".
std::string ConnectionName(varan::v1::Connection c);
// "env=prod,tier=web" (sorted), or "<none>".
std::string LabelsText(
    const google::protobuf::Map<std::string, std::string>& labels);

// "3s ago", "2m ago", "5h ago", "4d ago" (before `now`; a time after it is
// "0s ago"), or "never" for an unset time.
std::string Ago(const google::protobuf::Timestamp& t,
                absl::Time now = absl::Now());

// Prints rows as a table with aligned columns (first row is the header),
// two spaces between columns, the last column unpadded.
void PrintTable(const std::vector<std::vector<std::string>>& rows,
                std::ostream& out = std::cout);

// The rows (header first) of `peripheries list` -o table, or -o wide when
// `wide`; times relative to `now`.
std::vector<std::vector<std::string>> PeripheryRows(
    const std::vector<varan::v1::Periphery>& peripheries, bool wide,
    absl::Time now = absl::Now());

// The rows (header first) of `jobs list` -o table, or -o wide when `wide`;
// times relative to `now`.
std::vector<std::vector<std::string>> JobRows(
    const google::protobuf::RepeatedPtrField<varan::v1::Job>& jobs, bool wide,
    absl::Time now = absl::Now());

// `jobs get` (with `outputs`: the sizes of each target's streams and the
// previews the job carries) and `jobs cancel` in table format: the job's
// fields, then a table of its targets; times relative to `now`.
void PrintJob(const varan::v1::Job& job, bool outputs, std::ostream& out,
              absl::Time now);

// Bytes of each stream `jobs get` previews unless --preview says otherwise.
inline constexpr uint32_t kDefaultPreviewBytes = 1024;

// The request of `peripheries label NAME CHANGES...`: kubectl-style
// changes, "key=value" sets (the value may be empty), "key-" removes.
// INVALID_ARGUMENT, quoting the change, for an empty key, a change that is
// neither, a key both set and removed, or set twice to different values.
absl::StatusOr<varan::v1::UpdateLabelsRequest> ParseLabelChanges(
    const std::string& name, const std::vector<std::string>& changes);

// "running", "succeeded", "failed", "canceled", "unknown".
std::string JobStateName(varan::v1::JobState s);

// Subcommands: each adds itself to `app` and, when chosen, stores its exit
// code in `*exit_code`.
void SetupPeripheries(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupExec(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupJobs(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupVersion(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupConfig(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupTokens(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupJoinTokens(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupCa(CLI::App& app, GlobalOptions* global, int* exit_code);
void SetupCerts(CLI::App& app, GlobalOptions* global, int* exit_code);
// `completion bash`, generated from `app`'s tree when run.
void SetupCompletion(CLI::App& app, int* exit_code);

}  // namespace varan::cli
