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
