// varanctl: the command-line client for varan-core.
#include <algorithm>
#include <iostream>

#include "CLI/CLI.hpp"
#include "client/cli/cli.h"
#include "varan/version.h"

int main(int argc, char** argv) {
  CLI::App app{"varanctl: run commands on your fleet through varan-core",
               "varanctl"};
  app.set_version_flag("--version", std::string("varanctl ") + varan::kVersion);
  app.require_subcommand(1);
  varan::cli::GlobalOptions global;
  varan::cli::AddGlobalOptions(app, &global);
  int exit_code = 0;
  varan::cli::SetupPeripheries(app, &global, &exit_code);
  varan::cli::SetupExec(app, &global, &exit_code);
  varan::cli::SetupJobs(app, &global, &exit_code);
  app.add_subcommand("version", "Print varanctl's version")->callback([] {
    std::cout << "varanctl " << varan::kVersion << "\n";
  });
  app.footer(
      "Environment: VARAN_CORE (core address), VARAN_TOKEN_FILE or "
      "VARAN_TOKEN (operator token). Flags win.\n\n"
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
