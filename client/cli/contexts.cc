// varanctl config get-contexts|use-context|set-context: named core
// addresses and token files in the config file (client/cli/config.h).
#include <unistd.h>

#include <climits>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/cli.h"
#include "client/cli/config.h"
#include "common/pki.h"

namespace varan::cli {
namespace {

// Relative paths are made absolute, so the context works from any
// directory.
std::string Absolute(const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

int RunGetContexts(const GlobalOptions& global, const std::string& output) {
  auto file = LoadContexts(global.config_file);
  if (!file.ok()) return Fail(file.status());
  if (output == "json" || output == "yaml") {
    google::protobuf::Value root;
    auto& fields = *root.mutable_struct_value()->mutable_fields();
    fields["current_context"].set_string_value(file->current);
    auto& list = *fields["contexts"].mutable_list_value();
    for (const auto& [name, c] : file->contexts) {
      auto& f = *list.add_values()->mutable_struct_value()->mutable_fields();
      f["name"].set_string_value(name);
      f["core"].set_string_value(c.core);
      f["token_file"].set_string_value(c.token_file);
      f["tls_ca"].set_string_value(c.tls_ca);
      f["tls_cert"].set_string_value(c.tls_cert);
      f["tls_key"].set_string_value(c.tls_key);
      f["tls_server_name"].set_string_value(c.tls_server_name);
    }
    PrintValue(root, output);
    return 0;
  }
  if (file->contexts.empty()) {
    std::cerr << "varanctl: no contexts in " << global.config_file
              << " (add one with varanctl config set-context)\n";
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"CURRENT", "NAME", "CORE", "TOKEN FILE", "TLS CA"}};
  for (const auto& [name, c] : file->contexts) {
    rows.push_back({name == file->current ? "*" : "", name, c.core,
                    c.token_file, c.tls_ca});
  }
  PrintTable(rows);
  return 0;
}

int RunUseContext(const GlobalOptions& global, const std::string& name) {
  auto file = LoadContexts(global.config_file);
  if (!file.ok()) return Fail(file.status());
  if (file->contexts.count(name) == 0) {
    return Fail(absl::StrCat("no context named \"", name, "\" in ",
                             global.config_file,
                             " (varanctl config get-contexts)"));
  }
  file->current = name;
  absl::Status s = SaveContexts(global.config_file, *file);
  if (!s.ok()) return Fail(s);
  std::cout << "now using context " << name << "\n";
  return 0;
}

struct SetOptions {
  std::string name;
  std::string core;
  std::string token_file;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string ca_hash;
};

int RunSetContext(const GlobalOptions& global, const SetOptions& opts) {
  auto file = LoadContexts(global.config_file);
  if (!file.ok()) return Fail(file.status());
  const bool created = file->contexts.count(opts.name) == 0;
  Context& c = file->contexts[opts.name];
  if (!opts.core.empty()) c.core = opts.core;
  if (!opts.token_file.empty()) c.token_file = Absolute(opts.token_file);
  if (!opts.tls_ca.empty()) {
    c.tls_ca = opts.tls_ca == "system" ? opts.tls_ca : Absolute(opts.tls_ca);
  }
  if (!opts.tls_cert.empty()) c.tls_cert = Absolute(opts.tls_cert);
  if (!opts.tls_key.empty()) c.tls_key = Absolute(opts.tls_key);
  if (!opts.tls_server_name.empty()) c.tls_server_name = opts.tls_server_name;
  if (!opts.ca_hash.empty()) {
    auto pins = pki::ParsePins(opts.ca_hash, "--ca-hash");
    if (!pins.ok()) return Fail(pins.status());
    c.ca_hash = absl::StrJoin(*pins, ",");
  }
  if (file->current.empty()) file->current = opts.name;
  absl::Status s = SaveContexts(global.config_file, *file);
  if (!s.ok()) return Fail(s);
  std::cout << (created ? "created" : "updated") << " context " << opts.name
            << (file->current == opts.name ? " (current)" : "") << "\n";
  return 0;
}

}  // namespace

void SetupConfig(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("config", "Manage contexts: named cores and tokens")
          ->require_subcommand(1);
  cmd->footer(
      "Contexts live in $VARAN_CONFIG_FILE, else "
      "$XDG_CONFIG_HOME/varan/config.toml, else ~/.config/varan/config.toml "
      "(mode 0600). Precedence: flags, then VARAN_CORE / VARAN_TOKEN_FILE / "
      "VARAN_TOKEN / VARAN_TLS_*, then the current context, then "
      "localhost:7700 (plaintext).\n\n"
      "Examples:\n"
      "  varanctl config set-context prod --core core.example:7700 "
      "--token-file ~/.varan/prod.token\n"
      "  varanctl config use-context prod\n"
      "  varanctl config get-contexts");

  auto get_output = std::make_shared<std::string>("table");
  CLI::App* get = cmd->add_subcommand(
      "get-contexts", "List contexts; the current one is marked *");
  get->add_option("-o,--output", *get_output, kOutputHelp)
      ->check(OutputFormat());
  get->footer("Example:\n  varanctl config get-contexts -o yaml");
  get->callback([global, get_output, exit_code] {
    *exit_code = RunGetContexts(*global, *get_output);
  });

  auto use_name = std::make_shared<std::string>();
  CLI::App* use =
      cmd->add_subcommand("use-context", "Make a context the current one");
  use->add_option("name", *use_name, "Context name")->required();
  use->footer("Example:\n  varanctl config use-context staging");
  use->callback([global, use_name, exit_code] {
    *exit_code = RunUseContext(*global, *use_name);
  });

  auto set = std::make_shared<SetOptions>();
  CLI::App* set_cmd = cmd->add_subcommand(
      "set-context",
      "Create or update a context (the first one becomes current)");
  set_cmd->add_option("name", set->name, "Context name")->required();
  // Subcommand options named like the global ones: CLI11 matches the
  // innermost, so these do not change the global --core / --token-file.
  set_cmd->add_option("--core", set->core, "Core address");
  set_cmd->add_option("--token-file", set->token_file,
                      "File holding the operator token (stored absolute)");
  set_cmd->add_option("--tls-ca", set->tls_ca,
                      "PEM CA bundle to verify core's TLS certificate with "
                      "(stored absolute), or \"system\"");
  set_cmd->add_option("--tls-cert", set->tls_cert,
                      "PEM client certificate, when core requires mutual TLS");
  set_cmd->add_option("--tls-key", set->tls_key, "PEM key of --tls-cert");
  set_cmd->add_option("--tls-server-name", set->tls_server_name,
                      "Name core's certificate carries, when it differs from "
                      "the address");
  set_cmd->add_option("--ca-hash", set->ca_hash,
                      "Pin of core's cluster CA (sha256:..., as varan-core "
                      "logs it), instead of --tls-ca");
  set_cmd->footer(
      "Only the flags given change; the others keep their values.\n\n"
      "Example:\n  varanctl config set-context prod --core "
      "core.example:7700 --token-file ~/.varan/prod.token");
  set_cmd->callback(
      [global, set, exit_code] { *exit_code = RunSetContext(*global, *set); });
}

}  // namespace varan::cli
