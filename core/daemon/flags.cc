#include "core/daemon/flags.h"

#include "common/proxy.h"
#include "varan/version.h"

namespace varan::core {

void AddCoreFlags(CLI::App& app, CoreFlags* flags) {
  app.set_version_flag("--version", std::string("varan-core ") + kVersion);

  AddListenFlags(app, &flags->daemon, "[::]:7700",
                 "Address to serve on; repeatable. [::]:PORT serves "
                 "IPv6 and IPv4 (IPv4 only where IPv6 is disabled)");
  app.add_option("--data-dir", flags->data_dir,
                 "Directory for core's state: the SQLite database core.db "
                 "(fleet, jobs, output; unless --database), and admin.token "
                 "and join.token, created here on first start")
      ->capture_default_str();
  app.add_option("--admin-token-file", flags->admin_token_file,
                 "File holding a pre-provisioned admin token (e.g. from a "
                 "Kubernetes Secret), accepted as \"admin-file\" in addition "
                 "to <data-dir>/admin.token; re-read on SIGHUP");
  app.add_option("--join-token-file", flags->join_token_file,
                 "File holding a pre-provisioned join token, accepted as "
                 "\"join-file\" in addition to <data-dir>/join.token (no TTL, "
                 "no use limit); re-read on SIGHUP");
  auto* database = app.add_option(
      "--database", flags->database,
      "PostgreSQL URL (postgres://user@host:5432/db?sslmode=verify-full) "
      "to keep core's state in instead of SQLite in --data-dir; never "
      "logged. Prefer VARAN_DATABASE or --database-file for a URL with a "
      "password: the command line is visible to every user (ps)");
  app.add_option("--database-file", flags->database_file,
                 "File holding the --database URL (e.g. a mounted Secret); "
                 "it should be private (mode 0600)")
      ->excludes(database);
  app.add_option("--replica-address", flags->replica_address,
                 "Run as one of several core replicas sharing the --database "
                 "(PostgreSQL): the address the other replicas reach this one "
                 "at (host:port, or a bare host or IP taking the first "
                 "--listen port; e.g. the pod IP). Without it, core refuses "
                 "to share its database with another core");
  app.add_option("--health-listen", flags->health_listen,
                 "Also serve grpc.health.v1.Health alone, in plaintext, on "
                 "these addresses (e.g. [::]:7702): for probes that speak no "
                 "TLS, like kubelet's gRPC probes. Services \"\" (serving) "
                 "and \"ready\" (the database reachable), as on --listen; "
                 "nothing else is served there")
      ->delimiter(',');
  AddGuardFlags(app, &flags->daemon);
  AddServerTlsFlags(app, &flags->daemon);
  app.add_option("--tls-san", flags->tls_san,
                 "Without --tls-cert: more DNS names or IP addresses for the "
                 "certificate core's built-in cluster CA issues it (it always "
                 "names varan-core, localhost, the host name and the "
                 "loopback addresses); repeatable or comma-separated")
      ->delimiter(',');
  app.add_option("--ca-from", flags->ca_from,
                 "Without --tls-cert: a directory holding a cluster CA made "
                 "ahead of time (ca.crt and ca.key, from varanctl ca init), "
                 "e.g. a mounted Secret, so that its pin is known before core "
                 "starts; copied into <data-dir>/pki when that holds no CA "
                 "yet, ignored when the directory is empty");
  app.add_flag("--insecure-plaintext", flags->insecure_plaintext,
               "Serve plaintext gRPC instead of TLS with the built-in cluster "
               "CA: tokens, credentials and output cross the network "
               "readable. For a service mesh that encrypts, or an old "
               "deployment's peripheries (which need it too)");
  app.add_option("--periphery-cert-lifetime", flags->periphery_cert_seconds,
                 "Seconds the certificates the built-in cluster CA issues "
                 "peripheries stay valid (they renew them after two thirds "
                 "of it)")
      ->capture_default_str()
      ->check(CLI::Range(10.0, 366.0 * 86400));
  AddClientTlsFlags(app, &flags->replica_tls, "replica-",
                    "the other core replicas (needed when they serve your own "
                    "certificates; on the built-in CA they verify each other "
                    "by its pin)");
  AddClientTlsFlags(app, &flags->periphery_tls, "periphery-",
                    "the peripheries it dials");
  AddProxyFlag(app, &flags->proxy, "the peripheries core dials");
  app.add_option("--heartbeat-interval", flags->heartbeat_seconds,
                 "Seconds between periphery heartbeats (core tells the "
                 "peripheries)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--heartbeat-ttl", flags->heartbeat_ttl,
                 "Heartbeat intervals without a heartbeat after which a "
                 "periphery is offline (its running targets become lost)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--restart-grace", flags->restart_grace_seconds,
                 "Seconds after a core start during which peripheries that "
                 "were online stay online while they reconnect; 0 means one "
                 "TTL")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--retention-days", flags->retention_days,
                 "Finished jobs older than this many days are deleted; 0 "
                 "keeps them")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 36500.0));
  app.add_option("--retention-jobs", flags->retention_jobs,
                 "Beyond this many jobs the oldest finished ones are deleted; "
                 "0 keeps them")
      ->capture_default_str();
  app.add_option("--max-pending-writes", flags->max_pending_writes,
                 "Writes waiting for the database beyond which new jobs and "
                 "new registrations are refused (RESOURCE_EXHAUSTED, retry "
                 "hint) until the store catches up")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000000}));
  auto* head = app.add_option("--output-head", flags->output_head,
                              "Bytes stored of the start of each target's "
                              "stdout and stderr (a job may say otherwise)")
                   ->capture_default_str();
  auto* tail = app.add_option("--output-tail", flags->output_tail,
                              "Bytes stored of the end of each target's "
                              "stdout and stderr (a job may say otherwise)")
                   ->capture_default_str();
  app.add_option("--capture-limit", flags->capture_limit,
                 "Deprecated: --output-head is a quarter of it and "
                 "--output-tail the rest (output is streamed whole anyway)")
      ->excludes(head)
      ->excludes(tail);
  app.add_option("--live-window", flags->live_window,
                 "Bytes of recent output each job keeps in memory for "
                 "watchers; Exec's caller slows the command down instead of "
                 "falling further behind")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{64} << 10, uint64_t{1} << 34));
  app.add_option("--shutdown-grace", flags->shutdown_grace_seconds,
                 "Seconds in-flight calls get to finish on SIGTERM/SIGINT")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--keepalive-time", flags->keepalive_time_seconds,
                 "Seconds without traffic after which core pings a "
                 "connection (tunnels, and its calls to peripheries); core "
                 "accepts peers' pings as often as every half second")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--keepalive-timeout", flags->keepalive_timeout_seconds,
                 "Seconds a ping may go unanswered before core drops the "
                 "connection as dead")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--handshake-rate", flags->admission.rate,
                 "Registrations and tunnel hellos core takes on per second "
                 "(beyond --handshake-burst); more are refused with "
                 "RESOURCE_EXHAUSTED and a retry-after hint the peripheries "
                 "honour; 0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--handshake-burst", flags->admission.burst,
                 "Registrations and tunnel hellos core takes on at once "
                 "before --handshake-rate applies")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e9));
  FinishDaemonFlags(
      app, &flags->daemon, "VARAN_DATA_DIR",
      "varan-core --listen [::]:7700 --data-dir /var/lib/varan/core");
}

CoreConfig ToCoreConfig(const CoreFlags& flags) {
  CoreConfig c;
  c.listen = flags.daemon.listen;
  c.health_listen = flags.health_listen;
  c.data_dir = flags.data_dir;
  c.admin_token_file = flags.admin_token_file;
  c.join_token_file = flags.join_token_file;
  c.database = flags.database;
  c.database_file = flags.database_file;
  c.replica_address = flags.replica_address;
  c.allow = flags.daemon.allow;
  c.auth_failure_limit = flags.daemon.auth_failure_limit;
  c.tls = flags.daemon.tls;
  c.periphery_tls = flags.periphery_tls;
  c.replica_tls = flags.replica_tls;
  c.tls_watch = absl::Seconds(flags.daemon.tls_watch_seconds);
  c.tls_san = flags.tls_san;
  c.ca_from = flags.ca_from;
  c.insecure_plaintext = flags.insecure_plaintext;
  c.periphery_cert_lifetime = absl::Seconds(flags.periphery_cert_seconds);
  c.heartbeat_interval = absl::Seconds(flags.heartbeat_seconds);
  c.heartbeat_ttl = flags.heartbeat_ttl;
  c.restart_grace = absl::Seconds(flags.restart_grace_seconds);
  c.retention_age =
      absl::Seconds(static_cast<int64_t>(flags.retention_days * 86400));
  c.retention_jobs = flags.retention_jobs;
  c.max_pending_writes = flags.max_pending_writes;
  c.output_head = flags.output_head;
  c.output_tail = flags.output_tail;
  if (flags.capture_limit > 0) {
    c.output_head = flags.capture_limit / 4;
    c.output_tail = flags.capture_limit - c.output_head;
  }
  c.live_window = flags.live_window;
  c.keepalive = {absl::Seconds(flags.keepalive_time_seconds),
                 absl::Seconds(flags.keepalive_timeout_seconds)};
  c.admission = flags.admission;
  c.listener = ListenerOptionsFrom(flags.daemon);
  c.proxy = flags.proxy;
  return c;
}

}  // namespace varan::core
