// varanctl jobs list|get|logs|watch|cancel
#include <iostream>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cli/cli.h"
#include "client/cli/output.h"
#include "client/cli/render.h"
#include "common/time_util.h"

namespace varan::cli {
namespace {

// The names `--state` takes and the table shows.
constexpr std::pair<const char*, varan::v1::JobState> kJobStates[] = {
    {"running", varan::v1::JOB_STATE_RUNNING},
    {"succeeded", varan::v1::JOB_STATE_SUCCEEDED},
    {"failed", varan::v1::JOB_STATE_FAILED},
    {"canceled", varan::v1::JOB_STATE_CANCELED},
};

}  // namespace

std::string JobStateName(varan::v1::JobState s) {
  for (const auto& [name, state] : kJobStates) {
    if (state == s) return name;
  }
  return "unknown";
}

namespace {

std::string CommandText(const varan::v1::CommandSpec& spec) {
  return spec.shell().empty() ? absl::StrJoin(spec.argv(), " ") : spec.shell();
}

std::string TargetResult(const varan::v1::JobTarget& t) {
  varan::v1::TargetFinished f;
  f.set_state(t.state());
  *f.mutable_exit_status() = t.exit_status();
  f.set_error(t.error());
  return DescribeResult(f);
}

// Target counts by outcome: "3/5 ok", "3/5 ok, 1 failed, 1 skipped".
std::string TargetCounts(const varan::v1::Job& job) {
  std::map<Outcome, size_t> counts;
  for (const auto& t : job.targets()) {
    ++counts[TargetOutcome(t.state(), t.exit_status())];
  }
  std::string text =
      absl::StrCat(counts[Outcome::kSucceeded], "/", job.targets_size(), " ok");
  for (auto [outcome, name] : {std::pair{Outcome::kFailed, "failed"},
                               std::pair{Outcome::kCanceled, "canceled"},
                               std::pair{Outcome::kSkipped, "skipped"},
                               std::pair{Outcome::kPending, "pending"}}) {
    if (counts[outcome] > 0) {
      absl::StrAppend(&text, ", ", counts[outcome], " ", name);
    }
  }
  return text;
}

// `value` as one word for a POSIX shell.
std::string ShellQuote(const std::string& value) {
  bool plain = !value.empty();
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("._-/:=,@").find(c) == std::string_view::npos) {
      plain = false;
    }
  }
  if (plain) return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

bool IsSet(const google::protobuf::Timestamp& t) {
  return t.seconds() != 0 || t.nanos() != 0;
}

struct ListOptions {
  std::vector<std::string> states;
  std::string created_by;
  std::string periphery;
  std::string since;
  uint32_t limit = 0;
  std::string page_token;
  std::string output = "table";
};

// The command line that lists the page after this one: the same filters
// (a page token is only a position) and the token.
std::string NextPageCommand(const ListOptions& opts, const std::string& token) {
  std::string cmd = "varanctl jobs list";
  for (const auto& s : opts.states) absl::StrAppend(&cmd, " --state ", s);
  if (!opts.created_by.empty()) {
    absl::StrAppend(&cmd, " --created-by ", ShellQuote(opts.created_by));
  }
  if (!opts.periphery.empty()) {
    absl::StrAppend(&cmd, " --periphery ", ShellQuote(opts.periphery));
  }
  if (!opts.since.empty()) {
    absl::StrAppend(&cmd, " --since ", ShellQuote(opts.since));
  }
  if (opts.limit > 0) absl::StrAppend(&cmd, " --limit ", opts.limit);
  absl::StrAppend(&cmd, " --page-token ", ShellQuote(token));
  return cmd;
}

int RunList(const GlobalOptions& global, const ListOptions& opts) {
  varan::v1::ListJobsRequest req;
  req.set_limit(opts.limit);
  req.set_page_token(opts.page_token);
  for (const auto& name : opts.states) {
    for (const auto& [n, state] : kJobStates) {
      if (name == n) req.add_states(state);
    }
  }
  req.set_created_by(opts.created_by);
  req.set_periphery(opts.periphery);
  if (!opts.since.empty()) {
    auto age = ParseAge(opts.since);
    if (!age.ok())
      return Fail(absl::StrCat("--since: ", age.status().message()));
    SetTimestamp(absl::Now() - *age, req.mutable_created_after());
  }

  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto resp = (*client)->ListJobs(req);
  if (!resp.ok()) return Fail(resp.status());
  if (PrintStructured(*resp, opts.output)) return 0;
  if (resp->jobs().empty()) {
    std::cerr << "varanctl: no jobs"
              << (opts.page_token.empty() ? "" : " after this page token")
              << "\n";
    return 0;
  }
  PrintTable(JobRows(resp->jobs(), opts.output == "wide"));
  if (!resp->next_page_token().empty()) {
    std::cerr << "more: " << NextPageCommand(opts, resp->next_page_token())
              << "\n";
  }
  return 0;
}

}  // namespace

namespace {

// The STORED column of `jobs list -o wide`: "1 MiB+3 MiB" (head + tail per
// stream), an older core's capture limit, or "default".
std::string StoredText(const varan::v1::Job& j) {
  if (j.output_head_bytes() > 0 || j.output_tail_bytes() > 0) {
    return absl::StrCat(HumanSize(j.output_head_bytes()), "+",
                        HumanSize(j.output_tail_bytes()));
  }
  if (j.capture_limit_bytes() > 0) return HumanSize(j.capture_limit_bytes());
  return "default";
}

}  // namespace

std::vector<std::vector<std::string>> JobRows(
    const google::protobuf::RepeatedPtrField<varan::v1::Job>& jobs, bool wide,
    absl::Time now) {
  std::vector<std::vector<std::string>> rows;
  if (wide) {
    rows.push_back({"ID", "STATE", "TARGETS", "CREATED", "FINISHED", "BY",
                    "STORED", "COMMAND"});
  } else {
    rows.push_back({"ID", "STATE", "TARGETS", "CREATED", "BY", "COMMAND"});
  }
  for (const auto& j : jobs) {
    if (wide) {
      rows.push_back({j.id(), JobStateName(j.state()), TargetCounts(j),
                      Ago(j.create_time(), now),
                      IsSet(j.finish_time()) ? Ago(j.finish_time(), now) : "-",
                      j.created_by(), StoredText(j), CommandText(j.spec())});
    } else {
      rows.push_back({j.id(), JobStateName(j.state()), TargetCounts(j),
                      Ago(j.create_time(), now), j.created_by(),
                      CommandText(j.spec())});
    }
  }
  return rows;
}

void PrintJob(const varan::v1::Job& job, bool outputs, std::ostream& out,
              absl::Time now) {
  std::vector<std::vector<std::string>> fields = {
      {"ID:", job.id()},
      {"State:", JobStateName(job.state())},
      {"Command:", CommandText(job.spec())},
      {"Created:", Ago(job.create_time(), now)},
      {"By:", job.created_by()}};
  if (IsSet(job.finish_time())) {
    fields.push_back({"Finished:", Ago(job.finish_time(), now)});
  }
  if (!job.canceled_by().empty() || IsSet(job.cancel_time())) {
    std::string by = job.canceled_by().empty() ? "?" : job.canceled_by();
    fields.push_back(
        {"Canceled:", absl::StrCat(Ago(job.cancel_time(), now), " by ", by)});
  }
  fields.push_back({"Selector:", job.target().selector()});
  fields.push_back({"Names:", absl::StrJoin(job.target().names(), ",")});
  const auto& o = job.options();
  std::vector<std::string> options;
  if (o.max_parallel() > 0) {
    options.push_back(absl::StrCat("at most ", o.max_parallel(), " at once"));
  }
  if (o.stop_after_failures() > 0) {
    options.push_back(
        absl::StrCat("stop after ", o.stop_after_failures(),
                     o.stop_after_failures() == 1 ? " failure" : " failures"));
  }
  if (o.skip_offline()) options.push_back("skip offline");
  if (o.allow_no_targets()) options.push_back("allow no targets");
  if (!options.empty()) {
    fields.push_back({"Options:", absl::StrJoin(options, ", ")});
  }
  if (std::string stored = StoredOutputText(job); !stored.empty()) {
    fields.push_back({"Stored output:", stored});
  }
  fields.push_back({"Targets:", TargetCounts(job)});
  PrintTable(fields, out);
  out << "\n";

  std::vector<std::vector<std::string>> rows;
  if (outputs) {
    rows.push_back({"TARGET", "RESULT", "STDOUT", "STDERR"});
  } else {
    rows.push_back({"TARGET", "RESULT"});
  }
  for (const auto& t : job.targets()) {
    if (outputs) {
      rows.push_back({t.name(), TargetResult(t),
                      OutputSizeCell(t.stdout_info(), t.has_stdout_info()),
                      OutputSizeCell(t.stderr_info(), t.has_stderr_info())});
    } else {
      rows.push_back({t.name(), TargetResult(t)});
    }
  }
  PrintTable(rows, out);
  if (outputs) {
    out << "\n";
    PrintPreviews(job, out);
  }
}

namespace {

int RunGet(const GlobalOptions& global, const std::string& id,
           const std::string& output, uint32_t preview) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto job = (*client)->GetJob(id, preview);
  if (!job.ok()) return Fail(job.status());
  if (PrintStructured(*job, output)) return 0;
  PrintJob(*job, /*outputs=*/true, std::cout, absl::Now());
  return 0;
}

int RunLogs(const GlobalOptions& global, const LogsOptions& opts) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  absl::Status s = WriteLogs(**client, opts, std::cout, std::cerr);
  if (!s.ok()) return Fail(s);
  return 0;
}

int RunCancel(const GlobalOptions& global, const std::string& id,
              const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto job = (*client)->CancelJob(id);
  if (!job.ok()) return Fail(job.status());
  if (PrintStructured(*job, output)) return 0;
  if (job->state() != varan::v1::JOB_STATE_RUNNING &&
      job->state() != varan::v1::JOB_STATE_CANCELED) {
    std::cerr << "varanctl: job " << job->id() << " had already "
              << JobStateName(job->state()) << "; nothing to cancel\n";
  }
  PrintJob(*job, /*outputs=*/false, std::cout, absl::Now());
  return 0;
}

int RunWatch(const GlobalOptions& global, const std::string& id,
             uint64_t from) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  PrinterOptions popts;
  popts.color_stdout = global.color_stdout;
  popts.color_stderr = global.color_stderr;
  popts.progress = global.progress;
  JobPrinter printer(popts);
  absl::Status s = (*client)->FollowJob(
      id, from,
      [&printer](const varan::v1::JobEvent& ev) { printer.OnEvent(ev); },
      FollowOptionsFor(**client));
  // Core ended the stream at once (e.g. --from past the job's last event):
  // say where to resume.
  if (printer.job_id().empty() && absl::IsUnavailable(s) &&
      s.message() == client::kStreamEndedEarly) {
    return Fail(absl::StrCat(s.message(), "; resume with varanctl jobs watch ",
                             id, " --from ", printer.next_sequence()));
  }
  if (!s.ok()) return Fail(s);
  return printer.Summarize();
}

}  // namespace

void SetupJobs(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd =
      app.add_subcommand("jobs", "List, inspect, watch and cancel jobs")
          ->require_subcommand(1);

  auto list_opts = std::make_shared<ListOptions>();
  CLI::App* list =
      cmd->add_subcommand("list", "Jobs, newest first, filtered and paged");
  list->alias("ls");
  std::vector<std::string> state_names;
  for (const auto& [name, state] : kJobStates) state_names.push_back(name);
  list->add_option("--state", list_opts->states,
                   "Only jobs in this state: running, succeeded, failed or "
                   "canceled; repeatable or comma-separated")
      ->delimiter(',')
      ->check(CLI::IsMember(state_names));
  list->add_option("--created-by", list_opts->created_by,
                   "Only jobs dispatched with this token name");
  list->add_option("--periphery", list_opts->periphery,
                   "Only jobs with a target on this periphery (by name)");
  list->add_option("--since", list_opts->since,
                   "Only jobs created within this long ago, e.g. 30m, 1h, 2d")
      ->check(AgeValidator());
  list->add_option("--limit", list_opts->limit,
                   "Jobs per page (default 50, at most 1000)")
      ->check(CLI::Range(1, 1000));
  list->add_option("--page-token", list_opts->page_token,
                   "Show the page after the one that printed this token");
  list->add_option("-o,--output", list_opts->output,
                   "table, wide, json or yaml (json and yaml are the whole "
                   "response, next_page_token included)")
      ->check(OutputFormat());
  list->footer(
      "When there are more jobs, the command for the next page is printed on "
      "stderr (\"more: ...\").\n\nExamples:\n"
      "  varanctl jobs list --limit 10\n"
      "  varanctl jobs list --state failed --state canceled --since 1d\n"
      "  varanctl jobs list --periphery web-1 --created-by alice -o json");
  list->callback([global, list_opts, exit_code] {
    *exit_code = RunList(*global, *list_opts);
  });

  auto get_id = std::make_shared<std::string>();
  auto get_output = std::make_shared<std::string>("table");
  auto get_preview = std::make_shared<uint32_t>(kDefaultPreviewBytes);
  CLI::App* get = cmd->add_subcommand(
      "get", "A job's targets, results, output sizes and output previews");
  get->add_option("id", *get_id, "Job id")->required();
  get->add_option("-o,--output", *get_output,
                  "table, wide, json or yaml (json and yaml include the "
                  "previews, base64)")
      ->check(OutputFormat());
  get->add_option("--preview", *get_preview,
                  "Bytes of each stream to preview, half from its start and "
                  "half from its end; 0: none (at most 65536)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65536));
  get->footer(
      "Shows each target's stream sizes (and how many bytes core did not "
      "store: it keeps the head and tail of each stream), then the start "
      "and end of each stream with the count of bytes between. The whole "
      "stored output: varanctl jobs logs.\n\nExamples:\n"
      "  varanctl jobs get 18c0f3a2b1c000a1b2c3\n"
      "  varanctl jobs get 18c0f3a2b1c000a1b2c3 --preview 0 -o json");
  get->callback([=] {
    *exit_code = RunGet(*global, *get_id, *get_output, *get_preview);
  });

  auto logs_opts = std::make_shared<LogsOptions>();
  CLI::App* logs = cmd->add_subcommand(
      "logs", "Write a target's stored output, byte for byte");
  logs->add_option("id", logs_opts->job_id, "Job id")->required();
  logs->add_option("-t,--target", logs_opts->target,
                   "The target's periphery name (needed when the job has "
                   "several)");
  logs->add_flag("--stderr", logs_opts->stderr_stream,
                 "The target's stderr instead of its stdout");
  logs->add_flag("-f,--follow", logs_opts->follow,
                 "Keep writing as more output is stored, until the target "
                 "ends");
  logs->footer(
      "Writes the output to stdout exactly as the command wrote it. Core "
      "stores the head and the tail of each stream (core's --output-head and "
      "--output-tail, or exec's); where bytes are not stored, a note on "
      "stderr says how many (\"... 12,345,678 bytes not stored ...\"), never "
      "inside the output.\n\nExit code: 0 once everything stored was "
      "written; 2 for an error (unknown job or target, several targets "
      "without -t, core unreachable).\n\nExamples:\n"
      "  varanctl jobs logs 18c0f3a2b1c000a1b2c3 > out.txt\n"
      "  varanctl jobs logs 18c0f3a2b1c000a1b2c3 -t web-1 --stderr -f");
  logs->callback([=] { *exit_code = RunLogs(*global, *logs_opts); });

  auto watch_id = std::make_shared<std::string>();
  auto from = std::make_shared<uint64_t>(0);
  CLI::App* watch =
      cmd->add_subcommand("watch", "Stream a job's output until it ends");
  watch->add_option("id", *watch_id, "Job id")->required();
  watch->add_option("--from", *from, "First event sequence number to show");
  watch->footer(
      "Exit code: as for exec.\n\n"
      "Example:\n  varanctl jobs watch 18c0f3a2b1c000a1b2c3");
  watch->callback([=] { *exit_code = RunWatch(*global, *watch_id, *from); });

  auto cancel_id = std::make_shared<std::string>();
  auto cancel_output = std::make_shared<std::string>("table");
  CLI::App* cancel = cmd->add_subcommand(
      "cancel",
      "Cancel a job: targets not started are canceled, running ones killed");
  cancel->add_option("id", *cancel_id, "Job id")->required();
  cancel->add_option("-o,--output", *cancel_output, kOutputHelp)
      ->check(OutputFormat());
  cancel->footer(
      "Prints the job as core has it right after the request: running "
      "targets become canceled once their periphery confirms the kill, so "
      "the job may still show as running (follow it with jobs watch). "
      "Canceling a finished job changes nothing and is not an error.\n\n"
      "Example:\n  varanctl jobs cancel 18c0f3a2b1c000a1b2c3");
  cancel->callback(
      [=] { *exit_code = RunCancel(*global, *cancel_id, *cancel_output); });
}

}  // namespace varan::cli
