#include "common/config.h"

#include <cstdio>
#include <iostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "toml++/toml.h"

namespace varan {
namespace {

// TOML scalar as the string CLI11 would have received on the command line.
bool ScalarToString(const toml::node& node, std::string* out) {
  if (auto s = node.as_string()) {
    *out = s->get();
  } else if (auto i = node.as_integer()) {
    *out = std::to_string(i->get());
  } else if (auto f = node.as_floating_point()) {
    std::ostringstream os;
    os << f->get();
    *out = os.str();
  } else if (auto b = node.as_boolean()) {
    *out = b->get() ? "true" : "false";
  } else {
    return false;
  }
  return true;
}

}  // namespace

std::string EnvVarFor(const std::string& long_name) {
  return absl::StrCat("VARAN_", absl::AsciiStrToUpper(absl::StrReplaceAll(
                                    long_name, {{"-", "_"}})));
}

void BindEnvironment(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    const auto& names = opt->get_lnames();
    if (names.empty()) continue;
    const std::string& name = names.front();
    if (name == "help" || name == "version" || name == "config") continue;
    opt->envname(EnvVarFor(name));
  }
}

absl::Status ApplyConfigFile(CLI::App& app, const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    std::string what(e.description());
    if (what.find("File could not be opened") != std::string::npos) {
      return absl::NotFoundError(
          absl::StrCat("cannot read config file ", path));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", path, ":", where.line, ":", where.column, ": ", what));
  }
  for (const auto& [toml_key, node] : table) {
    const std::string key(toml_key);
    std::string name = absl::StrReplaceAll(key, {{"_", "-"}});
    std::string line = absl::StrCat(path, ":", node.source().begin.line);
    CLI::Option* opt = app.get_option_no_throw("--" + name);
    if (opt == nullptr || name == "help" || name == "version" ||
        name == "config") {
      return absl::InvalidArgumentError(
          absl::StrCat(line, ": unknown key \"", key, "\""));
    }
    if (opt->count() > 0) continue;  // a flag or env var already set it
    std::vector<std::string> values;
    if (const toml::array* arr = node.as_array()) {
      for (const toml::node& item : *arr) {
        std::string v;
        if (!ScalarToString(item, &v)) {
          return absl::InvalidArgumentError(absl::StrCat(
              line, ": \"", key, "\" must be an array of scalars"));
        }
        values.push_back(std::move(v));
      }
      if (values.size() > 1 && opt->get_items_expected_max() <= 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            line, ": \"", key, "\" takes one value, not an array"));
      }
    } else {
      std::string v;
      if (!ScalarToString(node, &v)) {
        return absl::InvalidArgumentError(absl::StrCat(
            line, ": \"", key, "\" must be a string, number or boolean"));
      }
      values.push_back(std::move(v));
    }
    try {
      for (auto& v : values) opt->add_result(v);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(line, ": \"", key, "\": ", e.what()));
    }
  }
  return absl::OkStatus();
}

bool ParseDaemonFlags(CLI::App& app, const std::string& config_path_option,
                      int argc, char** argv, int* exit_code) {
  const std::string name = app.get_name();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    *exit_code = app.exit(e);
    return false;
  } catch (const CLI::CallForAllHelp& e) {
    *exit_code = app.exit(e);
    return false;
  } catch (const CLI::CallForVersion& e) {
    *exit_code = app.exit(e);
    return false;
  } catch (const CLI::ParseError& e) {
    std::cerr << name << ": error: " << e.what() << "\n";
    *exit_code = 2;
    return false;
  }
  CLI::Option* config = app.get_option_no_throw(config_path_option);
  if (config != nullptr && config->count() > 0) {
    std::string path = config->as<std::string>();
    absl::Status status = ApplyConfigFile(app, path);
    if (!status.ok()) {
      std::cerr << name << ": error: " << status.message() << "\n";
      *exit_code = 2;
      return false;
    }
  }
  return true;
}

}  // namespace varan
