// varanctl exec: run a command on peripheries through core.
#include <unistd.h>

#include <iostream>

#include "absl/strings/str_join.h"
#include "client/cli/cli.h"
#include "client/cli/render.h"
#include "common/time_util.h"

namespace varan::cli {
namespace {

struct ExecOptions {
  std::string selector;
  std::vector<std::string> names;
  bool shell = false;
  bool async = false;
  bool prefix = false;
  bool no_prefix = false;
  bool group = false;
  bool all = false;
  bool dry_run = false;
  std::vector<std::string> env;
  std::string workdir;
  double timeout_seconds = 0;
  uint64_t output_limit = 0;
  bool stop_at_output_limit = false;
  bool survive = false;
  uint32_t parallel = 0;
  uint32_t stop_after_failures = 0;
  bool skip_offline = false;
  bool allow_no_targets = false;
  uint64_t capture_limit = 0;
  uint64_t output_head = 0;
  uint64_t output_tail = 0;
  std::vector<std::string> command;
};

// --dry-run: the peripheries `target` matches now, as exec would see them.
int DryRun(client::CoreClient& client, const varan::v1::Target& target) {
  auto list = client.ListPeripheries(target);
  if (!list.ok()) return Fail(list.status());
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "STATE", "ADDRESS", "LABELS"}};
  for (const auto& p : *list) {
    rows.push_back(
        {p.name(), StateName(p.state()), p.address(), LabelsText(p.labels())});
  }
  if (!list->empty()) PrintTable(rows);
  std::cerr << "varanctl: dry run: would run on " << list->size()
            << (list->size() == 1 ? " periphery" : " peripheries")
            << "; nothing ran\n";
  return 0;
}

int RunExec(const GlobalOptions& global, ExecOptions opts) {
  opts.command.insert(opts.command.end(), global.after_dashes.begin(),
                      global.after_dashes.end());
  if (opts.command.empty()) {
    return Fail("no command given (e.g. varanctl exec -n web-1 -- uname -a)");
  }
  if (opts.selector.empty() && opts.names.empty() && !opts.all) {
    return Fail("choose targets with -n NAME, -l SELECTOR or --all");
  }
  varan::v1::DispatchRequest req;
  req.mutable_target()->set_selector(opts.selector);
  for (const auto& n : opts.names) req.mutable_target()->add_names(n);
  auto* spec = req.mutable_spec();
  if (opts.shell) {
    spec->set_shell(absl::StrJoin(opts.command, " "));
  } else {
    for (const auto& a : opts.command) spec->add_argv(a);
  }
  for (const auto& kv : opts.env) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail("-e \"" + kv + "\": expected NAME=VALUE");
    }
    (*spec->mutable_env())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  spec->set_working_dir(opts.workdir);
  if (opts.timeout_seconds > 0) {
    SetDuration(absl::Seconds(opts.timeout_seconds), spec->mutable_timeout());
  }
  spec->set_output_limit_bytes(opts.output_limit);
  spec->set_stop_at_output_limit(opts.stop_at_output_limit);
  spec->set_survive_caller(opts.survive);
  auto* options = req.mutable_options();
  options->set_max_parallel(opts.parallel);
  options->set_stop_after_failures(opts.stop_after_failures);
  options->set_skip_offline(opts.skip_offline);
  options->set_allow_no_targets(opts.allow_no_targets);
  options->set_capture_limit_bytes(opts.capture_limit);
  options->set_output_head_bytes(opts.output_head);
  options->set_output_tail_bytes(opts.output_tail);

  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  if (opts.dry_run) return DryRun(**client, req.target());
  if (opts.async) {
    auto resp = (*client)->Dispatch(req);
    if (!resp.ok()) return Fail(resp.status());
    std::cout << resp->job_id() << "\n";
    return 0;
  }
  PrinterOptions popts;
  popts.prefix = opts.no_prefix ? PrinterOptions::Prefix::kNever
                 : opts.prefix  ? PrinterOptions::Prefix::kAlways
                                : PrinterOptions::Prefix::kAuto;
  popts.group = opts.group;
  popts.color_stdout = global.color_stdout;
  popts.color_stderr = global.color_stderr;
  popts.progress = global.progress;
  JobPrinter printer(popts);
  // Once the job exists, a broken stream (core restarting) is followed up
  // rather than given up: the job is still there.
  absl::Status s = (*client)->ExecAndFollow(
      req, [&printer](const varan::v1::JobEvent& ev) { printer.OnEvent(ev); },
      FollowOptionsFor(**client));
  if (!s.ok()) return Fail(s);
  return printer.Summarize();
}

}  // namespace

void SetupExec(CLI::App& app, GlobalOptions* global, int* exit_code) {
  auto opts = std::make_shared<ExecOptions>();
  CLI::App* cmd = app.add_subcommand(
      "exec", "Run a command on peripheries and stream its output");
  CLI::Option* selector =
      cmd->add_option("-l,--selector", opts->selector,
                      "Label selector, e.g. 'env=prod,tier in (web,api)'");
  CLI::Option* name =
      cmd->add_option("-n,--name", opts->names, "Periphery name; repeatable");
  cmd->add_flag("--all", opts->all, "Target every periphery")
      ->excludes(selector)
      ->excludes(name);
  cmd->add_flag("--dry-run", opts->dry_run,
                "List the peripheries the targets match now and run nothing");
  cmd->add_flag("--shell", opts->shell,
                "Run the words as one /bin/sh -c command line");
  cmd->add_flag("--async", opts->async, "Print the job id and return at once");
  CLI::Option* prefix = cmd->add_flag(
      "--prefix", opts->prefix,
      "Prefix output lines with the periphery name even for one target");
  cmd->add_flag("--no-prefix", opts->no_prefix,
                "Print output lines without the periphery name, even for "
                "several targets")
      ->excludes(prefix);
  cmd->add_flag("--group", opts->group,
                "Print nothing live; at the end print each target's output, "
                "targets with identical output, errors and result in one "
                "block (like dshbak -c)");
  cmd->add_option("-e,--env", opts->env,
                  "NAME=VALUE for the command; repeatable");
  cmd->add_option("-w,--workdir", opts->workdir,
                  "Working directory on the server");
  cmd->add_option("--command-timeout", opts->timeout_seconds,
                  "Stop the command after this many seconds");
  cmd->add_option("--output-limit", opts->output_limit,
                  "Bytes of output per stream to deliver; the rest is counted");
  cmd->add_flag("--stop-at-output-limit", opts->stop_at_output_limit,
                "Stop the command when its output passes --output-limit");
  cmd->add_flag("--survive", opts->survive,
                "Keep the command running if this job's connection to the "
                "periphery is lost");
  cmd->add_option("--parallel", opts->parallel,
                  "Run on at most N peripheries at once; the rest wait, in "
                  "name order (default: all at once)")
      ->check(PositiveCount());
  cmd->add_option("--stop-after-failures", opts->stop_after_failures,
                  "Once N targets have failed, skip those not started yet "
                  "(running ones finish)")
      ->check(PositiveCount());
  cmd->add_flag("--skip-offline", opts->skip_offline,
                "Skip peripheries that are offline instead of failing them; "
                "skipped ones do not fail the job");
  CLI::Option* head = cmd->add_option(
      "--output-head", opts->output_head,
      "Bytes core stores from the start of each target's stdout and stderr "
      "(default: core's --output-head, 1 MiB); everything is streamed live");
  CLI::Option* tail = cmd->add_option(
      "--output-tail", opts->output_tail,
      "Bytes core stores from the end of each stream (default: core's "
      "--output-tail, 3 MiB); the bytes between head and tail are counted, "
      "not stored");
  cmd->add_option("--capture-limit", opts->capture_limit,
                  "Deprecated: stored head a quarter of it, tail the rest "
                  "(use --output-head and --output-tail)")
      ->excludes(head)
      ->excludes(tail);
  cmd->add_flag("--allow-no-targets", opts->allow_no_targets,
                "Succeed (and run nothing) when no periphery matches, "
                "instead of failing");
  cmd->add_option("command", opts->command,
                  "The command and its arguments (after --)")
      ->allow_extra_args();
  cmd->footer(
      "Exit code: with one target, the command's own exit code (128+N if "
      "killed by signal N, 124 timed out, 127 could not start, 130 "
      "canceled); with several or none, 0 if the job succeeded, 1 if it "
      "failed or was canceled (targets --skip-offline skipped do not count). "
      "2 means a usage or connection error. Output is never cut: a note on "
      "stderr says when core stores only part of it (see varanctl jobs "
      "logs).\n\nExamples:\n"
      "  varanctl exec -n web-1 -- uname -a\n"
      "  varanctl exec -l env=prod --shell -- 'df -h / | tail -1'\n"
      "  varanctl exec --all --group -- cat /etc/debian_version\n"
      "  varanctl exec -l tier=web --dry-run -- reboot\n"
      "  varanctl exec -l tier=web --parallel 2 --stop-after-failures 1 "
      "--skip-offline -- systemctl restart nginx");
  cmd->callback(
      [global, opts, exit_code] { *exit_code = RunExec(*global, *opts); });
}

}  // namespace varan::cli
