// Varan from C++: list the peripheries, then run a command on them.
//
// Shows the C++ client library, varan::client::CoreClient
// (client/core_client.h): ListPeripheries (a unary call with a deadline) and
// Exec (dispatch, then a callback per JobEvent until the job finishes). The
// library sends the token as `authorization: Bearer <token>`, over TLS
// verified against core's cluster CA (core serves TLS by default): its
// certificate (--ca-file) or, as varanctl does, its pin (--ca-hash, the part
// of the join token after the dot). Exits 0 only if the job SUCCEEDED.
//
// Built with the project as `varan_client_example` (not installed):
//
//   export VARAN_CORE=localhost:7700 VARAN_TOKEN_FILE=.varan/core/admin.token
//   export VARAN_CA_FILE=.varan/core/pki/ca.crt
//   build/bin/varan_client_example --selector env=test -- echo hello
//
// --core, --token-file, --ca-file and --ca-hash default to $VARAN_CORE,
// $VARAN_TOKEN_FILE, $VARAN_CA_FILE and $VARAN_CA_HASH.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "client/core_client.h"

namespace {

struct Options {
  std::string core;
  std::string token_file;
  std::string selector;
  std::string command;
  std::string ca_file;
  std::string ca_hash;
  std::string server_name;
  bool insecure_plaintext = false;
};

constexpr char kUsage[] =
    "usage: varan_client_example [--core ADDR] [--token-file PATH]\n"
    "           [--ca-file PATH | --ca-hash sha256:HEX | --insecure-plaintext]"
    "\n           [--server-name NAME] [--selector SEL] [--] COMMAND...\n";

std::string EnvOr(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

// Returns false (after printing why) when the command line is unusable.
bool ParseArgs(int argc, char** argv, Options* options) {
  options->core = EnvOr("VARAN_CORE", "");
  options->token_file = EnvOr("VARAN_TOKEN_FILE", "");
  options->ca_file = EnvOr("VARAN_CA_FILE", "");
  options->ca_hash = EnvOr("VARAN_CA_HASH", "");
  std::vector<std::string> command;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    bool ok = true;
    if (arg == "--core") {
      ok = value(&options->core);
    } else if (arg == "--token-file") {
      ok = value(&options->token_file);
    } else if (arg == "--selector") {
      ok = value(&options->selector);
    } else if (arg == "--ca-file") {
      ok = value(&options->ca_file);
    } else if (arg == "--ca-hash") {
      ok = value(&options->ca_hash);
    } else if (arg == "--server-name") {
      ok = value(&options->server_name);
    } else if (arg == "--insecure-plaintext") {
      options->insecure_plaintext = true;
    } else if (arg == "--") {
      command.insert(command.end(), argv + i + 1, argv + argc);
      break;
    } else if (arg.starts_with("--")) {
      ok = false;
    } else {
      command.push_back(arg);
    }
    if (!ok) {
      std::cerr << "error: bad option " << arg << "\n" << kUsage;
      return false;
    }
  }
  if (options->core.empty() || options->token_file.empty() || command.empty()) {
    std::cerr << "error: --core, --token-file (or $VARAN_CORE and "
                 "$VARAN_TOKEN_FILE) and a command are required\n"
              << kUsage;
    return false;
  }
  const bool verified = !options->ca_file.empty() || !options->ca_hash.empty();
  if (verified == options->insecure_plaintext) {
    std::cerr << (verified ? "error: --insecure-plaintext excludes --ca-file "
                             "and --ca-hash\n"
                           : "error: core serves TLS: pass --ca-file <core "
                             "data dir>/pki/ca.crt or --ca-hash (or "
                             "$VARAN_CA_FILE, $VARAN_CA_HASH), or "
                             "--insecure-plaintext for a core started with "
                             "--insecure-plaintext\n")
              << kUsage;
    return false;
  }
  options->command = absl::StrJoin(command, " ");
  return true;
}

void PrintPeripheries(const std::vector<varan::v1::Periphery>& peripheries) {
  std::cout << peripheries.size() << " peripheries:\n";
  for (const auto& p : peripheries) {
    std::vector<std::string> labels;
    // A protobuf map has no order; sort for stable output.
    for (const auto& [key, value] : p.labels()) {
      labels.push_back(key + "=" + value);
    }
    std::sort(labels.begin(), labels.end());
    std::cout << "  " << p.name() << "\t"
              << varan::v1::PeripheryState_Name(p.state()) << "\t"
              << absl::StrJoin(labels, ",") << "\n";
  }
}

// Prints one event of the job as it arrives; sets `*succeeded` at its end.
void PrintEvent(const varan::v1::JobEvent& event, bool* succeeded) {
  switch (event.event_case()) {
    case varan::v1::JobEvent::kAccepted:
      std::cout << "job " << event.job_id() << " on "
                << absl::StrJoin(event.accepted().targets(), ", ") << "\n";
      break;
    case varan::v1::JobEvent::kOutput: {
      std::ostream& out =
          event.output().stream() == varan::v1::OUTPUT_STREAM_STDERR
              ? std::cerr
              : std::cout;
      out << event.output().data() << std::flush;
      break;
    }
    case varan::v1::JobEvent::kFinished: {
      const auto& f = event.finished();
      std::cout << event.target() << ": "
                << varan::v1::TargetState_Name(f.state()) << " (exit code "
                << f.exit_status().code() << ")"
                << (f.error().empty() ? "" : " " + f.error()) << "\n";
      break;
    }
    case varan::v1::JobEvent::kOutputGap:
      // This watcher fell behind: say what it missed, never a silent hole.
      for (const auto& m : event.output_gap().missed()) {
        std::cerr << "[" << m.target() << ": " << m.bytes()
                  << " bytes of output missed]\n";
      }
      break;
    case varan::v1::JobEvent::kJobFinished:
      std::cout << "job " << event.job_id() << ": "
                << varan::v1::JobState_Name(event.job_finished().state())
                << "\n";
      *succeeded =
          event.job_finished().state() == varan::v1::JOB_STATE_SUCCEEDED;
      break;
    case varan::v1::JobEvent::kDispatched:
    case varan::v1::JobEvent::kStarted:
    case varan::v1::JobEvent::kCancelRequested:
    case varan::v1::JobEvent::EVENT_NOT_SET:
      // Nothing to show: the output and the results tell the story. (An
      // event newer than this program reads as EVENT_NOT_SET.)
      break;
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!ParseArgs(argc, argv, &options)) return 2;

  std::ifstream token_in(options.token_file);
  if (!token_in) {
    std::cerr << "error: cannot read " << options.token_file << "\n";
    return 2;
  }
  std::stringstream token;
  token << token_in.rdbuf();

  // All empty: plaintext. (.cert and .key add a client certificate, for a
  // core that requires one.)
  varan::ClientTlsFiles tls;
  tls.ca = options.ca_file;
  tls.ca_pin = options.ca_hash;
  tls.server_name = options.server_name;
  auto client = varan::client::CoreClient::Create(
      {.address = options.core,
       .token = std::string(absl::StripAsciiWhitespace(token.str())),
       .timeout = absl::Seconds(10),
       .tls = tls});
  if (!client.ok()) {
    std::cerr << "error: " << client.status() << "\n";
    return 2;
  }

  varan::v1::Target target;
  target.set_selector(options.selector);
  auto peripheries = (*client)->ListPeripheries(target);
  if (!peripheries.ok()) {
    std::cerr << "error: " << peripheries.status() << "\n";
    return 2;
  }
  PrintPeripheries(*peripheries);

  varan::v1::DispatchRequest request;
  *request.mutable_target() = target;
  request.mutable_spec()->set_shell(options.command);
  bool succeeded = false;
  absl::Status status = (*client)->Exec(
      request,
      [&](const varan::v1::JobEvent& e) { PrintEvent(e, &succeeded); });
  if (!status.ok()) {
    std::cerr << "error: " << status << "\n";
    return 2;
  }
  return succeeded ? 0 : 1;
}
