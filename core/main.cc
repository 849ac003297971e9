// varan-core: the central server. Parses flags into a CoreConfig, starts a
// CoreServer (core/daemon/core_server.h) and serves until SIGTERM/SIGINT;
// SIGHUP reloads. The work happens in fleet/, jobs/, link/ and server/.

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
#include "core/daemon/core_server.h"
#include "core/daemon/flags.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "varan-core: error: " << message << "\n";
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
      "varan-core: the Varan control plane. Peripheries register "
      "with it; operators run commands on them through it.",
      "varan-core"};
  varan::core::CoreFlags flags;
  varan::core::AddCoreFlags(app, &flags);
  int exit_code = 0;
  if (!varan::ParseDaemonFlags(app, "--config", argc, argv, &exit_code)) {
    return exit_code;
  }
  if (absl::Status s = varan::InitLogging("core", flags.daemon.log_level,
                                          flags.daemon.log_format);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  auto core = varan::core::CoreServer::Start(varan::core::ToCoreConfig(flags),
                                             varan::RealClock::Get());
  if (!core.ok()) return Fail(std::string(core.status().message()));

  int sig = varan::WaitForTerminationSignal([&] { (*core)->Reload(); });
  spdlog::info("received signal {}; shutting down", sig);
  (*core)->Shutdown(absl::Seconds(flags.shutdown_grace_seconds));
  return 0;
}
