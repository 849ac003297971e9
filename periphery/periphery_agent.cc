#include "periphery/periphery_agent.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/keepalive.h"
#include "common/log.h"
#include "common/proxy.h"
#include "common/secrets.h"
#include "periphery/core_trust.h"
#include "periphery/identity.h"
#include "periphery/uplink/core_connection.h"
#include "varan/version.h"

namespace varan::periphery {
namespace {

// `status` with `prefix` before its message (same code).
absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& labels) {
  std::map<std::string, std::string> out;
  for (const auto& l : labels) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label \"", l, "\": expected key=value"));
    }
    out[l.substr(0, eq)] = l.substr(eq + 1);
  }
  return out;
}

// The join token is needed only for the first registration: once core
// issued a credential (kept in the state directory) the file may be
// deleted. "" when there is none (and a saved registration).
absl::StatusOr<std::string> ReadJoinToken(const PeripheryConfig& config) {
  if (config.join_token_file.empty()) {
    if (HasSavedRegistration(config.state_dir)) return std::string();
    return absl::InvalidArgumentError(
        absl::StrCat("--join-token-file is required: ", config.state_dir,
                     " holds no credential from an earlier registration"));
  }
  auto token = ReadSecretFile(config.join_token_file);
  if (!token.ok()) return Prefixed("join token: ", token.status());
  if (std::string w = LoosePermissionsWarning(config.join_token_file);
      !w.empty()) {
    spdlog::warn("{}", w);
  }
  return token;
}

}  // namespace

PeripheryAgent::PeripheryAgent(Passkey, absl::Duration kill_grace)
    : kill_grace_(kill_grace) {}

absl::StatusOr<std::unique_ptr<PeripheryAgent>> PeripheryAgent::Start(
    const PeripheryConfig& config, const Clock* clock) {
  if (config.core.empty()) {
    return absl::InvalidArgumentError(
        "--core is required (e.g. --core [::1]:7700)");
  }
  if (config.no_listen && !config.tunnel) {
    return absl::InvalidArgumentError(
        "--no-listen needs --tunnel: without a port or a tunnel core could "
        "never reach this periphery");
  }
  auto cores = ParseDialAddressList(config.core, 7700);
  if (!cores.ok()) return Prefixed("--core: ", cores.status());
  if (absl::Status s = CheckProxyUrl(config.proxy); !s.ok()) return s;
  auto labels = ParseLabels(config.labels);
  if (!labels.ok()) return labels.status();

  auto agent = std::make_unique<PeripheryAgent>(
      Passkey(), absl::Seconds(config.kill_grace_seconds));
  // Facts are gathered once; stats are sampled by the uplink per heartbeat.
  agent->host_ = std::make_unique<HostSnapshot>(CollectFacts());
  agent->host_->Sample();
  const std::string name =
      config.name.empty() ? agent->host_->facts().hostname() : config.name;
  // Find out before touching any file whether the listeners can be created.
  absl::StatusOr<std::vector<HostPort>> listen_addrs =
      config.no_listen ? std::vector<HostPort>()
                       : PrepareListeners(config.daemon.listen);
  if (!listen_addrs.ok()) return listen_addrs.status();
  // As many descriptors as the hard limit allows (process-wide).
  RaiseFileLimit();
  auto guard_options = GuardOptions(config.daemon);
  if (!guard_options.ok()) return guard_options.status();
  if (absl::Status s = EnsurePrivateDir(config.state_dir); !s.ok()) return s;
  auto join_token = ReadJoinToken(config);
  if (!join_token.ok()) return join_token.status();
  const JoinTokenText join = SplitJoinToken(*join_token);
  agent->guard_ = std::make_unique<PeerGuard>(clock, *std::move(guard_options));
  // Certificates are checked now, staged in <state-dir>/tls and re-read on
  // change and on SIGHUP (common/tls.h).
  auto core_tls = PrepareClientTls(config.core_tls, "core-",
                                   config.state_dir + "/tls/core-client",
                                   config.daemon.tls_watch_seconds);
  if (!core_tls.ok()) return core_tls.status();
  agent->core_tls_ = *std::move(core_tls);
  CoreTrustInputs trust_inputs;
  trust_inputs.core_tls = agent->core_tls_.get();
  trust_inputs.core_tls_server_name = config.core_tls.server_name;
  trust_inputs.ca_hash = config.core_ca_hash;
  trust_inputs.join_token_pin = join.pin;
  trust_inputs.insecure_plaintext = config.insecure_plaintext;
  trust_inputs.state_dir = config.state_dir;
  auto trust = DecideCoreTrust(trust_inputs);
  if (!trust.ok()) return trust.status();
  if (trust->pins != nullptr) {
    if (config.daemon.tls.enabled() || !config.daemon.tls.client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert/--tls-key/--tls-client-ca: with core's cluster CA "
          "pinned, the periphery serves the certificate core issues it and "
          "takes calls from core's alone; drop them, or give core's CA with "
          "--core-tls-ca for operator certificates throughout");
    }
    auto identity = PeripheryIdentity::Open(config.state_dir);
    if (!identity.ok()) return Prefixed("--state-dir: ", identity.status());
    agent->identity_ = *std::move(identity);
  } else if (!config.no_listen) {
    auto server_tls =
        PrepareServerTls(config.daemon, config.state_dir + "/tls/server");
    if (!server_tls.ok()) return server_tls.status();
    agent->server_tls_ = *std::move(server_tls);
  }

  ExecutorOptions executor_options;
  executor_options.max_concurrent = config.max_concurrent;
  executor_options.execution.kill_grace = agent->kill_grace_;
  executor_options.execution.default_working_dir = config.state_dir;
  executor_options.execution.tail_bytes = config.output_tail;
  executor_options.max_held = config.held_results;
  executor_options.hold_for =
      absl::Seconds(static_cast<int64_t>(config.held_results_hours * 3600));
  agent->executor_ = std::make_unique<Executor>(executor_options);
  agent->agent_ = std::make_unique<AgentService>(
      &agent->credential_, agent->host_.get(), agent->executor_.get(),
      agent->guard_.get());
  // Core calls with its own certificate of a pinned CA.
  agent->core_pins_ = std::move(trust->pins);
  agent->agent_->set_core_pins(agent->core_pins_.get());
  const Keepalive keepalive{absl::Seconds(config.keepalive_time_seconds),
                            absl::Seconds(config.keepalive_timeout_seconds)};

  if (!config.no_listen) {
    auto started = StartServer(
        *listen_addrs, {agent->agent_.get()}, ServerKeepaliveArgs(keepalive),
        agent->identity_ != nullptr
            // Asked for, not required: the health service stays open to
            // probes without one; the Agent service checks core's.
            ? MakeServerCredentials(agent->identity_->files(),
                                    ClientCertificates::kRequest)
            : MakeServerCredentials(agent->server_tls_.get(),
                                    config.daemon.tls.client_ca.empty()
                                        ? ClientCertificates::kNone
                                        : ClientCertificates::kRequireVerified),
        ListenerOptionsFrom(config.daemon));
    if (!started.ok()) return started.status();
    agent->server_ = *std::move(started);
    // What the listener serves, for the log: the certificate core issues
    // (files the identity keeps), or the operator's.
    ServerTlsFiles serving = config.daemon.tls;
    if (agent->identity_ != nullptr) {
      serving.cert = config.state_dir + "/periphery.crt";
      serving.key = config.state_dir + "/periphery.key";
    }
    LogListening("varan-periphery", agent->server_,
                 "callers are authenticated by credential, but traffic is "
                 "not encrypted",
                 serving);
    auto address = AdvertiseAddress(config.advertise,
                                    agent->server_.addresses.front(), *cores);
    if (!address.ok()) return address.status();
    agent->advertised_ = *address;
  } else {
    spdlog::info("varan-periphery {} serves no port (--no-listen)", kVersion);
  }

  UplinkOptions uplink_options;
  uplink_options.cores = *cores;
  uplink_options.join_token = join.secret;
  uplink_options.name = name;
  uplink_options.labels = *std::move(labels);
  uplink_options.advertise_address = agent->advertised_;
  uplink_options.advertise_toward_core =
      !config.no_listen && config.advertise.empty() &&
      IsWildcardHost(agent->server_.addresses.front().host);
  uplink_options.state_dir = config.state_dir;
  uplink_options.tunnel = config.tunnel;
  uplink_options.max_backoff = absl::Seconds(config.reconnect_max_seconds);
  uplink_options.keepalive_time = keepalive.time;
  uplink_options.keepalive_timeout = keepalive.timeout;
  uplink_options.security = trust->security;
  spdlog::info("connections to core: {}", trust->description);
  uplink_options.proxy = config.proxy;
  LogProxy(config.proxy, "core");
  uplink_options.certificates = agent->identity_.get();
  uplink_options.core_pins = agent->core_pins_.get();
  CoreConnector connect =
      [uplink_options, clock, identity = agent->identity_.get(),
       pins = agent->core_pins_.get()](const HostPort& core) {
        if (identity == nullptr || pins == nullptr) {
          return NewGrpcCoreConnection(core, uplink_options, clock);
        }
        // Each connection presents the certificate held when it is made, and
        // trusts the pins of that moment.
        UplinkOptions options = uplink_options;
        options.security = MakePinnedSecurity(pins->Get(), identity->key_pem(),
                                              identity->cert_pem());
        return NewGrpcCoreConnection(core, options, clock);
      };
  agent->uplink_ = std::make_unique<Uplink>(
      uplink_options, std::move(connect), &agent->credential_,
      agent->host_.get(), agent->executor_.get(), clock);
  agent->uplink_->Start();
  return agent;
}

PeripheryAgent::~PeripheryAgent() { Shutdown(absl::Seconds(2)); }

void PeripheryAgent::Reload() {
  for (const auto* tls : {&server_tls_, &core_tls_}) {
    if (*tls != nullptr) (void)(*tls)->Reload();
  }
}

void PeripheryAgent::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (uplink_ != nullptr) uplink_->Stop();
  // Running commands are stopped (SIGTERM, then SIGKILL after the grace)
  // so nothing is left behind.
  if (agent_ != nullptr && !agent_->CancelAllAndWait(kill_grace_ + grace)) {
    spdlog::warn("some commands did not stop in time");
  }
  if (server_.server != nullptr) {
    server_.Shutdown(absl::Now() + grace);
    server_.server->Wait();
  }
}

}  // namespace varan::periphery
