// varan-periphery: the agent on each server. Wires flags to objects and
// serves; the work happens in server/, exec/, uplink/ and host/.
#include <unistd.h>

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/address.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/logging.h"
#include "common/secrets.h"
#include "common/server.h"
#include "periphery/host/facts.h"
#include "periphery/server/agent_service.h"
#include "periphery/uplink/uplink.h"
#include "varan/version.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "varan-periphery: error: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  varan::BlockTerminationSignals();
#ifdef NDEBUG
  // Abseil's deadlock detector (on in Debian's build) costs gRPC, which locks
  // through absl::Mutex, a large share of its CPU; debug builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif

  CLI::App app{
      "varan-periphery: the Varan agent. Registers with core, "
      "heartbeats, and runs the commands core sends.",
      "varan-periphery"};
  app.set_version_flag("--version",
                       std::string("varan-periphery ") + varan::kVersion);
  varan::DaemonFlags flags;
  std::string core = "";
  std::string join_token_file;
  std::string name;
  std::vector<std::string> labels;
  std::string advertise;
  std::string state_dir = "/var/lib/varan/periphery";
  uint32_t max_concurrent = 64;
  double kill_grace_seconds = 5;

  app.add_option("--core", core,
                 "Core address to register with, e.g. [fd00::1]:7700, "
                 "10.0.0.1:7700 or core.example:7700 (required)");
  app.add_option("--join-token-file", join_token_file,
                 "File holding the join token core accepts (required)");
  app.add_option("--name", name,
                 "Unique name of this periphery (default: the host name)");
  app.add_option("--label", labels, "Label k=v used by selectors; repeatable")
      ->delimiter(',');
  varan::AddListenFlags(app, &flags, "[::]:7701",
                        "Address to serve the Agent API on; repeatable. "
                        "[::]:PORT serves IPv6 and IPv4");
  app.add_option("--advertise", advertise,
                 "Address core should dial, e.g. [fd00::5]:7701 (default: "
                 "this host's address toward core, and the listen port)");
  app.add_option("--state-dir", state_dir,
                 "Directory for the credential core issues")
      ->capture_default_str();
  app.add_option("--max-concurrent", max_concurrent,
                 "Most commands running at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--kill-grace", kill_grace_seconds,
                 "Seconds between SIGTERM and SIGKILL when a command is "
                 "timed out or canceled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  varan::FinishDaemonFlags(
      app, &flags, "VARAN_CORE",
      "varan-periphery --core [::1]:7700 --join-token-file "
      "/etc/varan/join.token --name web-1 --label env=prod --state-dir "
      "/var/lib/varan/periphery");

  int exit_code = 0;
  if (!varan::ParseDaemonFlags(app, "--config", argc, argv, &exit_code)) {
    return exit_code;
  }
  if (absl::Status s =
          varan::InitLogging("periphery", flags.log_level, flags.log_format);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (core.empty()) return Fail("--core is required (e.g. --core [::1]:7700)");
  if (join_token_file.empty()) {
    return Fail("--join-token-file is required");
  }
  auto core_addr = varan::ParseDialAddress(core, 7700);
  if (!core_addr.ok())
    return Fail(absl::StrCat("--core: ", core_addr.status().message()));
  std::map<std::string, std::string> label_map;
  for (const auto& l : labels) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail(absl::StrCat("--label \"", l, "\": expected key=value"));
    }
    label_map[l.substr(0, eq)] = l.substr(eq + 1);
  }
  // Facts are gathered once; stats are sampled by the uplink per heartbeat.
  varan::periphery::HostSnapshot host(varan::periphery::CollectFacts());
  host.Sample();
  if (name.empty()) name = host.facts().hostname();
  // Find out before touching any file whether the listeners can be created.
  auto listen_addrs = varan::PrepareListeners(flags.listen);
  if (!listen_addrs.ok())
    return Fail(std::string(listen_addrs.status().message()));
  auto join_token = varan::ReadSecretFile(join_token_file);
  if (!join_token.ok()) {
    return Fail(absl::StrCat("join token: ", join_token.status().message()));
  }
  if (absl::Status s = varan::EnsurePrivateDir(state_dir); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  varan::periphery::CredentialHolder credential;
  varan::periphery::AgentOptions agent_options;
  agent_options.max_concurrent = max_concurrent;
  agent_options.execution.kill_grace = absl::Seconds(kill_grace_seconds);
  agent_options.execution.default_working_dir = state_dir;
  varan::periphery::AgentService agent(&credential, &host, agent_options);

  auto server = varan::StartServer(*listen_addrs, {&agent});
  if (!server.ok()) return Fail(std::string(server.status().message()));
  varan::LogListening("varan-periphery", *server,
                      "callers are authenticated by credential, but traffic "
                      "is not encrypted");

  auto advertised = varan::periphery::AdvertiseAddress(
      advertise, server->addresses.front(), *core_addr);
  if (!advertised.ok()) return Fail(std::string(advertised.status().message()));

  varan::periphery::UplinkOptions uplink_options;
  uplink_options.core = *core_addr;
  uplink_options.join_token = *join_token;
  uplink_options.name = name;
  uplink_options.labels = label_map;
  uplink_options.advertise_address = *advertised;
  uplink_options.state_dir = state_dir;
  varan::periphery::Uplink uplink(uplink_options, &credential, &host,
                                  [&agent] { return agent.running(); });
  uplink.Start();

  int sig = varan::WaitForTerminationSignal();
  spdlog::info("received signal {}; shutting down", sig);
  uplink.Stop();
  // Running commands are stopped (SIGTERM, then SIGKILL after the grace)
  // so nothing is left behind.
  if (!agent.CancelAllAndWait(absl::Seconds(kill_grace_seconds) +
                              absl::Seconds(2))) {
    spdlog::warn("some commands did not stop in time");
  }
  server->server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  server->server->Wait();
  spdlog::info("stopped");
  return 0;
}
