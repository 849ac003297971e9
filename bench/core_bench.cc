// Benchmarks of varan-core, each printed as a Markdown table:
//
//   1. fan-out: `varanctl exec -l bench=yes -- true` against a real core and
//      N real varan-periphery processes (default 20), timed from spawn to
//      exit (posix_spawn + blocking waitpid, so nothing polls). Interleaved
//      with the same job through CoreClient::Exec (no process start; on a
//      warm client, and on a new client per run, which adds the connection)
//      and with `varanctl --version` (the cost of starting the binary), so
//      the varanctl figure can be taken apart. Goal: median <= 60 ms
//      (N = 20), <= 150 ms (N = 100). With --peers FILE, the same fan-out
//      through the tools operators use today, interleaved in the same loop
//      and timed the same way: FILE has one peer a line, a label, a tab,
//      then the argv separated by spaces (peers_up in bench/peers/peers.sh
//      writes it for pdsh, clush and ansible against a loopback sshd); each
//      must exit 0. Their median is also given as a ratio to varanctl's.
//   2. jobs: sustained single-target Jobs.Dispatch against a real core with
//      default settings, on its SQLite store and (--store both or postgres)
//      on a real PostgreSQL 15 started for the run (tests/postgres/
//      test_postgres.h: initdb in /tmp, loopback, Debian's defaults), one
//      after the other in the same run. The peripheries are simulated
//      in this process: each is a gRPC server of its own on [::1]:0 whose
//      Agent.Execute answers `started` then `exited 0` at once; they
//      register with the join token and heartbeat like real ones. Dispatch
//      calls are kept in flight through the callback API, a fixed window of
//      them spread over several channels (each its own TCP connection), for
//      a fixed time after a warm-up. Reports dispatches acknowledged per
//      second (a Dispatch answers once core committed the job), jobs
//      finished per second (until ListJobs shows none RUNNING), and core's
//      CPU and RSS; checks that every job SUCCEEDED and every one reached a
//      simulated periphery exactly once. Goal: >= 5,000 jobs/s.
//
// Usage (defaults in brackets; with them the whole run takes 20-30 s):
//   core_bench [--bench all|fanout|jobs] [all]
//              [--peripheries N] [20]  [--runs N] [30]  [--warmup N] [3]
//              [--sims N] [8]  [--window N] [128]  [--channels N] [4]
//              [--seconds S] [10]  [--warmup-seconds S] [2]
//              [--peers FILE] [none]  [--store sqlite|postgres|both] [both]
// `make bench` (bench/run.sh) builds Release and runs it with the peers.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/job_load.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/test_postgres.h"
#include "varan/v1/core.grpc.pb.h"
#include "varan/v1/periphery.grpc.pb.h"

extern char** environ;

namespace {

using varan::bench::CountJobs;
using varan::bench::CpuSeconds;
using varan::bench::CpuSecondsOf;
using varan::bench::DispatchLoad;
using varan::bench::LoadAverage;
using varan::bench::Percentile;
using varan::bench::SimFleet;
using varan::bench::SimPeriphery;
using varan::bench::StartSimPeriphery;
using varan::bench::StatusMb;
using varan::bench::Trimmed;
using varan::testing::BinPath;
using varan::testing::ReadFile;
using varan::testing::TestFleet;

struct Options {
  std::string bench = "all";
  int peripheries = 20;
  int runs = 30;
  int warmup = 3;
  int sims = 8;
  int window = 128;
  int channels = 4;
  double seconds = 10;
  double warmup_seconds = 2;
  std::string peers;  // file of peer commands for the fan-out, or empty
  std::string store = "both";  // the jobs benchmark's stores
};

// A peer of the fan-out benchmark: a label and the command it runs.
struct Peer {
  std::string label;
  std::vector<std::string> argv;
  std::vector<double> ms;
};

// Reads `path` (see the header comment); an empty vector and `*error` set
// when the file is unreadable or a line is malformed.
std::vector<Peer> ReadPeers(const std::string& path, std::string* error) {
  std::vector<Peer> peers;
  std::ifstream in(path);
  if (!in) {
    *error = absl::StrCat("cannot read the peers file ", path);
    return {};
  }
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    size_t tab = line.find('\t');
    Peer peer;
    if (tab != std::string::npos) {
      peer.label = line.substr(0, tab);
      std::istringstream words(line.substr(tab + 1));
      for (std::string w; words >> w;) peer.argv.push_back(w);
    }
    if (peer.label.empty() || peer.argv.empty() || peer.argv[0][0] != '/') {
      *error = absl::StrCat(path, ":", n,
                            ": expected a label, a tab, and a command with "
                            "an absolute path");
      return {};
    }
    peers.push_back(std::move(peer));
  }
  if (peers.empty()) *error = absl::StrCat(path, " names no peer");
  return peers;
}

// CPU seconds of each thread of process `pid`, by thread id.
std::map<std::string, double> ThreadCpuSeconds(const std::string& pid) {
  std::map<std::string, double> threads;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string tid = entry.path().filename();
    threads[tid] = CpuSecondsOf(absl::StrCat(dir, "/", tid, "/stat"));
  }
  return threads;
}

// The thread of `pid` that used the most CPU between the `before` sample
// and now: its CPU seconds in that span, and its thread name in `*name`.
double BusiestThread(const std::string& pid,
                     const std::map<std::string, double>& before,
                     std::string* name) {
  double busiest = 0;
  for (const auto& [tid, now] : ThreadCpuSeconds(pid)) {
    auto it = before.find(tid);
    double used = now - (it == before.end() ? 0 : it->second);
    if (used > busiest) {
      busiest = used;
      CpuSecondsOf(absl::StrCat("/proc/", pid, "/task/", tid, "/stat"), name);
    }
  }
  return busiest;
}

// --- 1. Fan-out -------------------------------------------------------------

// This process's environment without VARAN_* variables, which would
// override varanctl's flags.
std::vector<std::string> CleanEnv() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "VARAN_")) env.emplace_back(*e);
  }
  return env;
}

// Runs `argv` with stdin, stdout and stderr on /dev/null and waits for it
// (blocking waitpid: no polling adds to the figure). Returns the wall time
// from before the spawn to after the reap in ms; `*exit_code` is the exit
// code, or -1 when it could not start or was killed.
double TimedRun(const std::vector<std::string>& argv,
                const std::vector<std::string>& env, int* exit_code) {
  std::vector<char*> cargv, cenv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  for (int fd = 0; fd <= 2; ++fd) {
    posix_spawn_file_actions_addopen(&actions, fd, "/dev/null",
                                     fd == 0 ? O_RDONLY : O_WRONLY, 0);
  }
  *exit_code = -1;
  absl::Time start = absl::Now();
  pid_t pid;
  int err =
      posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  int status = 0;
  if (err == 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    *exit_code = WEXITSTATUS(status);
  }
  double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  posix_spawn_file_actions_destroy(&actions);
  return ms;
}

// Runs the job through `client` (CoreClient::Exec); true when it finished
// SUCCEEDED on all `targets` peripheries.
bool ClientExec(varan::client::CoreClient* client,
                const varan::v1::DispatchRequest& request, int targets) {
  bool ok = false;
  absl::Status s = client->Exec(request, [&](const varan::v1::JobEvent& ev) {
    if (ev.has_job_finished()) {
      ok = ev.job_finished().state() == varan::v1::JOB_STATE_SUCCEEDED &&
           ev.job_finished().succeeded() == static_cast<uint32_t>(targets);
    }
  });
  return s.ok() && ok;
}

int FanOut(const Options& opt) {
  std::vector<Peer> peers;
  if (!opt.peers.empty()) {
    std::string error;
    peers = ReadPeers(opt.peers, &error);
    if (peers.empty()) {
      std::fprintf(stderr, "core_bench: %s\n", error.c_str());
      return 1;
    }
  }
  TestFleet fleet({"--heartbeat-interval", "1"});
  fleet.StartCore();
  for (int i = 0; i < opt.peripheries; ++i) {
    fleet.StartPeriphery(absl::StrCat("fan-", i), {"bench=yes"},
                         {"--log-level", "warn"});
  }
  varan::v1::Target target;
  target.set_selector("bench=yes");
  auto listed = fleet.client()->ListPeripheries(target);
  int online = 0;
  if (listed.ok()) {
    for (const auto& p : *listed) {
      online += p.state() == varan::v1::PERIPHERY_STATE_ONLINE ? 1 : 0;
    }
  }
  if (online != opt.peripheries) {
    std::fprintf(stderr, "core_bench: %d of %d peripheries online\n", online,
                 opt.peripheries);
    return 1;
  }

  const std::vector<std::string> env = CleanEnv();
  const std::vector<std::string> exec_argv = {BinPath("varanctl"),
                                              "--core",
                                              fleet.core_address(),
                                              "--token-file",
                                              fleet.admin_token_file(),
                                              "exec",
                                              "-l",
                                              "bench=yes",
                                              "--",
                                              "true"};
  const std::vector<std::string> version_argv = {BinPath("varanctl"),
                                                 "--version"};
  varan::v1::DispatchRequest request;
  *request.mutable_target() = target;
  request.mutable_spec()->add_argv("true");
  varan::client::ClientOptions client_options{
      fleet.core_address(),
      Trimmed(ReadFile(fleet.admin_token_file())),
      absl::Seconds(10),
      {}};
  auto warm_client = varan::client::CoreClient::Create(client_options);
  if (!warm_client.ok()) {
    std::fprintf(stderr, "core_bench: %s\n",
                 warm_client.status().ToString().c_str());
    return 1;
  }

  // The four ways are interleaved so that load from elsewhere on the
  // machine falls on all of them alike. Any failure ends the run: a failed
  // run would be timed as a suspiciously fast one.
  std::vector<double> ctl, warm, fresh, version;
  const std::string load_before = LoadAverage();
  for (int i = -opt.warmup; i < opt.runs; ++i) {
    int code = 0;
    double ctl_ms = TimedRun(exec_argv, env, &code);
    if (code != 0) {
      std::fprintf(stderr, "core_bench: varanctl exec exited %d\n", code);
      return 1;
    }
    absl::Time start = absl::Now();
    if (!ClientExec(warm_client->get(), request, opt.peripheries)) {
      std::fprintf(stderr, "core_bench: CoreClient::Exec failed\n");
      return 1;
    }
    double warm_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    start = absl::Now();
    auto fresh_client = varan::client::CoreClient::Create(client_options);
    if (!fresh_client.ok() ||
        !ClientExec(fresh_client->get(), request, opt.peripheries)) {
      std::fprintf(stderr, "core_bench: CoreClient::Exec (new) failed\n");
      return 1;
    }
    double fresh_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    fresh_client->reset();  // the teardown is not timed
    double version_ms = TimedRun(version_argv, env, &code);
    if (code != 0) {
      std::fprintf(stderr, "core_bench: varanctl --version exited %d\n", code);
      return 1;
    }
    std::vector<double> peer_ms;
    for (const Peer& peer : peers) {
      peer_ms.push_back(TimedRun(peer.argv, env, &code));
      if (code != 0) {
        std::fprintf(stderr, "core_bench: %s exited %d\n", peer.label.c_str(),
                     code);
        return 1;
      }
    }
    if (i < 0) continue;
    for (size_t p = 0; p < peers.size(); ++p) {
      peers[p].ms.push_back(peer_ms[p]);
    }
    ctl.push_back(ctl_ms);
    warm.push_back(warm_ms);
    fresh.push_back(fresh_ms);
    version.push_back(version_ms);
  }

  std::printf(
      "### Fan-out of `true` to %d real peripheries (%d runs each, %d "
      "warm-up; load average %s; binaries in %s)\n\n",
      opt.peripheries, opt.runs, opt.warmup, load_before.c_str(),
      VARAN_BIN_DIR);
  std::printf(
      "| measure | median | p10 | p90 | min | max | median / varanctl's "
      "|\n|---|---|---|---|---|---|---|\n");
  const double ctl_median = Percentile(ctl, 0.5);
  auto row = [ctl_median](const std::string& name,
                          const std::vector<double>& v) {
    std::printf(
        "| %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.2fx |\n",
        name.c_str(), Percentile(v, 0.5), Percentile(v, 0.1),
        Percentile(v, 0.9), *std::min_element(v.begin(), v.end()),
        *std::max_element(v.begin(), v.end()), Percentile(v, 0.5) / ctl_median);
  };
  std::string goal;
  if (opt.peripheries == 20) goal = " (goal: median <= 60 ms)";
  if (opt.peripheries == 100) goal = " (goal: median <= 150 ms)";
  row(absl::StrCat("`varanctl exec -l bench=yes -- true`, spawn to exit", goal),
      ctl);
  row("CoreClient::Exec, warm client (fan-out only)", warm);
  row("CoreClient::Exec, new client per run (connect + fan-out)", fresh);
  row("`varanctl --version`, spawn to exit (process start)", version);
  for (const Peer& peer : peers) {
    std::string command = peer.argv[0].substr(peer.argv[0].rfind('/') + 1);
    for (size_t a = 1; a < peer.argv.size(); ++a) {
      // Paths of the harness's temporary directory say nothing.
      const std::string& arg = peer.argv[a];
      absl::StrAppend(&command, " ",
                      arg[0] == '/' ? arg.substr(arg.rfind('/') + 1) : arg);
    }
    row(absl::StrCat("peer ", peer.label, ": `", command, "`"), peer.ms);
  }
  std::printf("\n");
  return 0;
}

// --- 2. Jobs per second -----------------------------------------------------

// On SQLite when `database_url` is empty, else on that PostgreSQL database.
int JobsPerSecond(const Options& opt, const std::string& database_url) {
  // Core's default settings. (TestFleet adds --log-level debug, which logs
  // nothing more per job than the default level's one line.)
  std::vector<std::string> core_args;
  if (!database_url.empty()) core_args = {"--database", database_url};
  TestFleet fleet(core_args);
  fleet.StartCore();
  const std::string core_pid = std::to_string(fleet.core()->pid());

  std::vector<std::unique_ptr<SimPeriphery>> sims;
  for (int i = 0; i < opt.sims; ++i) {
    auto sim = StartSimPeriphery(absl::StrCat("sim-", i));
    if (sim == nullptr) {
      std::fprintf(stderr, "core_bench: cannot serve a simulated periphery\n");
      return 1;
    }
    sims.push_back(std::move(sim));
  }
  auto executions = [&sims] {
    uint64_t n = 0;
    for (const auto& sim : sims) n += sim->agent.executions();
    return n;
  };
  SimFleet sim_fleet({fleet.core_address()},
                     Trimmed(ReadFile(fleet.join_token_file())), &sims);
  if (!sim_fleet.Start()) return 1;
  varan::v1::Target sim_target;
  sim_target.set_selector("bench=sim");
  bool online = varan::testing::WaitFor([&] {
    auto list = fleet.client()->ListPeripheries(sim_target);
    if (!list.ok() || list->size() != sims.size()) return false;
    for (const auto& p : *list) {
      if (p.state() != varan::v1::PERIPHERY_STATE_ONLINE) return false;
    }
    return true;
  });
  if (!online) {
    std::fprintf(stderr,
                 "core_bench: the simulated peripheries are not "
                 "online\n");
    return 1;
  }

  std::vector<varan::v1::DispatchRequest> requests;
  for (const auto& sim : sims) {
    varan::v1::DispatchRequest req;
    req.mutable_target()->add_names(sim->name);
    req.mutable_spec()->add_argv("true");
    requests.push_back(std::move(req));
  }
  DispatchLoad load({fleet.core_address()},
                    Trimmed(ReadFile(fleet.admin_token_file())),
                    std::move(requests), opt.channels, opt.window);

  const std::string load_before = LoadAverage();
  const absl::Time begin = absl::Now();
  load.Start();
  absl::SleepFor(absl::Seconds(opt.warmup_seconds));
  const absl::Time t0 = absl::Now();
  const uint64_t acked0 = load.acked();
  const uint64_t exec0 = executions();
  const double core_cpu0 = CpuSeconds(core_pid);
  const std::map<std::string, double> core_threads0 =
      ThreadCpuSeconds(core_pid);
  const double self_cpu0 = CpuSeconds("self");
  absl::SleepFor(absl::Seconds(opt.seconds));
  const absl::Time t1 = absl::Now();
  const uint64_t acked1 = load.acked();
  const uint64_t exec1 = executions();
  const double core_cpu1 = CpuSeconds(core_pid);
  std::string busiest_name;
  const double busiest_cpu =
      BusiestThread(core_pid, core_threads0, &busiest_name);
  const double self_cpu1 = CpuSeconds("self");
  load.Stop();
  load.WaitIdle();
  const absl::Time last_ack = absl::Now();
  if (load.failed() > 0) {
    std::fprintf(stderr, "core_bench: %llu Dispatch calls failed: %s\n",
                 static_cast<unsigned long long>(load.failed()),
                 load.first_error().c_str());
    return 1;
  }
  const uint64_t total = load.acked();

  // Drained: no job RUNNING any more.
  auto* client = fleet.client();
  bool drained = varan::testing::WaitFor(
      [&] { return CountJobs(client, {varan::v1::JOB_STATE_RUNNING}, 0) == 0; },
      absl::Seconds(120));
  const absl::Time all_final = absl::Now();
  const double core_rss = StatusMb(core_pid, "VmRSS");
  if (!drained) {
    std::fprintf(stderr, "core_bench: jobs still running after 2 min\n");
    return 1;
  }

  // Correctness: every job succeeded, and reached its periphery once.
  const int64_t succeeded = CountJobs(client, {varan::v1::JOB_STATE_SUCCEEDED});
  const int64_t any_state = CountJobs(client, {});
  int sampled_ok = 0;
  const std::vector<std::string> samples = load.sample_ids();
  for (const auto& id : samples) {
    auto job = client->GetJob(id);
    if (job.ok() && job->state() == varan::v1::JOB_STATE_SUCCEEDED &&
        job->targets_size() == 1 && job->targets(0).exit_status().code() == 0 &&
        job->targets(0).exit_status().kind() ==
            varan::v1::ExitStatus::KIND_EXITED) {
      ++sampled_ok;
    }
  }
  const bool correct = succeeded == static_cast<int64_t>(total) &&
                       any_state == static_cast<int64_t>(total) &&
                       executions() == total &&
                       sampled_ok == static_cast<int>(samples.size());

  const double window_s = absl::ToDoubleSeconds(t1 - t0);
  const double acked_rate = static_cast<double>(acked1 - acked0) / window_s;
  const double exec_rate = static_cast<double>(exec1 - exec0) / window_s;
  const double finished_rate =
      static_cast<double>(total) / absl::ToDoubleSeconds(all_final - begin);
  std::printf(
      "### Single-target jobs per second, %d simulated peripheries, on %s "
      "(load average %s)\n\n",
      opt.sims,
      database_url.empty() ? "SQLite"
                           : "PostgreSQL 15 (loopback, Debian's defaults)",
      load_before.c_str());
  std::printf(
      "Client: %d Dispatch calls kept in flight (callback API) over %d "
      "channels, one TCP connection each, round-robin over the peripheries; "
      "%.0f s warm-up, then %.1f s measured.\n\n",
      opt.window, opt.channels, opt.warmup_seconds, window_s);
  std::printf("| measure | value |\n|---|---|\n");
  std::printf(
      "| dispatches acknowledged (job committed), measured window (goal >= "
      "5,000/s) | %.0f /s |\n",
      acked_rate);
  std::printf("| Agent.Execute calls received, measured window | %.0f /s |\n",
              exec_rate);
  std::printf(
      "| jobs finished: %llu jobs from first Dispatch until none RUNNING "
      "(%.1f s; %.2f s after the last answer) | %.0f /s |\n",
      static_cast<unsigned long long>(total),
      absl::ToDoubleSeconds(all_final - begin),
      absl::ToDoubleSeconds(all_final - last_ack), finished_rate);
  std::printf(
      "| core CPU, measured window | %.0f%% of one core (%.0f us per job) "
      "|\n",
      100.0 * (core_cpu1 - core_cpu0) / window_s,
      1e6 * (core_cpu1 - core_cpu0) / static_cast<double>(acked1 - acked0));
  std::printf(
      "| core's busiest thread (\"%s\"), measured window | %.0f%% of one "
      "core (%.0f us per job) |\n",
      busiest_name.c_str(), 100.0 * busiest_cpu / window_s,
      1e6 * busiest_cpu / static_cast<double>(acked1 - acked0));
  std::printf(
      "| this process's CPU (client + simulators), measured window | %.0f%% "
      "of one core |\n",
      100.0 * (self_cpu1 - self_cpu0) / window_s);
  std::printf("| core RSS at the end | %.0f MB |\n", core_rss);
  std::printf(
      "| check: SUCCEEDED / all jobs listed / Execute calls / GetJob "
      "samples ok | %lld / %lld / %llu / %d of %zu: %s |\n\n",
      static_cast<long long>(succeeded), static_cast<long long>(any_state),
      static_cast<unsigned long long>(executions()), sampled_ok, samples.size(),
      correct ? "all match" : "MISMATCH");
  for (auto& sim : sims) sim->server->Shutdown();
  return correct ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // This process is a gRPC client and servers on the same two cores as
  // core; Abseil's deadlock detector (on in Debian's build) would make it
  // take CPU from the core it measures (see TOOLCHAIN.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Options opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--bench") {
      opt.bench = value;
    } else if (flag == "--peripheries") {
      opt.peripheries = std::stoi(value);
    } else if (flag == "--runs") {
      opt.runs = std::stoi(value);
    } else if (flag == "--warmup") {
      opt.warmup = std::stoi(value);
    } else if (flag == "--sims") {
      opt.sims = std::stoi(value);
    } else if (flag == "--window") {
      opt.window = std::stoi(value);
    } else if (flag == "--channels") {
      opt.channels = std::stoi(value);
    } else if (flag == "--seconds") {
      opt.seconds = std::stod(value);
    } else if (flag == "--warmup-seconds") {
      opt.warmup_seconds = std::stod(value);
    } else if (flag == "--peers") {
      opt.peers = value;
    } else if (flag == "--store") {
      opt.store = value;
    } else {
      std::fprintf(stderr, "core_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if ((argc - 1) % 2 != 0 || opt.runs < 1 || opt.peripheries < 1 ||
      opt.sims < 1 || opt.window < 1 || opt.channels < 1 || opt.seconds <= 0 ||
      (opt.bench != "all" && opt.bench != "fanout" && opt.bench != "jobs") ||
      (opt.store != "sqlite" && opt.store != "postgres" &&
       opt.store != "both")) {
    std::fprintf(stderr,
                 "usage: core_bench [--bench all|fanout|jobs] [--peripheries "
                 "N] [--runs N] [--warmup N] [--sims N] [--window N] "
                 "[--channels N] [--seconds S] [--warmup-seconds S] "
                 "[--peers FILE] [--store sqlite|postgres|both]\n");
    return 2;
  }
  int rc = 0;
  if (opt.bench != "jobs") rc |= FanOut(opt);
  if (opt.bench != "fanout" && opt.store != "postgres") {
    rc |= JobsPerSecond(opt, "");
  }
  if (opt.bench != "fanout" && opt.store != "sqlite") {
    varan::testing::TestPostgres pg;
    if (absl::Status started = pg.Start(); !started.ok()) {
      std::fprintf(stderr, "core_bench: %s\n",
                   std::string(started.message()).c_str());
      return 1;
    }
    rc |= JobsPerSecond(opt, pg.url());
  }
  return rc;
}
