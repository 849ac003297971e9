// CoreServer: one running varan-core — the store, the registries, the links
// to peripheries, the dispatcher, handshake admission, the liveness ticker,
// the gRPC services and the grpc::Server serving them — assembled from a
// CoreConfig. main() parses flags into a CoreConfig and starts one; a test
// may start several in one process (each with its own data directory and
// ports): nothing here is process-wide except logging.
//
// The CoreServer owns every part. Start returns it serving; Shutdown stops
// it in order (listeners, calls to peripheries, running calls, the ticker,
// the store's last writes); the destructor shuts down with no grace if
// Shutdown was not called.
//
// Thread-safety: Reload may be called from any thread while serving;
// Start, Shutdown and destruction from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/address.h"
#include "common/clock.h"
#include "common/keepalive.h"
#include "common/listener.h"
#include "common/tls.h"
#include "core/server/admission.h"

namespace varan::core {

// The health service name whose status is core's readiness: SERVING while
// its store is reachable (the default service "" only says the process
// serves).
inline constexpr char kReadyService[] = "ready";
// With replicas, the health service name whose status says whether this
// replica's cluster refreshes reach the database (what a replica cut off
// from it asks the others before it steps down, core/daemon/step_down.h).
inline constexpr char kDatabaseService[] = "database";

// Everything core's flags decide (see core/daemon/flags.cc for the flags
// and their help). Defaults are the flags' defaults.
struct CoreConfig {
  // --listen: addresses to serve on ("[::]:7700"; port 0 picks a free one).
  std::vector<std::string> listen = {"[::]:7700"};
  // --health-listen: addresses serving the health service alone, in
  // plaintext (empty: none).
  std::vector<std::string> health_listen;
  // --data-dir: core.db, admin.token, join.token and staged TLS files.
  std::string data_dir = "/var/lib/varan/core";
  // --admin-token-file / --join-token-file: pre-provisioned tokens accepted
  // in addition to the data directory's; empty: none.
  std::string admin_token_file;
  std::string join_token_file;
  // --allow (CIDRs; empty: everyone) and --auth-failure-limit (per minute;
  // 0: no limit).
  std::vector<std::string> allow;
  uint32_t auth_failure_limit = 10;
  // --tls-*: the listeners' TLS (empty: plaintext); --periphery-tls-*: TLS
  // of core's calls to peripheries; --tls-watch-interval (0: SIGHUP only).
  ServerTlsFiles tls;
  ClientTlsFiles periphery_tls;
  // --replica-tls-*: TLS of the calls to the other replicas (required when
  // this core's listeners serve TLS and it runs as a replica).
  ClientTlsFiles replica_tls;
  absl::Duration tls_watch = absl::Seconds(5);
  // Without --tls-cert: the built-in cluster CA in <data-dir>/pki issues
  // the listeners' certificate (core/daemon/builtin_tls.h), naming also
  // --tls-san's names. --insecure-plaintext: no TLS at all.
  std::vector<std::string> tls_san;
  // --ca-from: a CA made ahead of time seeds <data-dir>/pki
  // (pki::SeedAuthority).
  std::string ca_from;
  bool insecure_plaintext = false;
  // --periphery-cert-lifetime: how long the certificates the built-in CA
  // issues peripheries live.
  absl::Duration periphery_cert_lifetime = absl::Hours(24);
  // --heartbeat-interval, --heartbeat-ttl (intervals), --restart-grace
  // (zero: one TTL).
  absl::Duration heartbeat_interval = absl::Seconds(10);
  int heartbeat_ttl = 3;
  absl::Duration restart_grace = absl::ZeroDuration();
  // --retention-days (zero: keep) and --retention-jobs (0: keep).
  absl::Duration retention_age = absl::Hours(24 * 30);
  uint64_t retention_jobs = 100000;
  // --database (a postgres:// URL) or --database-file (a file holding it):
  // the PostgreSQL store instead of SQLite in data_dir
  // (core/daemon/open_store.h). Never logged.
  std::string database;
  std::string database_file;
  // --replica-address: several replicas on one PostgreSQL database; where
  // the others reach this one (empty: core alone, holding the database
  // exclusively).
  std::string replica_address;
  // With replicas: how long a replica that stops renewing its membership
  // (a crash) is still counted live, and how often the fleet is re-read.
  absl::Duration replica_ttl = absl::Seconds(10);
  absl::Duration fleet_refresh = absl::Seconds(1);
  // --max-pending-writes: the store's backlog bound (Store::CheckBacklog).
  uint64_t max_pending_writes = 200000;
  // --output-head / --output-tail: output bytes stored of the start and the
  // end of each target's stream (--capture-limit maps onto them).
  uint64_t output_head = 1 << 20;
  uint64_t output_tail = 3 << 20;
  // --live-window: output bytes each job keeps in memory for watchers.
  uint64_t live_window = 8 << 20;
  // --keepalive-time / --keepalive-timeout.
  Keepalive keepalive;
  // --handshake-rate / --handshake-burst.
  AdmissionOptions admission;
  // --max-connections-per-address, --handshake-timeout, --fd-high-water.
  ListenerOptions listener;
  // --proxy: the HTTP CONNECT proxy for core's calls to peripheries (""
  // takes it from the environment, "none" turns proxies off).
  std::string proxy;
};

// varan-core's exit status when another replica fenced it (it was cut off
// from the database longer than its membership lasts, and its jobs were
// taken over): EX_TEMPFAIL, start it again.
inline constexpr int kExitFenced = 75;

class CoreServer {
 public:
  // Checks the listen addresses (before touching any file), creates the
  // data directory, reads the bootstrap tokens and the TLS files, opens the
  // store, loads the fleet, recovers running jobs and starts serving.
  // `clock` must outlive the server. Errors carry the message varan-core
  // prints before exiting (naming the flag, file or address).
  static absl::StatusOr<std::unique_ptr<CoreServer>> Start(
      const CoreConfig& config, const Clock* clock);

  ~CoreServer();
  CoreServer(const CoreServer&) = delete;
  CoreServer& operator=(const CoreServer&) = delete;

  // What SIGHUP does: re-reads the bootstrap token files (a file that
  // became unreadable keeps the tokens read before) and the TLS files (new
  // ones take effect for new connections). Errors are logged.
  void Reload();

  // Stops accepting; running calls (watchers, exec streams) get `grace`,
  // then are canceled; calls to peripheries are canceled (which stops their
  // commands); then the ticker stops and the store's last writes are
  // flushed. Idempotent.
  void Shutdown(absl::Duration grace);

  // The addresses bound, with real ports (e.g. "[::]:41235").
  const std::vector<HostPort>& addresses() const;
  // The bootstrap token files in the data directory.
  std::string admin_token_path() const;
  std::string join_token_path() const;

 private:
  struct Parts;
  explicit CoreServer(std::unique_ptr<Parts> parts);

  std::unique_ptr<Parts> parts_;
};

}  // namespace varan::core
