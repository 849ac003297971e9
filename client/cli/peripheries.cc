// varanctl peripheries list|get
#include <iostream>
#include <map>

#include "absl/strings/str_join.h"
#include "client/cli/cli.h"

namespace varan::cli {
namespace {

struct ListOptions {
  std::string selector;
  std::vector<std::string> names;
  std::string output = "table";
};

std::string StateName(varan::v1::PeripheryState s) {
  switch (s) {
    case varan::v1::PERIPHERY_STATE_ONLINE:
      return "online";
    case varan::v1::PERIPHERY_STATE_OFFLINE:
      return "offline";
    default:
      return "unknown";
  }
}

std::string LabelsText(
    const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  return sorted.empty() ? "<none>"
                        : absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

int RunList(const GlobalOptions& global, const ListOptions& opts) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  varan::v1::Target target;
  target.set_selector(opts.selector);
  for (const auto& n : opts.names) target.add_names(n);
  auto list = (*client)->ListPeripheries(target);
  if (!list.ok()) return Fail(list.status());
  if (opts.output == "json") {
    varan::v1::ListPeripheriesResponse resp;
    for (const auto& p : *list) *resp.add_peripheries() = p;
    PrintJson(resp);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "ADDRESS", "LABELS", "LAST SEEN", "VERSION", "OS"}};
  for (const auto& p : *list) {
    rows.push_back({p.name(), StateName(p.state()), p.address(),
                    LabelsText(p.labels()), Ago(p.last_seen()), p.version(),
                    p.facts().os()});
  }
  PrintTable(rows);
  return 0;
}

int RunGet(const GlobalOptions& global, const std::string& name,
           const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto p = (*client)->GetPeriphery(name);
  if (!p.ok()) return Fail(p.status());
  if (output == "json") {
    PrintJson(*p);
    return 0;
  }
  const auto& f = p->facts();
  PrintTable(
      {{"Name:", p->name()},
       {"ID:", p->id()},
       {"State:", StateName(p->state())},
       {"Address:", p->address()},
       {"Connected from:", p->peer_address()},
       {"Labels:", LabelsText(p->labels())},
       {"Last seen:", Ago(p->last_seen())},
       {"First seen:", Ago(p->first_seen())},
       {"Version:", p->version()},
       {"Host name:", f.hostname()},
       {"OS:", f.os()},
       {"Kernel:", absl::StrCat(f.kernel(), " (", f.arch(), ")")},
       {"CPUs:", absl::StrCat(f.cpu_count(), " ", f.cpu_model())},
       {"Memory:", absl::StrCat(f.memory_total_bytes() >> 20, " MiB")},
       {"Load:", absl::StrCat(p->stats().load1(), " ", p->stats().load5(), " ",
                              p->stats().load15())},
       {"Running:", absl::StrCat(p->stats().running_executions())}});
  return 0;
}

}  // namespace

void SetupPeripheries(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("peripheries", "List and inspect peripheries")
          ->alias("p")
          ->require_subcommand(1);
  auto list_opts = std::make_shared<ListOptions>();
  CLI::App* list = cmd->add_subcommand("list", "List peripheries");
  list->alias("ls");
  list->add_option("-l,--selector", list_opts->selector,
                   "Label selector, e.g. 'env=prod,tier in (web,api)'");
  list->add_option("-n,--name", list_opts->names, "Periphery name; repeatable");
  list->add_option("-o,--output", list_opts->output, "table or json")
      ->check(OutputFormat());
  list->footer("Example:\n  varanctl peripheries list -l env=prod -o json");
  list->callback([global, list_opts, exit_code] {
    *exit_code = RunList(*global, *list_opts);
  });

  auto name = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>("table");
  CLI::App* get = cmd->add_subcommand("get", "Show one periphery");
  get->add_option("name", *name, "Periphery name or id")->required();
  get->add_option("-o,--output", *output, "table or json")
      ->check(OutputFormat());
  get->footer("Example:\n  varanctl peripheries get web-1");
  get->callback([global, name, output, exit_code] {
    *exit_code = RunGet(*global, *name, *output);
  });
}

}  // namespace varan::cli
