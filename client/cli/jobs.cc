// varanctl jobs list|get|watch
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/cli.h"
#include "client/cli/render.h"

namespace varan::cli {
namespace {

std::string JobStateName(varan::v1::JobState s) {
  switch (s) {
    case varan::v1::JOB_STATE_RUNNING:
      return "running";
    case varan::v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case varan::v1::JOB_STATE_FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

std::string CommandText(const varan::v1::CommandSpec& spec) {
  return spec.shell().empty() ? absl::StrJoin(spec.argv(), " ") : spec.shell();
}

std::string TargetResult(const varan::v1::JobTarget& t) {
  varan::v1::TargetFinished f;
  f.set_state(t.state());
  *f.mutable_exit_status() = t.exit_status();
  f.set_error(t.error());
  switch (t.state()) {
    case varan::v1::TARGET_STATE_QUEUED:
      return "queued";
    case varan::v1::TARGET_STATE_DISPATCHED:
      return "dispatched";
    case varan::v1::TARGET_STATE_RUNNING:
      return "running";
    default:
      return DescribeResult(f);
  }
}

int RunList(const GlobalOptions& global, uint32_t limit,
            const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto jobs = (*client)->ListJobs(limit);
  if (!jobs.ok()) return Fail(jobs.status());
  if (output == "json") {
    varan::v1::ListJobsResponse resp;
    for (const auto& j : *jobs) *resp.add_jobs() = j;
    PrintJson(resp);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STATE", "TARGETS", "CREATED", "BY", "COMMAND"}};
  for (const auto& j : *jobs) {
    rows.push_back({j.id(), JobStateName(j.state()),
                    absl::StrCat(j.targets_size()), Ago(j.create_time()),
                    j.created_by(), CommandText(j.spec())});
  }
  PrintTable(rows);
  return 0;
}

int RunGet(const GlobalOptions& global, const std::string& id,
           const std::string& output) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  auto job = (*client)->GetJob(id);
  if (!job.ok()) return Fail(job.status());
  if (output == "json") {
    PrintJson(*job);
    return 0;
  }
  PrintTable({{"ID:", job->id()},
              {"State:", JobStateName(job->state())},
              {"Command:", CommandText(job->spec())},
              {"Created:", Ago(job->create_time())},
              {"By:", job->created_by()},
              {"Selector:", job->target().selector()},
              {"Names:", absl::StrJoin(job->target().names(), ",")}});
  std::cout << "\n";
  std::vector<std::vector<std::string>> rows = {
      {"TARGET", "RESULT", "STDOUT", "STDERR"}};
  for (const auto& t : job->targets()) {
    auto size = [](size_t kept, uint64_t lost) {
      return lost ? absl::StrCat(kept, " B (+", lost, " B not kept)")
                  : absl::StrCat(kept, " B");
    };
    rows.push_back({t.name(), TargetResult(t),
                    size(t.stdout().size(), t.stdout_uncaptured_bytes()),
                    size(t.stderr().size(), t.stderr_uncaptured_bytes())});
  }
  PrintTable(rows);
  return 0;
}

int RunWatch(const GlobalOptions& global, const std::string& id,
             uint64_t from) {
  auto client = Connect(global);
  if (!client.ok()) return Fail(client.status());
  JobPrinter printer(false);
  absl::Status s = (*client)->WatchJob(
      id, from,
      [&printer](const varan::v1::JobEvent& ev) { printer.OnEvent(ev); });
  if (!s.ok()) return Fail(s);
  return printer.Summarize();
}

}  // namespace

void SetupJobs(CLI::App& app, GlobalOptions* global, int* exit_code) {
  CLI::App* cmd = app.add_subcommand("jobs", "List, inspect and watch jobs")
                      ->require_subcommand(1);

  auto limit = std::make_shared<uint32_t>(50);
  auto list_output = std::make_shared<std::string>("table");
  CLI::App* list = cmd->add_subcommand("list", "Recent jobs, newest first");
  list->alias("ls");
  list->add_option("--limit", *limit, "How many")->capture_default_str();
  list->add_option("-o,--output", *list_output, "table or json")
      ->check(OutputFormat());
  list->footer("Example:\n  varanctl jobs list --limit 10");
  list->callback([=] { *exit_code = RunList(*global, *limit, *list_output); });

  auto get_id = std::make_shared<std::string>();
  auto get_output = std::make_shared<std::string>("table");
  CLI::App* get =
      cmd->add_subcommand("get", "A job's targets, results and output sizes");
  get->add_option("id", *get_id, "Job id")->required();
  get->add_option("-o,--output", *get_output,
                  "table or json (json includes output)")
      ->check(OutputFormat());
  get->footer("Example:\n  varanctl jobs get 18c0f3a2b1c000a1b2c3 -o json");
  get->callback([=] { *exit_code = RunGet(*global, *get_id, *get_output); });

  auto watch_id = std::make_shared<std::string>();
  auto from = std::make_shared<uint64_t>(0);
  CLI::App* watch =
      cmd->add_subcommand("watch", "Stream a job's output until it ends");
  watch->add_option("id", *watch_id, "Job id")->required();
  watch->add_option("--from", *from, "First event sequence number to show");
  watch->footer("Example:\n  varanctl jobs watch 18c0f3a2b1c000a1b2c3");
  watch->callback([=] { *exit_code = RunWatch(*global, *watch_id, *from); });
}

}  // namespace varan::cli
