// Benchmarks of several varan-core replicas on one PostgreSQL database
// (#19), each printed as a Markdown table. Every core is a real varan-core
// process on loopback (bench/replicas.h), each replica with its own data
// directory and port and --replica-address, all on one new database of a
// PostgreSQL 15 server: the one --postgres names (bench/run.sh starts one),
// else one started here.
//
//   exec: single-target latency, same replica versus cross replica. Three
//      replicas A, B, C; one real varan-periphery in tunnel mode whose only
//      core is A, so its tunnel is on A. CoreClient::Exec of `/bin/true` on
//      it through A (same replica) and through B (B relays the call through
//      A: core/link/relay_service.h), from the call until the stream ends
//      after job_finished, on warm clients; interleaved run by run, the
//      order alternating, with a bare posix_spawn + waitpid of /bin/true in
//      this process. p50, p90, p99 and the cross/same ratio.
//   jobs: sustained single-target Jobs.Dispatch (the load of core_bench
//      --bench jobs, bench/job_load.h: simulated dial-mode peripheries
//      answering at once, a window of Dispatch calls in flight over several
//      channels) against, one after the other in the same run: one core on
//      SQLite; one core holding a PostgreSQL database alone; one replica
//      (--replica-address) on PostgreSQL; and N replicas (default 3) on one
//      PostgreSQL database, the peripheries registered and the channels
//      spread over the replicas round robin, so every replica dispatches a
//      share of the jobs, each to any periphery. Reports dispatches
//      acknowledged (job committed) and jobs finished (until no job is
//      RUNNING) per second overall, as ratios to SQLite's, each core's CPU
//      and RSS, and the machine's CPU (PostgreSQL's processes included);
//      checks that every job SUCCEEDED and reached its periphery once.
//      Goal: >= 3,000 jobs/s on the 2-core machine.
//
// Usage (defaults in brackets):
//   replica_bench [--bench all|exec|jobs] [all]  [--postgres URL] [start one]
//                 [--runs N] [300]  [--warmup N] [30]  [--replicas N] [3]
//                 [--sims N] [8]  [--window N] [128]  [--channels N] [6]
//                 [--seconds S] [10]  [--warmup-seconds S] [2]
// bench/run.sh runs it in section 5, with fleet_sim --replicas.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/job_load.h"
#include "bench/replicas.h"
#include "tests/integration/daemons.h"

namespace {

using varan::bench::BareSpawn;
using varan::bench::BenchPostgres;
using varan::bench::CountJobs;
using varan::bench::CpuSeconds;
using varan::bench::DispatchLoad;
using varan::bench::LoadAverage;
using varan::bench::MachineBusySeconds;
using varan::bench::Percentile;
using varan::bench::PrintLatencyRow;
using varan::bench::ReplicaOptions;
using varan::bench::Replicas;
using varan::bench::SimFleet;
using varan::bench::SimPeriphery;
using varan::bench::StartSimPeriphery;
using varan::bench::StatusMb;

struct Options {
  std::string bench = "all";
  std::string postgres;
  int runs = 300;
  int warmup = 30;
  int replicas = 3;
  int sims = 8;
  int window = 128;
  int channels = 6;
  double seconds = 10;
  double warmup_seconds = 2;
};

// Prints each replica's warn and error log lines (the first few), if any.
void PrintWarnings(const Replicas& replicas, const std::string& what) {
  for (int i = 0; i < replicas.size(); ++i) {
    std::vector<std::string> lines = replicas.Warnings(i, 5);
    if (lines.empty()) continue;
    std::printf(
        "Log lines at warn or error of %s, core %d (the first %zu):\n\n",
        what.c_str(), i + 1, lines.size());
    for (const auto& line : lines) std::printf("    %s\n", line.c_str());
    std::printf("\n");
  }
}

// --- exec: same replica versus cross replica --------------------------------

// True when the Exec of `request` through `client` finished SUCCEEDED on
// its single target with exit code 0.
bool ExecTrue(varan::client::CoreClient* client,
              const varan::v1::DispatchRequest& request, std::string* error) {
  bool succeeded = false, exited_zero = false;
  absl::Status s = client->Exec(request, [&](const varan::v1::JobEvent& ev) {
    if (ev.has_finished()) {
      exited_zero = ev.finished().exit_status().kind() ==
                        varan::v1::ExitStatus::KIND_EXITED &&
                    ev.finished().exit_status().code() == 0;
    }
    if (ev.has_job_finished()) {
      succeeded = ev.job_finished().state() == varan::v1::JOB_STATE_SUCCEEDED &&
                  ev.job_finished().succeeded() == 1;
    }
  });
  if (s.ok() && succeeded && exited_zero) return true;
  *error = s.ok() ? "the job did not succeed" : s.ToString();
  return false;
}

int ExecLatency(const Options& opt, BenchPostgres& pg) {
  auto database = pg.NewDatabase("varan_exec");
  if (!database.ok()) {
    std::fprintf(stderr, "replica_bench: %s\n",
                 database.status().ToString().c_str());
    return 1;
  }
  ReplicaOptions ro;
  ro.replicas = std::max(opt.replicas, 2);
  ro.database = *database;
  Replicas replicas(ro);
  if (absl::Status s = replicas.Start(); !s.ok()) {
    std::fprintf(stderr, "replica_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  varan::testing::TempDir dir;
  varan::testing::Daemon periphery(
      {varan::testing::BinPath("varan-periphery"), "--core",
       replicas.address(0), "--join-token-file", replicas.join_token_file(),
       "--name", "bench", "--tunnel", "--no-listen", "--state-dir",
       dir.File("state"), "--log-level", "warn", "--insecure-plaintext"},
      dir.File("periphery.log"));
  periphery.Start();
  auto a = replicas.Client(0);
  auto b = replicas.Client(1);
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "replica_bench: no client\n");
    return 1;
  }
  // Online on A (its tunnel), then on B too (B re-reads the fleet every
  // 2 s and counts a periphery another live replica holds as online).
  varan::v1::Target target;
  target.add_names("bench");
  auto online_on = [&](varan::client::CoreClient* c) {
    auto list = c->ListPeripheries(target);
    return list.ok() && list->size() == 1 &&
           (*list)[0].state() == varan::v1::PERIPHERY_STATE_ONLINE;
  };
  if (!varan::testing::WaitFor([&] { return online_on(a->get()); },
                               absl::Seconds(20)) ||
      !varan::testing::WaitFor([&] { return online_on(b->get()); },
                               absl::Seconds(20))) {
    std::fprintf(stderr,
                 "replica_bench: the periphery is not online on A and B; its "
                 "log:\n%s\n",
                 periphery.Log().c_str());
    return 1;
  }

  varan::v1::DispatchRequest request;
  request.mutable_target()->add_names("bench");
  request.mutable_spec()->add_argv("/bin/true");
  std::vector<double> bare, same, cross;
  const std::string load_before = LoadAverage();
  for (int i = -opt.warmup; i < opt.runs; ++i) {
    absl::Time start = absl::Now();
    if (!BareSpawn()) {
      std::fprintf(stderr, "replica_bench: posix_spawn of /bin/true failed\n");
      return 1;
    }
    const double bare_us = absl::ToDoubleMicroseconds(absl::Now() - start);
    double us[2] = {0, 0};  // through A, through B
    for (int k = 0; k < 2; ++k) {
      const int which = (i + k) % 2 == 0 ? 0 : 1;  // the order alternates
      std::string error;
      start = absl::Now();
      if (!ExecTrue(which == 0 ? a->get() : b->get(), request, &error)) {
        std::fprintf(stderr, "replica_bench: Exec through replica %s: %s %s\n",
                     which == 0 ? "A" : "B", error.c_str(),
                     replicas.Exited().c_str());
        PrintWarnings(replicas, "the exec benchmark");
        return 1;
      }
      us[which] = absl::ToDoubleMicroseconds(absl::Now() - start);
    }
    if (i < 0) continue;
    bare.push_back(bare_us);
    same.push_back(us[0]);
    cross.push_back(us[1]);
  }

  std::printf(
      "### Single-target exec, same replica versus cross replica "
      "(replica_bench --bench exec; %d replicas on %s; %d runs each after %d "
      "warm-up, interleaved; load average %s, at the end %s)\n\n",
      replicas.size(), pg.Describe().c_str(), opt.runs, opt.warmup,
      load_before.c_str(), LoadAverage().c_str());
  std::printf(
      "One real varan-periphery in tunnel mode whose only core is replica "
      "A, so its tunnel is on A. CoreClient::Exec of `/bin/true` on it, "
      "warm clients: through A (same replica: A commits the job and sends it "
      "down the tunnel) and through B (cross replica: B commits the job and "
      "relays the execution through A, whose tunnel carries it). Each call "
      "returns when the stream ends after the job_finished event.\n\n");
  std::printf(
      "| measure | p50 | p90 | p99 | min | max |\n|---|---|---|---|---|---|\n");
  const auto row = PrintLatencyRow;
  row("bare posix_spawn + waitpid of /bin/true", bare);
  row("Exec through A, same replica (the peer)", same);
  row("Exec through B, cross replica (relayed through A)", cross);
  std::printf(
      "| cross / same | %.2fx | %.2fx | %.2fx | | |\n"
      "| cross - same | %.0f us | %.0f us | %.0f us | | |\n\n",
      Percentile(cross, 0.5) / Percentile(same, 0.5),
      Percentile(cross, 0.9) / Percentile(same, 0.9),
      Percentile(cross, 0.99) / Percentile(same, 0.99),
      Percentile(cross, 0.5) - Percentile(same, 0.5),
      Percentile(cross, 0.9) - Percentile(same, 0.9),
      Percentile(cross, 0.99) - Percentile(same, 0.99));
  a->reset();
  b->reset();
  periphery.Stop();
  PrintWarnings(replicas, "the exec benchmark");
  return 0;
}

// --- jobs: jobs per second with 1 and N replicas ----------------------------

struct JobsSetup {
  std::string label;
  int replicas = 1;
  bool postgres = false;
  bool cluster = false;
};

struct JobsResult {
  bool ok = false;
  std::string failure;
  double acked_rate = 0;
  double exec_rate = 0;
  double finished_rate = 0;
  uint64_t total = 0;
  double drain_s = 0;
  std::vector<double> core_cpu;  // % of one core, per core
  std::vector<double> core_rss;  // MB, per core
  double self_cpu = 0;
  double machine_cpu = 0;  // % of one core, all processes
  std::string load;
  std::string check;
};

// How many jobs FAILED or were CANCELED, and what the first FAILED one's
// target says.
std::string NotSucceeded(varan::client::CoreClient* client,
                         std::string* first_failed) {
  const int64_t failed = CountJobs(client, {varan::v1::JOB_STATE_FAILED});
  const int64_t canceled = CountJobs(client, {varan::v1::JOB_STATE_CANCELED});
  std::string out = absl::StrCat(failed, " FAILED, ", canceled, " CANCELED");
  varan::v1::ListJobsRequest req;
  req.set_limit(1);
  req.add_states(varan::v1::JOB_STATE_FAILED);
  auto page = client->ListJobs(req);
  if (!page.ok() || page->jobs_size() == 0) return out;
  auto job = client->GetJob(page->jobs(0).id());
  if (!job.ok() || job->targets_size() == 0) return out;
  *first_failed = job->id();
  const auto& t = job->targets(0);
  absl::StrAppend(&out, "; the first FAILED, ", job->id(), ": ", t.name(), " ",
                  varan::v1::TargetState_Name(t.state()), " (",
                  t.exit_status().ShortDebugString(), ") \"", t.error(), "\"");
  return out;
}

JobsResult RunJobs(const Options& opt, const JobsSetup& setup,
                   BenchPostgres& pg, std::vector<std::string>* warnings) {
  JobsResult r;
  auto fail = [&r](std::string why) {
    r.failure = std::move(why);
    std::fprintf(stderr, "replica_bench: %s\n", r.failure.c_str());
    return r;
  };
  ReplicaOptions ro;
  ro.replicas = setup.replicas;
  ro.cluster = setup.cluster;
  if (setup.postgres) {
    auto database = pg.NewDatabase("varan_jobs");
    if (!database.ok()) return fail(database.status().ToString());
    ro.database = *database;
  }
  Replicas replicas(ro);
  if (absl::Status s = replicas.Start(); !s.ok()) return fail(s.ToString());
  std::vector<std::string> addresses;
  for (int i = 0; i < replicas.size(); ++i) {
    addresses.push_back(replicas.address(i));
  }

  std::vector<std::unique_ptr<SimPeriphery>> sims;
  for (int i = 0; i < opt.sims; ++i) {
    auto sim = StartSimPeriphery(absl::StrCat("sim-", i));
    if (sim == nullptr) return fail("cannot serve a simulated periphery");
    sims.push_back(std::move(sim));
  }
  auto executions = [&sims] {
    uint64_t n = 0;
    for (const auto& sim : sims) n += sim->agent.executions();
    return n;
  };
  auto shutdown = [&sims] {
    for (auto& sim : sims) sim->server->Shutdown();
  };
  SimFleet sim_fleet(addresses, replicas.join_token(), &sims);
  if (!sim_fleet.Start()) return fail("the simulated peripheries failed");
  std::vector<std::unique_ptr<varan::client::CoreClient>> clients;
  for (int i = 0; i < replicas.size(); ++i) {
    auto c = replicas.Client(i);
    if (!c.ok()) return fail(c.status().ToString());
    clients.push_back(*std::move(c));
  }
  // Every replica lists every periphery online before the load starts.
  varan::v1::Target sim_target;
  sim_target.set_selector("bench=sim");
  for (auto& c : clients) {
    bool online = varan::testing::WaitFor(
        [&] {
          auto list = c->ListPeripheries(sim_target);
          if (!list.ok() || list->size() != sims.size()) return false;
          for (const auto& p : *list) {
            if (p.state() != varan::v1::PERIPHERY_STATE_ONLINE) return false;
          }
          return true;
        },
        absl::Seconds(20));
    if (!online) return fail("the simulated peripheries are not online");
  }

  std::vector<varan::v1::DispatchRequest> requests;
  for (const auto& sim : sims) {
    varan::v1::DispatchRequest req;
    req.mutable_target()->add_names(sim->name);
    req.mutable_spec()->add_argv("true");
    requests.push_back(std::move(req));
  }
  DispatchLoad load(addresses, replicas.admin_token(), std::move(requests),
                    opt.channels, opt.window);
  r.load = LoadAverage();
  const absl::Time begin = absl::Now();
  load.Start();
  absl::SleepFor(absl::Seconds(opt.warmup_seconds));
  const absl::Time t0 = absl::Now();
  const uint64_t acked0 = load.acked();
  const uint64_t exec0 = executions();
  std::vector<double> cpu0;
  for (int i = 0; i < replicas.size(); ++i) {
    cpu0.push_back(CpuSeconds(replicas.pid_string(i)));
  }
  const double self0 = CpuSeconds("self");
  const double machine0 = MachineBusySeconds();
  absl::SleepFor(absl::Seconds(opt.seconds));
  const double window_s = absl::ToDoubleSeconds(absl::Now() - t0);
  r.acked_rate = static_cast<double>(load.acked() - acked0) / window_s;
  r.exec_rate = static_cast<double>(executions() - exec0) / window_s;
  for (int i = 0; i < replicas.size(); ++i) {
    r.core_cpu.push_back(
        100.0 *
        (CpuSeconds(replicas.pid_string(i)) - cpu0[static_cast<size_t>(i)]) /
        window_s);
  }
  r.self_cpu = 100.0 * (CpuSeconds("self") - self0) / window_s;
  r.machine_cpu = 100.0 * (MachineBusySeconds() - machine0) / window_s;
  load.Stop();
  load.WaitIdle();
  const absl::Time last_ack = absl::Now();
  if (load.failed() > 0) {
    shutdown();
    return fail(absl::StrCat(load.failed(),
                             " Dispatch calls failed: ", load.first_error()));
  }
  r.total = load.acked();
  // The database is shared: replica 1 lists every replica's jobs.
  auto* client = clients[0].get();
  const bool drained = varan::testing::WaitFor(
      [&] { return CountJobs(client, {varan::v1::JOB_STATE_RUNNING}, 0) == 0; },
      absl::Seconds(120));
  const absl::Time all_final = absl::Now();
  for (int i = 0; i < replicas.size(); ++i) {
    r.core_rss.push_back(StatusMb(replicas.pid_string(i), "VmRSS"));
  }
  if (!drained) {
    shutdown();
    return fail("jobs still running 2 min after the last Dispatch");
  }
  r.drain_s = absl::ToDoubleSeconds(all_final - last_ack);
  r.finished_rate =
      static_cast<double>(r.total) / absl::ToDoubleSeconds(all_final - begin);

  const int64_t succeeded = CountJobs(client, {varan::v1::JOB_STATE_SUCCEEDED});
  const int64_t any_state = CountJobs(client, {});
  int sampled_ok = 0;
  const std::vector<std::string> samples = load.sample_ids();
  for (const auto& id : samples) {
    // Through another replica than the one that ran most of them: a job
    // is read from the shared database wherever it ran.
    auto job = clients.back()->GetJob(id);
    if (job.ok() && job->state() == varan::v1::JOB_STATE_SUCCEEDED &&
        job->targets_size() == 1 && job->targets(0).exit_status().code() == 0) {
      ++sampled_ok;
    }
  }
  const uint64_t execs = executions();
  r.ok = succeeded == static_cast<int64_t>(r.total) &&
         any_state == static_cast<int64_t>(r.total) && execs == r.total &&
         sampled_ok == static_cast<int>(samples.size());
  r.check = absl::StrCat(succeeded, " / ", any_state, " / ", execs, " / ",
                         sampled_ok, " of ", samples.size(), ": ",
                         r.ok ? "all match" : "MISMATCH");
  if (std::string exited = replicas.Exited(); !exited.empty()) {
    r.ok = false;
    absl::StrAppend(&r.check, "; ", exited);
  }
  if (!r.ok) {
    r.failure = absl::StrCat("check: ", r.check);
    std::string first_failed;
    const std::string why = NotSucceeded(client, &first_failed);
    absl::StrAppend(&r.check, "; ", why);
    std::fprintf(stderr, "replica_bench: %s: %s\n", setup.label.c_str(),
                 why.c_str());
    // What the cores logged about it.
    for (int i = 0; i < replicas.size() && !first_failed.empty(); ++i) {
      std::istringstream log(replicas.Log(i));
      for (std::string line; std::getline(log, line);) {
        if (line.find(first_failed) == std::string::npos) continue;
        std::fprintf(stderr, "  core %d: %s\n", i + 1, line.c_str());
      }
    }
  }
  for (int i = 0; i < replicas.size(); ++i) {
    size_t total = 0;
    for (const auto& line : replicas.Warnings(i, 5, &total)) {
      warnings->push_back(
          absl::StrCat(setup.label, ", core ", i + 1, ": ", line));
    }
    if (total > 5) {
      warnings->push_back(absl::StrCat(setup.label, ", core ", i + 1, ": (",
                                       total - 5, " more)"));
    }
  }
  clients.clear();
  shutdown();
  return r;
}

int JobsPerSecond(const Options& opt, BenchPostgres& pg) {
  const std::vector<JobsSetup> setups = {
      {"SQLite, one core (the peer)", 1, false, false},
      {"PostgreSQL, one core alone (no --replica-address)", 1, true, false},
      {"PostgreSQL, 1 replica (--replica-address)", 1, true, true},
      {absl::StrCat("PostgreSQL, ", opt.replicas, " replicas"), opt.replicas,
       true, true},
  };
  std::vector<JobsResult> results;
  std::vector<std::string> warnings;
  for (const auto& setup : setups) {
    std::fprintf(stderr, "replica_bench: jobs: %s\n", setup.label.c_str());
    results.push_back(RunJobs(opt, setup, pg, &warnings));
  }
  std::printf(
      "### Single-target jobs per second with 1 and %d replicas "
      "(replica_bench --bench jobs; %s)\n\n",
      opt.replicas, pg.Describe().c_str());
  std::printf(
      "%d simulated dial-mode peripheries in this process (Agent.Execute "
      "answers `started` then `exited 0` at once), registered round robin "
      "over the cores; %d Dispatch calls kept in flight (callback API) over "
      "%d channels, one TCP connection each, channel c to core c mod N, "
      "the requests round robin over the peripheries (so a replica "
      "dispatches to peripheries registered on others too); %.0f s "
      "warm-up, then %.0f s measured. Default core settings, each setup on "
      "a new database. \"finished\" counts every job from the first Dispatch "
      "until none is RUNNING (each job's final state committed). Machine "
      "CPU counts every process (PostgreSQL's, and other users' if any) as "
      "a share of one core, out of %ld.\n\n",
      opt.sims, opt.window, opt.channels, opt.warmup_seconds, opt.seconds,
      sysconf(_SC_NPROCESSORS_ONLN));
  std::printf(
      "| setup | load average | dispatches acknowledged | / SQLite's | jobs "
      "finished (goal >= 3,000/s) | / SQLite's | cores' CPU (each) | "
      "this process's CPU | machine CPU | cores' RSS at the end | check: "
      "SUCCEEDED / listed / Execute calls / GetJob samples |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  const JobsResult& peer = results[0];
  auto ratio = [&peer](double v, double p) {
    return peer.ok && p > 0 ? absl::StrFormat("%.2fx", v / p) : std::string();
  };
  auto each = [](const std::vector<double>& v, const char* unit) {
    double sum = 0;
    std::vector<std::string> parts;
    for (double x : v) {
      sum += x;
      parts.push_back(absl::StrFormat("%.0f", x));
    }
    return v.size() == 1 ? absl::StrFormat("%.0f%s", sum, unit)
                         : absl::StrFormat("%.0f%s (%s)", sum, unit,
                                           absl::StrJoin(parts, " + "));
  };
  for (size_t i = 0; i < results.size(); ++i) {
    const JobsResult& r = results[i];
    if (r.total == 0) {
      std::printf("| %s | %s | FAILED: %s | | | | | | | | |\n",
                  setups[i].label.c_str(), r.load.c_str(), r.failure.c_str());
      continue;
    }
    std::printf(
        "| %s | %s | %.0f /s | %s | %.0f /s%s (%llu jobs, drained %.2f s "
        "after the last answer) | %s | %s of one core | %.0f%% | %.0f%% | %s "
        "| %s |\n",
        setups[i].label.c_str(), r.load.c_str(), r.acked_rate,
        ratio(r.acked_rate, peer.acked_rate).c_str(), r.finished_rate,
        r.finished_rate >= 3000 ? " (met)" : " (missed)",
        static_cast<unsigned long long>(r.total), r.drain_s,
        ratio(r.finished_rate, peer.finished_rate).c_str(),
        each(r.core_cpu, "%").c_str(), r.self_cpu, r.machine_cpu,
        each(r.core_rss, " MB").c_str(), r.check.c_str());
  }
  std::printf("\n");
  if (!warnings.empty()) {
    std::printf("Log lines at warn or error of the cores (the first few):\n\n");
    for (const auto& line : warnings) std::printf("    %s\n", line.c_str());
    std::printf("\n");
  }
  int rc = 0;
  for (const auto& r : results) rc |= r.ok ? 0 : 1;
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  // See core_bench: the deadlock detector would take CPU from the cores.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Options opt;
  auto to_int = [](int* out) {
    return [out](const std::string& v) { *out = std::stoi(v); };
  };
  auto to_double = [](double* out) {
    return [out](const std::string& v) { *out = std::stod(v); };
  };
  if (!varan::bench::ParseFlags(
          argc, argv, "replica_bench",
          {
              {"--bench", [&](const std::string& v) { opt.bench = v; }},
              {"--postgres", [&](const std::string& v) { opt.postgres = v; }},
              {"--runs", to_int(&opt.runs)},
              {"--warmup", to_int(&opt.warmup)},
              {"--replicas", to_int(&opt.replicas)},
              {"--sims", to_int(&opt.sims)},
              {"--window", to_int(&opt.window)},
              {"--channels", to_int(&opt.channels)},
              {"--seconds", to_double(&opt.seconds)},
              {"--warmup-seconds", to_double(&opt.warmup_seconds)},
          })) {
    return 2;
  }
  if ((opt.bench != "all" && opt.bench != "exec" && opt.bench != "jobs") ||
      opt.runs < 1 || opt.warmup < 0 || opt.replicas < 2 || opt.sims < 1 ||
      opt.window < 1 || opt.channels < 1 || opt.seconds <= 0 ||
      opt.warmup_seconds < 0) {
    std::fprintf(stderr,
                 "usage: replica_bench [--bench all|exec|jobs] [--postgres "
                 "URL] [--runs N] [--warmup N] [--replicas N >= 2] [--sims "
                 "N] [--window N] [--channels N] [--seconds S] "
                 "[--warmup-seconds S]\n");
    return 2;
  }
  BenchPostgres pg;
  if (absl::Status s = pg.Open(opt.postgres); !s.ok()) {
    std::fprintf(stderr, "replica_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  int rc = 0;
  if (opt.bench != "jobs") rc |= ExecLatency(opt, pg);
  if (opt.bench != "exec") rc |= JobsPerSecond(opt, pg);
  return rc;
}
