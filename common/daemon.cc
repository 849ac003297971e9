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
                  const std::string& plaintext_risk) {
  std::vector<std::string> bound;
  for (const auto& hp : server.addresses) bound.push_back(FormatHostPort(hp));
  spdlog::info("{} {} listening on {}", name, kVersion,
               absl::StrJoin(bound, ", "));
  for (const auto& hp : server.addresses) {
    if (!IsLoopbackHost(hp.host)) {
      spdlog::warn("serving plaintext gRPC on {}: {}", FormatHostPort(hp),
                   plaintext_risk);
      return;
    }
  }
}

}  // namespace varan
