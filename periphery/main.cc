// varan-periphery: the agent on each server. Parses the command line into a
// PeripheryConfig, starts a PeripheryAgent, and stops it on SIGINT/SIGTERM;
// the work happens in periphery_agent.cc and below.
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/heap.h"
#include "common/log.h"
#include "common/logging.h"
#include "common/server.h"
#include "periphery/flags.h"
#include "periphery/periphery_agent.h"
#include "varan/version.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "varan-periphery: error: " << message << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  varan::BlockTerminationSignals();
  varan::KeepHeapForStreams();
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
  varan::periphery::PeripheryConfig config;
  varan::periphery::AddPeripheryFlags(app, &config);
  int exit_code = 0;
  if (!varan::ParseDaemonFlags(app, "--config", argc, argv, &exit_code)) {
    return exit_code;
  }
  if (absl::Status s = varan::InitLogging("periphery", config.daemon.log_level,
                                          config.daemon.log_format);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  auto agent =
      varan::periphery::PeripheryAgent::Start(config, varan::RealClock::Get());
  if (!agent.ok()) return Fail(std::string(agent.status().message()));

  // SIGHUP: new certificates take effect for new connections.
  int sig = varan::WaitForTerminationSignal([&] { (*agent)->Reload(); });
  spdlog::info("received signal {}; shutting down", sig);
  (*agent)->Shutdown(absl::Seconds(2));
  spdlog::info("stopped");
  return 0;
}
