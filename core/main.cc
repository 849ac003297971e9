// varan-core: the central server. Wires flags to objects and serves; the
// work happens in fleet/, jobs/, link/ and server/.

#include <algorithm>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/address.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/keepalive.h"
#include "common/log.h"
#include "common/logging.h"
#include "common/peer_guard.h"
#include "common/proxy.h"
#include "common/secrets.h"
#include "common/server.h"
#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/link/dial_link.h"
#include "core/link/tunnel_link.h"
#include "core/server/admission.h"
#include "core/server/auth.h"
#include "core/server/services.h"
#include "core/server/tokens.h"
#include "core/store/sqlite_store.h"
#include "varan/version.h"

namespace {

int Fail(const std::string& message) {
  std::cerr << "varan-core: error: " << message << "\n";
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
      "varan-core: the Varan control plane. Peripheries register "
      "with it; operators run commands on them through it.",
      "varan-core"};
  app.set_version_flag("--version",
                       std::string("varan-core ") + varan::kVersion);
  varan::DaemonFlags flags;
  std::string data_dir = "/var/lib/varan/core";
  double heartbeat_seconds = 10;
  int heartbeat_ttl = 3;
  double restart_grace_seconds = 0;
  double retention_days = 30;
  uint64_t retention_jobs = 100000;
  uint64_t capture_limit = 4 * 1024 * 1024;
  double shutdown_grace_seconds = 10;
  double keepalive_time_seconds = 30;
  double keepalive_timeout_seconds = 10;
  varan::core::AdmissionOptions admission_options;
  std::string admin_token_file;
  std::string join_token_file;

  varan::AddListenFlags(app, &flags, "[::]:7700",
                        "Address to serve on; repeatable. [::]:PORT serves "
                        "IPv6 and IPv4 (IPv4 only where IPv6 is disabled)");
  app.add_option("--data-dir", data_dir,
                 "Directory for core's state: the database core.db (fleet, "
                 "jobs, output), and admin.token and join.token, created "
                 "here on first start")
      ->capture_default_str();
  app.add_option("--admin-token-file", admin_token_file,
                 "File holding a pre-provisioned admin token (e.g. from a "
                 "Kubernetes Secret), accepted as \"admin-file\" in addition "
                 "to <data-dir>/admin.token; re-read on SIGHUP");
  app.add_option("--join-token-file", join_token_file,
                 "File holding a pre-provisioned join token, accepted as "
                 "\"join-file\" in addition to <data-dir>/join.token (no TTL, "
                 "no use limit); re-read on SIGHUP");
  varan::AddGuardFlags(app, &flags);
  varan::AddServerTlsFlags(app, &flags);
  varan::ClientTlsFiles periphery_tls;
  varan::AddClientTlsFlags(app, &periphery_tls, "periphery-",
                           "the peripheries it dials");
  std::string proxy;
  varan::AddProxyFlag(app, &proxy, "the peripheries core dials");
  app.add_option("--heartbeat-interval", heartbeat_seconds,
                 "Seconds between periphery heartbeats (core tells the "
                 "peripheries)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--heartbeat-ttl", heartbeat_ttl,
                 "Heartbeat intervals without a heartbeat after which a "
                 "periphery is offline (its running targets become lost)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--restart-grace", restart_grace_seconds,
                 "Seconds after a core start during which peripheries that "
                 "were online stay online while they reconnect; 0 means one "
                 "TTL")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--retention-days", retention_days,
                 "Finished jobs older than this many days are deleted; 0 "
                 "keeps them")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 36500.0));
  app.add_option("--retention-jobs", retention_jobs,
                 "Beyond this many jobs the oldest finished ones are deleted; "
                 "0 keeps them")
      ->capture_default_str();
  app.add_option("--capture-limit", capture_limit,
                 "Bytes of output kept per target and stream of a job")
      ->capture_default_str();
  app.add_option("--shutdown-grace", shutdown_grace_seconds,
                 "Seconds in-flight calls get to finish on SIGTERM/SIGINT")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--keepalive-time", keepalive_time_seconds,
                 "Seconds without traffic after which core pings a "
                 "connection (tunnels, and its calls to peripheries); core "
                 "accepts peers' pings as often as every half second")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--keepalive-timeout", keepalive_timeout_seconds,
                 "Seconds a ping may go unanswered before core drops the "
                 "connection as dead")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--handshake-rate", admission_options.rate,
                 "Registrations and tunnel hellos core takes on per second "
                 "(beyond --handshake-burst); more are refused with "
                 "RESOURCE_EXHAUSTED and a retry-after hint the peripheries "
                 "honour; 0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--handshake-burst", admission_options.burst,
                 "Registrations and tunnel hellos core takes on at once "
                 "before --handshake-rate applies")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e9));
  varan::FinishDaemonFlags(
      app, &flags, "VARAN_DATA_DIR",
      "varan-core --listen [::]:7700 --data-dir /var/lib/varan/core");

  int exit_code = 0;
  if (!varan::ParseDaemonFlags(app, "--config", argc, argv, &exit_code)) {
    return exit_code;
  }
  if (absl::Status s =
          varan::InitLogging("core", flags.log_level, flags.log_format);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  // Find out before touching any file whether the listeners can be created.
  auto listen_addrs = varan::PrepareListeners(flags.listen);
  if (!listen_addrs.ok())
    return Fail(std::string(listen_addrs.status().message()));
  varan::RaiseFileLimit();
  auto guard_options = varan::GuardOptions(flags);
  if (!guard_options.ok()) {
    return Fail(std::string(guard_options.status().message()));
  }
  if (absl::Status s = varan::CheckProxyUrl(proxy); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::Status s = varan::EnsurePrivateDir(data_dir); !s.ok()) {
    return Fail(absl::StrCat("--data-dir: ", s.message()));
  }
  const varan::core::BootstrapTokenFiles token_files{data_dir, admin_token_file,
                                                     join_token_file};
  // Certificates are checked now, staged in <data-dir>/tls and re-read on
  // change and on SIGHUP (common/tls.h).
  auto server_tls = varan::PrepareServerTls(flags, data_dir + "/tls/server");
  if (!server_tls.ok()) return Fail(std::string(server_tls.status().message()));
  auto periphery_tls_files = varan::PrepareClientTls(
      periphery_tls, "periphery-", data_dir + "/tls/periphery-client",
      flags.tls_watch_seconds);
  if (!periphery_tls_files.ok()) {
    return Fail(std::string(periphery_tls_files.status().message()));
  }

  varan::core::SqliteStoreOptions store_options;
  store_options.retention.max_age =
      absl::Seconds(static_cast<int64_t>(retention_days * 86400));
  store_options.retention.max_jobs = retention_jobs;
  auto store =
      varan::core::SqliteStore::Open(data_dir + "/core.db", store_options);
  if (!store.ok()) return Fail(std::string(store.status().message()));

  const varan::Clock* clock = varan::RealClock::Get();
  varan::core::TokenRegistry tokens(clock, store->get());
  if (absl::Status s = tokens.Load(); !s.ok()) {
    return Fail(absl::StrCat("loading tokens from ", data_dir,
                             "/core.db: ", s.message()));
  }
  if (absl::Status s = varan::core::LoadBootstrapTokens(token_files, &tokens);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  varan::PeerGuard guard(clock, *std::move(guard_options));
  varan::core::FleetOptions fleet_options;
  fleet_options.heartbeat_interval = absl::Seconds(heartbeat_seconds);
  fleet_options.ttl_intervals = heartbeat_ttl;
  fleet_options.restart_grace = absl::Seconds(restart_grace_seconds);
  varan::core::FleetRegistry fleet(clock, fleet_options, store->get());
  if (auto loaded = fleet.Load(); !loaded.ok()) {
    return Fail(absl::StrCat("loading the fleet from ", data_dir,
                             "/core.db: ", loaded.status().message()));
  }
  const varan::Keepalive keepalive{absl::Seconds(keepalive_time_seconds),
                                   absl::Seconds(keepalive_timeout_seconds)};
  varan::LogProxy(proxy, "peripheries");
  varan::core::DialLinkProvider dial_links(
      keepalive,
      varan::MakeChannelSecurity(periphery_tls_files->get(),
                                 periphery_tls.server_name),
      proxy);
  varan::core::TunnelHub links(&dial_links);
  varan::core::DispatcherOptions dispatcher_options;
  dispatcher_options.default_capture_limit = capture_limit;
  varan::core::Dispatcher dispatcher(&fleet, &links, store->get(), clock,
                                     dispatcher_options);
  if (auto recovered = dispatcher.Recover(); !recovered.ok()) {
    return Fail(absl::StrCat("recovering jobs from ", data_dir,
                             "/core.db: ", recovered.status().message()));
  }
  fleet.SetGoneListener(
      [&dispatcher](const std::string& id, const std::string& reason) {
        dispatcher.PeripheryGone(id, reason);
      });
  varan::core::HandshakeAdmission admission(clock, admission_options);
  // Liveness: notices peripheries going offline a fraction of an interval
  // after their TTL ends.
  absl::Notification stop_ticking;
  std::thread ticker([&] {
    const absl::Duration period =
        std::clamp(absl::Seconds(heartbeat_seconds) / 4, absl::Milliseconds(50),
                   absl::Seconds(1));
    while (!stop_ticking.WaitForNotificationWithTimeout(period)) {
      fleet.Tick();
      admission.MaybeLog();
    }
  });
  const varan::core::Authenticator auth(&tokens, &fleet, &guard);
  varan::core::RegistryService registry_service(&auth, &fleet, &links,
                                                &dispatcher, &admission);
  varan::core::FleetService fleet_service(&auth, &fleet);
  varan::core::JobsService jobs_service(&auth, &dispatcher);
  varan::core::AdminService admin_service(&auth, &fleet, &tokens, clock->Now(),
                                          &admission);

  auto server = varan::StartServer(
      *listen_addrs,
      {&registry_service, &fleet_service, &jobs_service, &admin_service},
      varan::ServerKeepaliveArgs(keepalive),
      varan::MakeServerCredentials(server_tls->get(),
                                   !flags.tls.client_ca.empty()),
      varan::ListenerOptionsFrom(flags));
  if (!server.ok()) {
    stop_ticking.Notify();
    ticker.join();
    return Fail(std::string(server.status().message()));
  }
  varan::LogListening("varan-core", *server,
                      "tokens and output cross the network unencrypted",
                      flags.tls);

  int sig = varan::WaitForTerminationSignal([&] {
    // Rotated bootstrap token files take effect; a file that became
    // unreadable keeps the tokens read before.
    if (absl::Status s = varan::core::LoadBootstrapTokens(token_files, &tokens);
        !s.ok()) {
      spdlog::error("reloading bootstrap tokens: {}; keeping the old ones",
                    s.message());
    }
    // New certificates take effect for new connections (errors are logged
    // and the previous ones kept).
    for (const auto* tls : {&*server_tls, &*periphery_tls_files}) {
      if (*tls != nullptr) (void)(*tls)->Reload();
    }
  });
  spdlog::info("received signal {}; shutting down", sig);
  const absl::Duration grace = absl::Seconds(shutdown_grace_seconds);
  // Stop accepting; running calls (watchers, exec streams) get the grace
  // period, then are canceled. Calls to peripheries are canceled too, which
  // stops their commands.
  server->Shutdown(absl::Now() + grace);
  spdlog::debug("server shut down");
  dispatcher.Shutdown(absl::Seconds(5));
  spdlog::debug("calls to peripheries ended");
  server->server->Wait();
  stop_ticking.Notify();
  ticker.join();
  if (absl::Status s = (*store)->Sync(); !s.ok()) {
    spdlog::error("the last writes to {}/core.db failed: {}", data_dir,
                  s.message());
  }
  spdlog::info("stopped");
  return 0;
}
