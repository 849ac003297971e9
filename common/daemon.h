// What both daemons' main() share: the common flags (--config, --listen,
// --log-level, --log-format), turning --listen values into checked
// addresses, and reporting what was bound.
//
// Called from main only (STYLE: nothing below main reads flags).
#pragma once

#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "common/address.h"
#include "common/listener.h"
#include "common/peer_guard.h"
#include "common/server.h"
#include "common/tls.h"

namespace varan {

struct DaemonFlags {
  std::string config;
  std::vector<std::string> listen;
  std::string log_level = "info";
  std::string log_format = "text";
  // --allow CIDR (repeatable) and --auth-failure-limit N.
  std::vector<std::string> allow;
  uint32_t auth_failure_limit = 10;
  // --tls-cert, --tls-key, --tls-client-ca: the listeners' TLS.
  ServerTlsFiles tls;
  // --tls-watch-interval: seconds between checks of all TLS files for
  // changes; 0: only on SIGHUP.
  double tls_watch_seconds = 5;
  // --max-connections-per-address, --handshake-timeout, --fd-high-water.
  uint32_t max_connections_per_address =
      ListenerOptions{}.max_connections_per_address;
  double handshake_timeout_seconds =
      absl::ToDoubleSeconds(ListenerOptions{}.handshake_timeout);
  double fd_high_water_percent = ListenerOptions{}.fd_high_water_percent;
};

// Adds --config and --listen (defaulting to `default_listen`) and the
// listener's limits (--max-connections-per-address, --handshake-timeout,
// --fd-high-water) to `app`.
void AddListenFlags(CLI::App& app, DaemonFlags* flags,
                    const std::string& default_listen,
                    const std::string& listen_help);

// The listener's limits the flags describe (for StartServer).
ListenerOptions ListenerOptionsFrom(const DaemonFlags& flags);

// Adds --allow and --auth-failure-limit.
void AddGuardFlags(CLI::App& app, DaemonFlags* flags);

// The PeerGuard options the flags describe. INVALID_ARGUMENT naming the bad
// --allow value.
absl::StatusOr<PeerGuardOptions> GuardOptions(const DaemonFlags& flags);

// Adds --tls-cert, --tls-key, --tls-client-ca (the listeners' TLS) and
// --tls-watch-interval.
void AddServerTlsFlags(CLI::App& app, DaemonFlags* flags);

// Adds --<prefix>tls-ca, --<prefix>tls-cert, --<prefix>tls-key and
// --<prefix>tls-server-name for this daemon's calls to `peer` ("core", "the
// peripheries").
void AddClientTlsFlags(CLI::App& app, ClientTlsFiles* tls,
                       const std::string& prefix, const std::string& peer);

// The listeners' TLS files, checked and staged in `staging_dir` and watched
// for changes; null for plaintext. Errors name the flag and the file.
absl::StatusOr<std::unique_ptr<TlsFiles>> PrepareServerTls(
    const DaemonFlags& flags, const std::string& staging_dir);

// The same for a client side; `prefix` as given to AddClientTlsFlags.
absl::StatusOr<std::unique_ptr<TlsFiles>> PrepareClientTls(
    const ClientTlsFiles& tls, const std::string& prefix,
    const std::string& staging_dir, double watch_seconds);

// Adds --proxy (an HTTP CONNECT proxy for the channels toward `peer`,
// see common/proxy.h) bound to `proxy`.
void AddProxyFlag(CLI::App& app, std::string* proxy, const std::string& peer);

// Adds --log-level and --log-format, binds every flag to its VARAN_* variable
// and writes the footer: how flags, environment and file combine, then
// `example`. Call after all other options are added.
void FinishDaemonFlags(CLI::App& app, DaemonFlags* flags,
                       const std::string& env_example,
                       const std::string& example);

// Parses the --listen values and checks that each can be bound (after the
// IPv6 fallback). Errors name the flag and the value.
absl::StatusOr<std::vector<HostPort>> PrepareListeners(
    const std::vector<std::string>& listen);

// Logs "NAME VERSION listening on ... (TLS|mutual TLS|plaintext)" and, for
// plaintext when any address is not loopback, a warning (`plaintext_risk`
// says what crosses the network unencrypted).
void LogListening(const std::string& name, const RunningServer& server,
                  const std::string& plaintext_risk,
                  const ServerTlsFiles& tls = {});

}  // namespace varan
