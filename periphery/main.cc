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
#include "common/clock.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/keepalive.h"
#include "common/log.h"
#include "common/logging.h"
#include "common/peer_guard.h"
#include "common/secrets.h"
#include "common/server.h"
#include "periphery/exec/executor.h"
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
  bool tunnel = false;
  bool no_listen = false;
  double keepalive_time_seconds = 30;
  double keepalive_timeout_seconds = 10;
  double reconnect_max_seconds = 10;
  uint64_t held_results = 1000;
  double held_results_hours = 24;
  uint64_t output_tail = 64 * 1024;

  app.add_option("--core", core,
                 "Core address to register with, e.g. [fd00::1]:7700, "
                 "10.0.0.1:7700 or core.example:7700 (required)");
  app.add_option("--join-token-file", join_token_file,
                 "File holding the join token core accepts; needed until "
                 "the periphery has registered (then its own credential in "
                 "--state-dir is used)");
  app.add_option("--name", name,
                 "Unique name of this periphery (default: the host name)");
  app.add_option("--label", labels, "Label k=v used by selectors; repeatable")
      ->delimiter(',');
  varan::AddListenFlags(app, &flags, "[::]:7701",
                        "Address to serve the Agent API on; repeatable. "
                        "[::]:PORT serves IPv6 and IPv4");
  app.add_flag("--no-listen", no_listen,
               "Serve no port at all (needs --tunnel): core reaches this "
               "periphery only through its tunnel");
  app.add_flag("--tunnel", tunnel,
               "Open a tunnel to core (one long-lived stream carrying "
               "registration, heartbeats and commands) instead of waiting "
               "to be dialed, for servers core cannot connect to");
  app.add_option("--advertise", advertise,
                 "Address core should dial, e.g. [fd00::5]:7701 (default: "
                 "this host's address toward core, and the listen port)");
  app.add_option("--state-dir", state_dir,
                 "Directory for the credential core issues")
      ->capture_default_str();
  varan::AddGuardFlags(app, &flags);
  varan::AddServerTlsFlags(app, &flags);
  varan::ClientTlsFiles core_tls;
  varan::AddClientTlsFlags(app, &core_tls, "core-", "core");
  app.add_option("--max-concurrent", max_concurrent,
                 "Most commands running at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--kill-grace", kill_grace_seconds,
                 "Seconds between SIGTERM and SIGKILL when a command is "
                 "timed out or canceled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--keepalive-time", keepalive_time_seconds,
                 "Seconds without traffic after which the connection to core "
                 "(and any to this periphery) is pinged")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--keepalive-timeout", keepalive_timeout_seconds,
                 "Seconds a ping may go unanswered before the connection is "
                 "dropped as dead (and reconnected)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--reconnect-max-backoff", reconnect_max_seconds,
                 "Longest wait, in seconds, between attempts to reach core "
                 "(waits start at 0.2 s, double, and are jittered)")
      ->capture_default_str()
      ->check(CLI::Range(0.2, 3600.0));
  app.add_option("--held-results", held_results,
                 "Results of core's commands kept until core acknowledges "
                 "them (for commands that finish while core is out of "
                 "reach); the oldest beyond this are dropped")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  app.add_option("--held-results-max-age", held_results_hours,
                 "Hours an unacknowledged result is kept at most")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 8760.0));
  app.add_option("--output-tail", output_tail,
                 "Bytes of each output stream of core's commands kept with a "
                 "held result")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{0}, uint64_t{16} * 1024 * 1024));
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
  if (no_listen && !tunnel) {
    return Fail(
        "--no-listen needs --tunnel: without a port or a tunnel core could "
        "never reach this periphery");
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
  absl::StatusOr<std::vector<varan::HostPort>> listen_addrs =
      no_listen ? std::vector<varan::HostPort>()
                : varan::PrepareListeners(flags.listen);
  if (!listen_addrs.ok())
    return Fail(std::string(listen_addrs.status().message()));
  auto guard_options = varan::GuardOptions(flags);
  if (!guard_options.ok()) {
    return Fail(std::string(guard_options.status().message()));
  }
  if (absl::Status s = varan::EnsurePrivateDir(state_dir); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  // The join token is needed only for the first registration: once core
  // issued a credential (kept in --state-dir) the file may be deleted.
  std::string join_token;
  if (!join_token_file.empty()) {
    auto token = varan::ReadSecretFile(join_token_file);
    if (!token.ok()) {
      return Fail(absl::StrCat("join token: ", token.status().message()));
    }
    if (std::string w = varan::LoosePermissionsWarning(join_token_file);
        !w.empty()) {
      spdlog::warn("{}", w);
    }
    join_token = *std::move(token);
  } else if (!varan::periphery::HasSavedRegistration(state_dir)) {
    return Fail(
        absl::StrCat("--join-token-file is required: ", state_dir,
                     " holds no credential from an earlier registration"));
  }
  varan::PeerGuard guard(varan::RealClock::Get(), *std::move(guard_options));
  // Certificates are checked now, staged in <state-dir>/tls and re-read on
  // change and on SIGHUP (common/tls.h).
  auto server_tls =
      no_listen ? absl::StatusOr<std::unique_ptr<varan::TlsFiles>>(
                      std::unique_ptr<varan::TlsFiles>())
                : varan::PrepareServerTls(flags, state_dir + "/tls/server");
  if (!server_tls.ok()) return Fail(std::string(server_tls.status().message()));
  auto core_tls_files =
      varan::PrepareClientTls(core_tls, "core-", state_dir + "/tls/core-client",
                              flags.tls_watch_seconds);
  if (!core_tls_files.ok()) {
    return Fail(std::string(core_tls_files.status().message()));
  }

  varan::periphery::CredentialHolder credential;
  varan::periphery::ExecutorOptions executor_options;
  executor_options.max_concurrent = max_concurrent;
  executor_options.execution.kill_grace = absl::Seconds(kill_grace_seconds);
  executor_options.execution.default_working_dir = state_dir;
  executor_options.execution.tail_bytes = output_tail;
  executor_options.max_held = held_results;
  executor_options.hold_for =
      absl::Seconds(static_cast<int64_t>(held_results_hours * 3600));
  varan::periphery::Executor executor(executor_options);
  varan::periphery::AgentService agent(&credential, &host, &executor, &guard);
  const varan::Keepalive keepalive{absl::Seconds(keepalive_time_seconds),
                                   absl::Seconds(keepalive_timeout_seconds)};

  varan::RunningServer server;
  std::string advertised;
  if (!no_listen) {
    auto started = varan::StartServer(
        *listen_addrs, {&agent}, varan::ServerKeepaliveArgs(keepalive),
        varan::MakeServerCredentials(server_tls->get(),
                                     !flags.tls.client_ca.empty()));
    if (!started.ok()) return Fail(std::string(started.status().message()));
    server = *std::move(started);
    varan::LogListening("varan-periphery", server,
                        "callers are authenticated by credential, but "
                        "traffic is not encrypted",
                        flags.tls);
    auto address = varan::periphery::AdvertiseAddress(
        advertise, server.addresses.front(), *core_addr);
    if (!address.ok()) return Fail(std::string(address.status().message()));
    advertised = *address;
  } else {
    spdlog::info("varan-periphery {} serves no port (--no-listen)",
                 varan::kVersion);
  }

  varan::periphery::UplinkOptions uplink_options;
  uplink_options.core = *core_addr;
  uplink_options.join_token = join_token;
  uplink_options.name = name;
  uplink_options.labels = label_map;
  uplink_options.advertise_address = advertised;
  uplink_options.state_dir = state_dir;
  uplink_options.tunnel = tunnel;
  uplink_options.max_backoff = absl::Seconds(reconnect_max_seconds);
  uplink_options.keepalive_time = keepalive.time;
  uplink_options.keepalive_timeout = keepalive.timeout;
  uplink_options.security =
      varan::MakeChannelSecurity(core_tls_files->get(), core_tls.server_name);
  const varan::Clock* clock = varan::RealClock::Get();
  varan::periphery::Uplink uplink(
      uplink_options,
      varan::periphery::NewGrpcCoreConnection(uplink_options, clock),
      &credential, &host, &executor, clock);
  uplink.Start();

  int sig = varan::WaitForTerminationSignal([&] {
    // New certificates take effect for new connections (errors are logged
    // and the previous ones kept).
    for (const auto* tls : {&*server_tls, &*core_tls_files}) {
      if (*tls != nullptr) (void)(*tls)->Reload();
    }
  });
  spdlog::info("received signal {}; shutting down", sig);
  uplink.Stop();
  // Running commands are stopped (SIGTERM, then SIGKILL after the grace)
  // so nothing is left behind.
  if (!agent.CancelAllAndWait(absl::Seconds(kill_grace_seconds) +
                              absl::Seconds(2))) {
    spdlog::warn("some commands did not stop in time");
  }
  if (server.server != nullptr) {
    server.server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    server.server->Wait();
  }
  spdlog::info("stopped");
  return 0;
}
