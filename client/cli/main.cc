// varanctl: the command-line client for varan-core.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "client/cli/cli.h"
#include "common/heap.h"
#include "varan/version.h"

namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// VARAN_CONFIG_FILE, else $XDG_CONFIG_HOME/varan/config.toml, else
// ~/.config/varan/config.toml; empty when there is no HOME either.
std::string ConfigFile() {
  if (std::string f = Env("VARAN_CONFIG_FILE"); !f.empty()) return f;
  if (std::string x = Env("XDG_CONFIG_HOME"); !x.empty()) {
    return x + "/varan/config.toml";
  }
  if (std::string h = Env("HOME"); !h.empty()) {
    return h + "/.config/varan/config.toml";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  varan::KeepHeapForStreams();
  CLI::App app{"varanctl: run commands on your fleet through varan-core",
               "varanctl"};
  app.set_version_flag("--version", std::string("varanctl ") + varan::kVersion);
  app.require_subcommand(1);
  varan::cli::GlobalOptions global;
  varan::cli::AddGlobalOptions(app, &global);
  global.token_env = Env("VARAN_TOKEN");
  global.config_file = ConfigFile();
  const bool no_color = !Env("NO_COLOR").empty();
  global.color_stdout = isatty(STDOUT_FILENO) && !no_color;
  global.color_stderr = isatty(STDERR_FILENO) && !no_color;
  global.progress = isatty(STDERR_FILENO);
  int exit_code = 0;
  varan::cli::SetupPeripheries(app, &global, &exit_code);
  varan::cli::SetupExec(app, &global, &exit_code);
  varan::cli::SetupJobs(app, &global, &exit_code);
  varan::cli::SetupVersion(app, &global, &exit_code);
  varan::cli::SetupTokens(app, &global, &exit_code);
  varan::cli::SetupJoinTokens(app, &global, &exit_code);
  varan::cli::SetupCa(app, &global, &exit_code);
  varan::cli::SetupCerts(app, &global, &exit_code);
  varan::cli::SetupConfig(app, &global, &exit_code);
  varan::cli::SetupCompletion(app, &exit_code);
  app.footer(
      "Environment: VARAN_CORE (core address), VARAN_TOKEN_FILE or "
      "VARAN_TOKEN (operator token), VARAN_TLS_CA, VARAN_TLS_CERT, "
      "VARAN_TLS_KEY, VARAN_TLS_SERVER_NAME (TLS toward core), "
      "VARAN_CONFIG_FILE (contexts file, see varanctl config --help), "
      "NO_COLOR. Flags win over the environment, which wins over the current "
      "context.\n\n"
      "Examples:\n  varanctl --token-file .varan/core/admin.token peripheries "
      "list\n"
      "  varanctl exec -n web-1 -- uname -a");
  // Everything after the first "--" is the remote command, passed through
  // untouched even when it contains words like "-a".
  std::vector<std::string> args;
  bool dashes = false;
  for (int i = argc - 1; i >= 1; --i) args.push_back(argv[i]);  // reversed
  std::vector<std::string> parse_args;
  for (auto it = args.rbegin(); it != args.rend(); ++it) {
    if (!dashes && *it == "--") {
      dashes = true;
      continue;
    }
    (dashes ? global.after_dashes : parse_args).push_back(*it);
  }
  std::reverse(parse_args.begin(), parse_args.end());
  try {
    app.parse(parse_args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "varanctl: error: " << e.what() << "\n";
    return varan::cli::kExitUsage;
  }
  return exit_code;
}
