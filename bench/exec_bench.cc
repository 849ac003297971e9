// Benchmarks of one target through varan-core with the C++ client library
// (CoreClient), each printed as a Markdown table:
//
//   2. latency: CoreClient::Exec of `/bin/true` on one real periphery
//      (the job committed to core's SQLite store before it is sent,
//      Agent.Execute on the periphery, its events back through core), from
//      the call until the stream ends after the job_finished event, on a warm
//      client; interleaved run by run with a bare posix_spawn + waitpid of
//      /bin/true in this process, so load from elsewhere falls on both alike.
//      p50, p90, p99 of each and the difference. Goal: p50 <= 2 ms above the
//      bare spawn.
//   4. stream: `head -c N /dev/zero` on the periphery, its stdout streamed
//      to this client through core: CoreClient::Exec (live events), and
//      Dispatch followed by CoreClient::WatchJob from sequence 0. The job's
//      capture limit is set to N, since core streams only captured output.
//      Each run checks the byte count, that the chunks' sequence numbers
//      have no gap, that nothing was left uncaptured and that the command
//      exited 0. Goal: >= 500 MB/s for 1 GiB.
//
// Usage (defaults in brackets):
//   exec_bench [--bench all|latency|stream] [all]  [--runs N] [500]
//              [--warmup N] [50]  [--mib N] [1024]  [--stream-runs N] [3]
// `make bench` (bench/run.sh) builds Release and runs it.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.pb.h"

extern char** environ;

namespace {

using varan::bench::BareSpawn;
using varan::bench::CpuSeconds;
using varan::bench::LoadAverage;
using varan::bench::Percentile;
using varan::bench::PrintLatencyRow;
using varan::bench::StatusMb;
using varan::testing::TestFleet;

struct Options {
  std::string bench = "all";
  int runs = 500;
  int warmup = 50;
  int mib = 1024;
  int stream_runs = 3;
};

// What one job's events said about its single target.
struct Outcome {
  uint64_t stdout_bytes = 0;
  uint64_t uncaptured = 0;
  uint64_t next_chunk = 0;  // sequence the next stdout chunk must carry
  bool gap = false;
  bool exited_zero = false;
  bool succeeded = false;
  std::string job_id;

  void operator()(const varan::v1::JobEvent& ev) {
    if (job_id.empty()) job_id = ev.job_id();
    if (ev.has_output() &&
        ev.output().stream() == varan::v1::OUTPUT_STREAM_STDOUT) {
      gap |= ev.output().sequence() != next_chunk;
      next_chunk = ev.output().sequence() + 1;
      stdout_bytes += ev.output().data().size();
    }
    if (ev.has_finished()) {
      uncaptured += ev.finished().stdout_uncaptured_bytes();
      exited_zero = ev.finished().exit_status().kind() ==
                        varan::v1::ExitStatus::KIND_EXITED &&
                    ev.finished().exit_status().code() == 0;
    }
    if (ev.has_job_finished()) {
      succeeded = ev.job_finished().state() == varan::v1::JOB_STATE_SUCCEEDED &&
                  ev.job_finished().succeeded() == 1;
    }
  }
};

// --- 2. Latency -------------------------------------------------------------

int Latency(const Options& opt, varan::client::CoreClient* client) {
  varan::v1::DispatchRequest request;
  request.mutable_target()->add_names("bench");
  request.mutable_spec()->add_argv("/bin/true");
  std::vector<double> bare, exec, dispatch;
  const std::string load_before = LoadAverage();
  for (int i = -opt.warmup; i < opt.runs; ++i) {
    // Any failure ends the run: a failed run would be timed as a
    // suspiciously fast one.
    absl::Time start = absl::Now();
    bool ok = BareSpawn();
    double b = absl::ToDoubleMicroseconds(absl::Now() - start);
    if (!ok) {
      std::fprintf(stderr, "exec_bench: posix_spawn of /bin/true failed\n");
      return 1;
    }
    Outcome outcome;
    start = absl::Now();
    absl::Status s = client->Exec(request, std::ref(outcome));
    double e = absl::ToDoubleMicroseconds(absl::Now() - start);
    if (!s.ok() || !outcome.succeeded || !outcome.exited_zero) {
      std::fprintf(stderr, "exec_bench: Exec of true failed: %s\n",
                   s.ToString().c_str());
      return 1;
    }
    // Taken apart: Dispatch answers once the job is committed (the job
    // then runs; waiting for its end is not timed).
    start = absl::Now();
    auto d = client->Dispatch(request);
    double dm = absl::ToDoubleMicroseconds(absl::Now() - start);
    if (!d.ok() ||
        !client->WatchJob(d->job_id(), 0, [](const varan::v1::JobEvent&) {})
             .ok()) {
      std::fprintf(stderr, "exec_bench: Dispatch of true failed\n");
      return 1;
    }
    if (i < 0) continue;
    bare.push_back(b);
    exec.push_back(e);
    dispatch.push_back(dm);
  }
  std::printf(
      "### 2. Single-target exec latency through core (exec_bench; %d runs "
      "each after %d warm-up, interleaved; load average %s, at the end %s)\n\n",
      opt.runs, opt.warmup, load_before.c_str(), LoadAverage().c_str());
  std::printf(
      "CoreClient::Exec of `/bin/true` on one real periphery, warm client: "
      "the job is committed to core's SQLite store before it is sent to the "
      "periphery; the call returns when the stream ends after the "
      "job_finished event.\n\n");
  std::printf(
      "| measure | p50 | p90 | p99 | min | max |\n|---|---|---|---|---|---|\n");
  const auto row = PrintLatencyRow;
  row("bare posix_spawn + waitpid of /bin/true", bare);
  row("CoreClient::Exec of /bin/true through core", exec);
  row("of which CoreClient::Dispatch alone (answered once the job is "
      "committed)",
      dispatch);
  const double d50 = Percentile(exec, 0.5) - Percentile(bare, 0.5);
  std::printf(
      "| difference (goal: p50 <= 2000 us above the bare spawn) | %.0f us%s | "
      "%.0f us | %.0f us | | |\n\n",
      d50, d50 <= 2000 ? " (met)" : " (missed)",
      Percentile(exec, 0.9) - Percentile(bare, 0.9),
      Percentile(exec, 0.99) - Percentile(bare, 0.99));
  return 0;
}

// --- 4. Output throughput ---------------------------------------------------

// `client` needs a deadline long enough for a Dispatch queued behind the
// store's writing of the whole output.
int Stream(const Options& opt, varan::client::CoreClient* client, pid_t core) {
  const uint64_t size = static_cast<uint64_t>(opt.mib) << 20;
  varan::v1::DispatchRequest request;
  request.mutable_target()->add_names("bench");
  request.mutable_spec()->set_shell(
      absl::StrCat("head -c ", size, " /dev/zero"));
  request.mutable_options()->set_capture_limit_bytes(size);
  auto check = [&](const Outcome& o, const absl::Status& s, const char* way) {
    if (s.ok() && o.succeeded && o.exited_zero && !o.gap &&
        o.stdout_bytes == size && o.uncaptured == 0) {
      return true;
    }
    std::fprintf(stderr,
                 "exec_bench: %s: %s, %llu of %llu bytes, %llu uncaptured, "
                 "%s, %s\n",
                 way, s.ToString().c_str(),
                 static_cast<unsigned long long>(o.stdout_bytes),
                 static_cast<unsigned long long>(size),
                 static_cast<unsigned long long>(o.uncaptured),
                 o.gap ? "a gap in the chunks" : "no gap",
                 o.succeeded ? "succeeded" : "did not succeed");
    return false;
  };
  // The store commits in order (one writer thread): once a later Dispatch
  // is acknowledged, everything the big job handed to the store before is
  // committed too.
  varan::v1::DispatchRequest marker;
  marker.mutable_target()->add_names("bench");
  marker.mutable_spec()->add_argv("/bin/true");
  auto committed = [&](absl::Time start, std::vector<double>* out) {
    auto m = client->Dispatch(marker);
    if (!m.ok()) {
      std::fprintf(stderr, "exec_bench: Dispatch after the stream: %s\n",
                   m.status().ToString().c_str());
      return false;
    }
    out->push_back(absl::ToDoubleSeconds(absl::Now() - start));
    return client->WatchJob(m->job_id(), 0, [](const varan::v1::JobEvent&) {})
        .ok();
  };
  std::vector<double> exec_s, stored_s, watch_s, core_cpu;
  const std::string load_before = LoadAverage();
  for (int i = 0; i < opt.stream_runs; ++i) {
    Outcome o;
    const double cpu_before = CpuSeconds(absl::StrCat(core));
    absl::Time start = absl::Now();
    absl::Status s = client->Exec(request, std::ref(o));
    exec_s.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    if (!check(o, s, "Exec") || !committed(start, &stored_s)) return 1;
    core_cpu.push_back(CpuSeconds(absl::StrCat(core)) - cpu_before);

    Outcome w;
    start = absl::Now();
    auto dispatched = client->Dispatch(request);
    if (!dispatched.ok()) {
      std::fprintf(stderr, "exec_bench: Dispatch: %s\n",
                   dispatched.status().ToString().c_str());
      return 1;
    }
    s = client->WatchJob(dispatched->job_id(), 0, std::ref(w));
    watch_s.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    if (!check(w, s, "WatchJob")) return 1;
    std::vector<double> ignored;
    if (!committed(start, &ignored)) return 1;
  }
  std::printf(
      "### 4. %d MiB of stdout from a periphery to the client through core "
      "(exec_bench; %d runs each, interleaved; load average %s, at the end "
      "%s)\n\n",
      opt.mib, opt.stream_runs, load_before.c_str(), LoadAverage().c_str());
  std::printf(
      "`head -c %llu /dev/zero` on one real periphery, capture limit %d MiB "
      "(core streams captured output only, and stores it); every run "
      "checked: all bytes arrived, chunk sequence without gaps, exit 0. "
      "Throughput is bytes / (call to end of stream).\n\n",
      static_cast<unsigned long long>(size), opt.mib);
  std::printf("| measure | median | min | max |\n|---|---|---|---|\n");
  auto row = [size](const char* name, const std::vector<double>& v) {
    auto mbs = [size](double s) { return static_cast<double>(size) / s / 1e6; };
    // The slowest run has the lowest rate.
    std::printf("| %s | %.0f MB/s (%.2f s) | %.0f MB/s | %.0f MB/s |\n", name,
                mbs(Percentile(v, 0.5)), Percentile(v, 0.5),
                mbs(*std::max_element(v.begin(), v.end())),
                mbs(*std::min_element(v.begin(), v.end())));
  };
  const bool met =
      static_cast<double>(size) / Percentile(exec_s, 0.5) / 1e6 >= 500;
  row(met ? "CoreClient::Exec, live (goal >= 500 MB/s: met)"
          : "CoreClient::Exec, live (goal >= 500 MB/s: missed)",
      exec_s);
  row("Dispatch, then CoreClient::WatchJob from sequence 0", watch_s);
  row("CoreClient::Exec until core's store committed all of it (a later "
      "Dispatch acknowledged)",
      stored_s);
  std::printf(
      "\nCore's CPU for one Exec run (receiving, streaming and storing the "
      "output): %.2f s (median); core's peak RSS (VmHWM): %.0f MB.\n\n",
      Percentile(core_cpu, 0.5), StatusMb(absl::StrCat(core), "VmHWM"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!varan::bench::ParseFlags(
          argc, argv, "exec_bench",
          {
              {"--bench", [&](const std::string& v) { opt.bench = v; }},
              {"--runs",
               [&](const std::string& v) { opt.runs = std::stoi(v); }},
              {"--warmup",
               [&](const std::string& v) { opt.warmup = std::stoi(v); }},
              {"--mib", [&](const std::string& v) { opt.mib = std::stoi(v); }},
              {"--stream-runs",
               [&](const std::string& v) { opt.stream_runs = std::stoi(v); }},
          })) {
    return 2;
  }
  if (opt.bench != "all" && opt.bench != "latency" && opt.bench != "stream") {
    std::fprintf(stderr, "exec_bench: --bench all|latency|stream\n");
    return 2;
  }
  if (opt.runs < 1 || opt.warmup < 0 || opt.mib < 1 || opt.stream_runs < 1) {
    std::fprintf(stderr, "exec_bench: counts must be positive\n");
    return 2;
  }
  TestFleet fleet;
  fleet.StartCore();
  fleet.StartPeriphery("bench", {}, {"--log-level", "warn"});
  if (opt.bench != "stream" && Latency(opt, fleet.client()) != 0) return 1;
  if (opt.bench != "latency") {
    auto client = varan::bench::AdminClient(fleet, absl::Minutes(5));
    if (!client.ok()) {
      std::fprintf(stderr, "exec_bench: %s\n",
                   client.status().ToString().c_str());
      return 1;
    }
    if (Stream(opt, client->get(), fleet.core()->pid()) != 0) return 1;
  }
  return 0;
}
