#include "common/daemon.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config.h"
#include "common/log.h"
#include "varan/version.h"

namespace varan {

void AddListenFlags(CLI::App& app, DaemonFlags* flags,
                    const std::string& default_listen,
                    const std::string& listen_help) {
  app.add_option("--config", flags->config,
                 "TOML file with any of these flags as keys (e.g. listen = "
                 "[\"[::]:7700\"])")
      ->envname("VARAN_CONFIG");
  flags->listen = {default_listen};
  app.add_option("--listen", flags->listen, listen_help)->capture_default_str();
  app.add_option("--max-connections-per-address",
                 flags->max_connections_per_address,
                 "Connections one client address (IPv4, or one IPv6 "
                 "address) may hold at once; more are closed as soon as "
                 "they are accepted. Raise it for many clients behind one "
                 "NAT address; 0: no cap")
      ->capture_default_str();
  app.add_option("--handshake-timeout", flags->handshake_timeout_seconds,
                 "Seconds a new connection has to complete its TLS and "
                 "HTTP/2 handshake before it is closed")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--fd-high-water", flags->fd_high_water_percent,
                 "Percentage of the open-file limit (raised to the hard "
                 "limit at start) above which new connections are closed at "
                 "once, so the daemon never runs out of descriptors")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 100.0));
}

ListenerOptions ListenerOptionsFrom(const DaemonFlags& flags) {
  ListenerOptions options;
  options.max_connections_per_address = flags.max_connections_per_address;
  options.handshake_timeout = absl::Seconds(flags.handshake_timeout_seconds);
  options.fd_high_water_percent = flags.fd_high_water_percent;
  return options;
}

void AddGuardFlags(CLI::App& app, DaemonFlags* flags) {
  app.add_option("--allow", flags->allow,
                 "Only accept calls from this network, e.g. 10.0.0.0/8, "
                 "fd00::/8 or 192.0.2.7; repeatable (default: from anywhere). "
                 "IPv4 rules also match IPv4 clients of a [::] listener. "
                 "Health checks and reflection stay open");
  app.add_option("--auth-failure-limit", flags->auth_failure_limit,
                 "Failed authentications a client address (an IPv6 /64) may "
                 "have per minute before its calls are refused for a while; "
                 "0 turns the limit off")
      ->capture_default_str();
}

absl::StatusOr<PeerGuardOptions> GuardOptions(const DaemonFlags& flags) {
  PeerGuardOptions options;
  auto allow = Allowlist::Parse(flags.allow);
  if (!allow.ok()) return allow.status();
  options.allow = *std::move(allow);
  options.failures_per_minute = flags.auth_failure_limit;
  if (!options.allow.empty()) {
    spdlog::info("accepting calls only from {}",
                 absl::StrJoin(options.allow.ToStrings(), ", "));
  }
  return options;
}

void AddServerTlsFlags(CLI::App& app, DaemonFlags* flags) {
  app.add_option("--tls-cert", flags->tls.cert,
                 "PEM certificate (chain) the listeners present; with "
                 "--tls-key turns TLS on. Re-read on change and on SIGHUP");
  app.add_option("--tls-key", flags->tls.key,
                 "PEM private key of --tls-cert (keep it mode 0600)");
  app.add_option("--tls-client-ca", flags->tls.client_ca,
                 "PEM CA bundle: require every client to present a "
                 "certificate it signed (mutual TLS)");
  app.add_option("--tls-watch-interval", flags->tls_watch_seconds,
                 "Seconds between checks of the TLS files for changes; 0: "
                 "only on SIGHUP")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
}

void AddClientTlsFlags(CLI::App& app, ClientTlsFiles* tls,
                       const std::string& prefix, const std::string& peer) {
  app.add_option(absl::StrCat("--", prefix, "tls-ca"), tls->ca,
                 absl::StrCat("Use TLS toward ", peer,
                              " and verify its certificate against this PEM "
                              "CA bundle (\"system\": the system's roots)"));
  app.add_option(absl::StrCat("--", prefix, "tls-cert"), tls->cert,
                 absl::StrCat("PEM client certificate to present to ", peer,
                              " when it requires mutual TLS"));
  app.add_option(absl::StrCat("--", prefix, "tls-key"), tls->key,
                 absl::StrCat("PEM private key of --", prefix, "tls-cert"));
  app.add_option(absl::StrCat("--", prefix, "tls-server-name"),
                 tls->server_name,
                 absl::StrCat("Name ", peer,
                              "'s certificate must carry (default: the host "
                              "dialed)"));
}

absl::StatusOr<std::unique_ptr<TlsFiles>> PrepareServerTls(
    const DaemonFlags& flags, const std::string& staging_dir) {
  const ServerTlsFiles& tls = flags.tls;
  if (!tls.enabled()) {
    if (!tls.client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS "
          "first)");
    }
    return std::unique_ptr<TlsFiles>();
  }
  auto files = TlsFiles::Create(tls.cert, tls.key, tls.client_ca, staging_dir,
                                "--tls-cert/--tls-key/--tls-client-ca");
  if (!files.ok()) return files.status();
  if (flags.tls_watch_seconds > 0) {
    (*files)->Watch(absl::Seconds(flags.tls_watch_seconds));
  }
  return files;
}

absl::StatusOr<std::unique_ptr<TlsFiles>> PrepareClientTls(
    const ClientTlsFiles& tls, const std::string& prefix,
    const std::string& staging_dir, double watch_seconds) {
  if (!tls.enabled()) return std::unique_ptr<TlsFiles>();
  const std::string what = absl::StrCat("--", prefix, "tls-*");
  if (tls.ca.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", prefix, "tls-ca is needed with the other --", prefix,
                     "tls-* flags (a CA file, or \"system\")"));
  }
  auto files = TlsFiles::Create(tls.cert, tls.key, tls.ca, staging_dir, what);
  if (!files.ok()) return files.status();
  if (watch_seconds > 0) (*files)->Watch(absl::Seconds(watch_seconds));
  return files;
}

void AddProxyFlag(CLI::App& app, std::string* proxy, const std::string& peer) {
  app.add_option(
      "--proxy", *proxy,
      absl::StrCat("HTTP CONNECT proxy for connections to ", peer,
                   ", http://[user:password@]host:port (the password is "
                   "never logged); default: the grpc_proxy, https_proxy or "
                   "http_proxy variable, in that order, with hosts in "
                   "no_grpc_proxy or no_proxy reached directly; \"none\": "
                   "no proxy whatever the environment says"));
}

void FinishDaemonFlags(CLI::App& app, DaemonFlags* flags,
                       const std::string& env_example,
                       const std::string& example) {
  app.add_option("--log-level", flags->log_level,
                 "trace, debug, info, warn, error or off")
      ->capture_default_str();
  app.add_option("--log-format", flags->log_format, "text or json")
      ->capture_default_str();
  BindEnvironment(app);
  app.footer(absl::StrCat(
      "Every flag can also be set as VARAN_<FLAG> in the environment (e.g. ",
      env_example,
      ") or as a key in the --config file; flags win over the environment, "
      "which wins over the file.\n\nExample:\n  ",
      example));
}

absl::StatusOr<std::vector<HostPort>> PrepareListeners(
    const std::vector<std::string>& listen) {
  std::vector<HostPort> out;
  for (const auto& l : listen) {
    auto hp = ParseListenAddress(l);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--listen: ", hp.status().message()));
    }
    out.push_back(*hp);
  }
  if (absl::Status s = CheckListenAddresses(out); !s.ok()) return s;
  return out;
}

void LogListening(const std::string& name, const RunningServer& server,
                  const std::string& plaintext_risk,
                  const ServerTlsFiles& tls) {
  std::vector<std::string> bound;
  for (const auto& hp : server.addresses) bound.push_back(FormatHostPort(hp));
  spdlog::info("{} {} listening on {} ({})", name, kVersion,
               absl::StrJoin(bound, ", "),
               !tls.enabled()          ? "plaintext"
               : tls.client_ca.empty() ? "TLS"
                                       : "mutual TLS");
  if (tls.enabled()) return;
  for (const auto& hp : server.addresses) {
    if (!IsLoopbackHost(hp.host)) {
      spdlog::warn("serving plaintext gRPC on {}: {}", FormatHostPort(hp),
                   plaintext_risk);
      return;
    }
  }
}

}  // namespace varan
