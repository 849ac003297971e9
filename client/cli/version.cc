// varanctl version: this varanctl's version and, when core answers, core's.
#include "varan/version.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli/cli.h"
#include "common/time_util.h"

namespace varan::cli {
namespace {

google::protobuf::Value StringValue(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}

int RunVersion(const GlobalOptions& global, const std::string& output) {
  absl::StatusOr<varan::v1::CoreInfo> info;
  std::string address;
  auto client = Connect(global);
  if (client.ok()) {
    address = (*client)->address();
    info = (*client)->GetInfo();
  } else {
    info = client.status();
  }
  if (output == "json" || output == "yaml") {
    google::protobuf::Value root;
    auto& fields = *root.mutable_struct_value()->mutable_fields();
    google::protobuf::Value client_value;
    (*client_value.mutable_struct_value()->mutable_fields())["version"] =
        StringValue(kVersion);
    fields["client"] = client_value;
    if (!address.empty()) fields["core_address"] = StringValue(address);
    if (info.ok()) {
      auto core = MessageToValue(*info);
      if (!core.ok()) return Fail(core.status());
      fields["core"] = *core;
    } else {
      fields["core_error"] = StringValue(std::string(info.status().message()));
    }
    PrintValue(root, output);
    return info.ok() ? 0 : kExitUsage;
  }
  std::cout << "varanctl " << kVersion << "\n";
  if (!info.ok()) {
    std::cout << std::flush;
    return Fail(info.status());
  }
  std::cout << "varan-core " << info->version() << " at " << address << " (up "
            << absl::FormatDuration(
                   absl::Trunc(absl::Now() - FromTimestamp(info->start_time()),
                               absl::Seconds(1)))
            << ", " << info->peripheries_online() << " of "
            << info->peripheries() << " peripheries online)\n";
  return 0;
}

}  // namespace

void SetupVersion(CLI::App& app, GlobalOptions* global, int* exit_code) {
  auto output = std::make_shared<std::string>("table");
  CLI::App* cmd = app.add_subcommand(
      "version", "Print varanctl's version and, when core answers, core's");
  cmd->add_option("-o,--output", *output, kOutputHelp)->check(OutputFormat());
  cmd->footer(
      "Exit code: 0 when core answered; 2 when it could not be asked (the "
      "error says why; varanctl's own version is printed anyway).\n\n"
      "Examples:\n  varanctl version\n  varanctl --core core.example:7700 "
      "version -o json");
  cmd->callback([global, output, exit_code] {
    *exit_code = RunVersion(*global, *output);
  });
}

}  // namespace varan::cli
