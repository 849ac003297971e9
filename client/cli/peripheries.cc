// varanctl peripheries list|get|remove|label
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/cli.h"
#include "common/time_util.h"

namespace varan::cli {

std::vector<std::vector<std::string>> PeripheryRows(
    const std::vector<varan::v1::Periphery>& peripheries, bool wide,
    absl::Time now) {
  std::vector<std::vector<std::string>> rows;
  if (wide) {
    rows.push_back({"NAME", "ID", "STATE", "CONNECTION", "ADDRESS",
                    "PEER ADDRESS", "LABELS", "LAST SEEN", "VERSION", "OS",
                    "KERNEL"});
  } else {
    rows.push_back({"NAME", "STATE", "CONNECTION", "ADDRESS", "LABELS",
                    "LAST SEEN", "VERSION", "OS"});
  }
  for (const auto& p : peripheries) {
    if (wide) {
      rows.push_back(
          {p.name(), p.id(), StateName(p.state()),
           ConnectionName(p.connection()), p.address(), p.peer_address(),
           LabelsText(p.labels()), Ago(p.last_seen(), now), p.version(),
           p.facts().os(),
           absl::StrCat(p.facts().kernel(), " (", p.facts().arch(), ")")});
    } else {
      rows.push_back({p.name(), StateName(p.state()),
                      ConnectionName(p.connection()), p.address(),
                      LabelsText(p.labels()), Ago(p.last_seen(), now),
                      p.version(), p.facts().os()});
    }
  }
  return rows;
}

namespace {

struct ListOptions {
  std::string selector;
  std::vector<std::string> names;
  bool include_removed = false;
  bool all = false;  // the default; the flag is for symmetry with exec
  std::string output = "table";
};

int RunList(const GlobalOptions& global, const ListOptions& opts) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  varan::v1::Target target;
  target.set_selector(opts.selector);
  for (const auto& n : opts.names) target.add_names(n);
  auto list = (*client)->ListPeripheries(target, opts.include_removed);
  if (!list.ok()) return Fail(list.status());
  varan::v1::ListPeripheriesResponse resp;
  for (const auto& p : *list) *resp.add_peripheries() = p;
  if (PrintStructured(resp, opts.output)) return 0;
  PrintTable(PeripheryRows(*list, opts.output == "wide"));
  return 0;
}

int RunGet(const GlobalOptions& global, const std::string& name,
           const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto p = (*client)->GetPeriphery(name);
  if (!p.ok()) return Fail(p.status());
  if (PrintStructured(*p, output)) return 0;
  const auto& f = p->facts();
  const std::map<std::string, std::string> labels(p->labels().begin(),
                                                  p->labels().end());
  const std::map<std::string, std::string> reported(
      p->reported_labels().begin(), p->reported_labels().end());
  // Reported labels only when an operator's changes made them differ.
  const std::string reported_text =
      labels == reported ? "(same)" : LabelsText(p->reported_labels());
  const std::string heartbeat =
      p->has_heartbeat_interval()
          ? absl::StrCat("every ", absl::FormatDuration(
                                       FromDuration(p->heartbeat_interval())))
          : "";
  PrintTable(
      {{"Name:", p->name()},
       {"ID:", p->id()},
       {"State:", StateName(p->state())},
       {"Connection:", ConnectionName(p->connection())},
       {"Address:", p->address()},
       {"Connected from:", p->peer_address()},
       {"Labels:", LabelsText(p->labels())},
       {"Reported labels:", reported_text},
       {"Heartbeat:", heartbeat},
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

int RunRemove(const GlobalOptions& global, const std::string& name,
              const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto p = (*client)->RemovePeriphery(name);
  if (!p.ok()) return Fail(p.status());
  if (PrintStructured(*p, output)) return 0;
  std::cout << "removed periphery " << p->name() << " (id " << p->id() << ")\n";
  return 0;
}

}  // namespace

absl::StatusOr<varan::v1::UpdateLabelsRequest> ParseLabelChanges(
    const std::string& name, const std::vector<std::string>& changes) {
  varan::v1::UpdateLabelsRequest req;
  req.set_name_or_id(name);
  auto& set = *req.mutable_set();
  std::set<std::string> remove;
  for (const auto& change : changes) {
    size_t eq = change.find('=');
    if (eq != std::string::npos) {
      std::string key = change.substr(0, eq);
      std::string value = change.substr(eq + 1);
      if (key.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", change, "\": the label key is empty"));
      }
      if (remove.count(key) > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("label \"", key, "\" is both set and removed"));
      }
      auto [it, inserted] = set.insert({key, value});
      if (!inserted && it->second != value) {
        return absl::InvalidArgumentError(absl::StrCat(
            "label \"", key, "\" is set twice, to different values"));
      }
    } else if (change.size() > 1 && change.back() == '-') {
      std::string key = change.substr(0, change.size() - 1);
      if (set.count(key) > 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("label \"", key, "\" is both set and removed"));
      }
      if (remove.insert(key).second) req.add_remove(key);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", change,
                       "\": expected KEY=VALUE to set a label or KEY- to "
                       "remove one"));
    }
  }
  return req;
}

namespace {

int RunLabel(const GlobalOptions& global, const std::string& name,
             const std::vector<std::string>& changes,
             const std::string& output) {
  if (changes.empty()) {
    return Fail(
        "no label changes given (e.g. varanctl peripheries label web-1 "
        "env=prod canary-)");
  }
  auto req = ParseLabelChanges(name, changes);
  if (!req.ok()) return Fail(req.status());
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto p = (*client)->UpdateLabels(*req);
  if (!p.ok()) return Fail(p.status());
  if (PrintStructured(*p, output)) return 0;
  std::cout << p->name() << ": " << LabelsText(p->labels()) << "\n";
  return 0;
}

}  // namespace

void SetupPeripheries(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("peripheries",
                         "List, inspect, label and remove peripheries")
          ->alias("p")
          ->require_subcommand(1);
  auto list_opts = std::make_shared<ListOptions>();
  CLI::App* list = cmd->add_subcommand("list", "List peripheries");
  list->alias("ls");
  CLI::Option* selector =
      list->add_option("-l,--selector", list_opts->selector,
                       "Label selector, e.g. 'env=prod,tier in (web,api)'");
  CLI::Option* names = list->add_option("-n,--name", list_opts->names,
                                        "Periphery name; repeatable");
  list->add_flag("--all", list_opts->all,
                 "Every periphery (the default without -l or -n)")
      ->excludes(selector)
      ->excludes(names);
  list->add_flag("--include-removed", list_opts->include_removed,
                 "Also list peripheries an operator removed");
  list->add_option("-o,--output", list_opts->output, kOutputHelp)
      ->check(OutputFormat());
  list->footer(
      "Examples:\n  varanctl peripheries list -l env=prod -o json\n"
      "  varanctl peripheries list -o wide");
  list->callback([global, list_opts, exit_code] {
    *exit_code = RunList(*global, *list_opts);
  });

  auto name = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>("table");
  CLI::App* get = cmd->add_subcommand("get", "Show one periphery");
  get->add_option("name", *name, "Periphery name or id")->required();
  get->add_option("-o,--output", *output, kOutputHelp)->check(OutputFormat());
  get->footer("Example:\n  varanctl peripheries get web-1");
  get->callback([global, name, output, exit_code] {
    *exit_code = RunGet(*global, *name, *output);
  });

  auto remove_name = std::make_shared<std::string>();
  auto remove_output = std::make_shared<std::string>("table");
  CLI::App* remove =
      cmd->add_subcommand("remove", "Remove a periphery from the fleet");
  remove->alias("rm");
  remove->add_option("name", *remove_name, "Periphery name or id")->required();
  remove->add_option("-o,--output", *remove_output, kOutputHelp)
      ->check(OutputFormat());
  remove->footer(
      "Its credential stops working at once and its running targets become "
      "lost; peripheries list shows it only with --include-removed. A "
      "periphery that is still running registers again with its join token, "
      "as a new periphery: stop it first (or revoke the join token) to keep "
      "it out.\n\nExample:\n  varanctl peripheries remove web-1");
  remove->callback([global, remove_name, remove_output, exit_code] {
    *exit_code = RunRemove(*global, *remove_name, *remove_output);
  });

  auto label_name = std::make_shared<std::string>();
  auto label_changes = std::make_shared<std::vector<std::string>>();
  auto label_output = std::make_shared<std::string>("table");
  CLI::App* label =
      cmd->add_subcommand("label", "Set or remove labels of a periphery");
  label->add_option("name", *label_name, "Periphery name or id")->required();
  label->add_option("changes", *label_changes,
                    "KEY=VALUE to set a label, KEY- to remove one");
  label->add_option("-o,--output", *label_output, kOutputHelp)
      ->check(OutputFormat());
  label->footer(
      "Labels set here override the ones the periphery reports (its "
      "--label flags) and survive its restarts and re-registration; "
      "removing a label it reports hides it. Prints the labels that "
      "result.\n\nExamples:\n"
      "  varanctl peripheries label web-1 env=prod tier=web\n"
      "  varanctl peripheries label web-1 draining= canary-");
  label->callback([global, label_name, label_changes, label_output, exit_code] {
    *exit_code = RunLabel(*global, *label_name, *label_changes, *label_output);
  });
}

}  // namespace varan::cli
