// The output plane benchmark (#16), printed as Markdown:
//
//   stream: per round, BYTES of stdout from output_gen on one real
//     periphery to this client through core (CoreClient::Exec, every event
//     read), and the same generator through `ssh` to a loopback sshd (the
//     ssh client's stdout read to the end by this process), interleaved
//     round by round, the order alternating, so load from elsewhere falls on
//     both alike. Each round: MB/s of both and their ratio; core's peak RSS
//     growth while streaming (VmHWM reset through /proc/PID/clear_refs
//     before the run, and VmRSS sampled every 20 ms); CPU seconds per GiB of
//     core, the periphery, this client and the ssh client (utime + stime
//     from /proc). Goals: Varan >= 2x ssh (median ratio), >= 800 MB/s (on an
//     idle machine), core's peak RSS growth <= 64 MB.
//   flood: FLOOD bytes through Exec with core's default capture limit:
//     core's RSS before, after and at its peak, to show it stays flat.
//
// The whole stream must reach the client. Today core streams only what it
// captures, so `--capture-limit auto` (the default) first runs a 16 MiB
// probe with the default limit: if the probe arrives cut, each round sets
// DispatchOptions.capture_limit_bytes to BYTES; once core streams
// everything whatever the limit, the rounds run with default limits. Every
// round checks that exactly BYTES arrived (chunk sequence without gaps,
// exit 0) and fails loudly otherwise.
//
// Usage (defaults in brackets):
//   output_bench [--mib N] [1024]  [--rounds N] [3]  [--flood-mib N] [4096,
//                0: none]  [--capture-limit auto|default|BYTES] [auto]
//                [--generator PATH] [output_gen beside this binary]
//                [--ssh-config FILE --ssh-host HOST] [no ssh: Varan alone]
// `make bench` (bench/run.sh) builds Release and runs it against the sshd
// of bench/peers.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "common/heap.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.pb.h"

extern char** environ;

namespace {

using varan::bench::CpuSeconds;
using varan::bench::LoadAverage;
using varan::bench::Percentile;
using varan::bench::StatusMb;
using varan::testing::TestFleet;

constexpr double kGiB = 1024.0 * 1024 * 1024;

struct Options {
  int mib = 1024;
  int rounds = 3;
  int flood_mib = 4096;
  std::string capture_limit = "auto";
  std::string generator;
  std::string ssh_config;
  std::string ssh_host;
};

// What Exec's events said about the single target's stdout.
struct Received {
  uint64_t bytes = 0;
  uint64_t chunks = 0;
  uint64_t next_sequence = 0;
  uint64_t uncaptured = 0;
  bool gap = false;
  bool exited_zero = false;

  void operator()(const varan::v1::JobEvent& ev) {
    if (ev.has_output() &&
        ev.output().stream() == varan::v1::OUTPUT_STREAM_STDOUT) {
      gap |= ev.output().sequence() != next_sequence;
      next_sequence = ev.output().sequence() + 1;
      bytes += ev.output().data().size();
      ++chunks;
    }
    if (ev.has_finished()) {
      uncaptured = ev.finished().stdout_uncaptured_bytes();
      exited_zero = ev.finished().exit_status().kind() ==
                        varan::v1::ExitStatus::KIND_EXITED &&
                    ev.finished().exit_status().code() == 0;
    }
  }
};

// Samples the VmRSS of some processes every 20 ms while it lives; resets
// their VmHWM first, so that afterwards VmHWM is the peak of this window.
class RssWatch {
 public:
  explicit RssWatch(std::vector<pid_t> pids) : pids_(std::move(pids)) {
    for (pid_t pid : pids_) {
      // "5" resets the peak RSS (Linux 4.0+); without it only the samples.
      std::ofstream(absl::StrCat("/proc/", pid, "/clear_refs")) << "5";
      before_.push_back(StatusMb(absl::StrCat(pid), "VmRSS"));
    }
    peak_ = before_;
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        Sample();
        absl::SleepFor(absl::Milliseconds(20));
      }
    });
  }
  ~RssWatch() { Stop(); }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    thread_.join();
    Sample();
    for (size_t i = 0; i < pids_.size(); ++i) {
      const std::string pid = absl::StrCat(pids_[i]);
      after_.push_back(StatusMb(pid, "VmRSS"));
      peak_[i] = std::max(peak_[i], StatusMb(pid, "VmHWM"));
    }
  }
  // In MB, of the i-th process given; after Stop().
  double before(size_t i) const { return before_[i]; }
  double after(size_t i) const { return after_[i]; }
  double peak(size_t i) const { return peak_[i]; }

 private:
  void Sample() {
    for (size_t i = 0; i < pids_.size(); ++i) {
      peak_[i] = std::max(peak_[i], StatusMb(absl::StrCat(pids_[i]), "VmRSS"));
    }
  }
  std::vector<pid_t> pids_;
  std::vector<double> before_, after_, peak_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// One Exec of the generator: its events, wall seconds and the CPU seconds
// core, the periphery and this process spent meanwhile.
struct VaranRun {
  Received got;
  absl::Status status;
  double seconds = 0;
  double stored_seconds = 0;  // until core's store committed it all
  // cpu_core_stream: until the stream ended; cpu_core: until stored.
  double cpu_core_stream = 0, cpu_core = 0, cpu_periphery = 0, cpu_client = 0;
  double rss_before = 0, rss_after = 0, rss_peak = 0;  // core, MB
  double periphery_rss_growth = 0;                     // peak - before, MB
};

VaranRun RunVaran(varan::client::CoreClient* client, const Options& opt,
                  uint64_t bytes, uint64_t capture_limit, pid_t core,
                  pid_t periphery) {
  varan::v1::DispatchRequest request;
  request.mutable_target()->add_names("bench");
  request.mutable_spec()->add_argv(opt.generator);
  request.mutable_spec()->add_argv(absl::StrCat(bytes));
  if (capture_limit > 0) {
    request.mutable_options()->set_capture_limit_bytes(capture_limit);
  }
  VaranRun run;
  const std::string c = absl::StrCat(core), p = absl::StrCat(periphery);
  const double core0 = CpuSeconds(c), per0 = CpuSeconds(p);
  const double self0 = CpuSeconds("self");
  RssWatch rss({core, periphery});
  const absl::Time start = absl::Now();
  run.status = client->Exec(request, std::ref(run.got));
  run.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  run.cpu_core_stream = CpuSeconds(c) - core0;
  // The store commits in order (one writer thread): once a later Dispatch
  // is acknowledged, all the output the stream handed to it is committed,
  // so core's CPU and memory below include storing it.
  varan::v1::DispatchRequest marker;
  marker.mutable_target()->add_names("bench");
  marker.mutable_spec()->add_argv("/bin/true");
  auto m = client->Dispatch(marker);
  if (!m.ok()) {
    run.status = m.status();
  } else {
    run.stored_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    run.status.Update(
        client->WatchJob(m->job_id(), 0, [](const varan::v1::JobEvent&) {}));
  }
  rss.Stop();
  run.cpu_core = CpuSeconds(c) - core0;
  run.cpu_periphery = CpuSeconds(p) - per0;
  run.cpu_client = CpuSeconds("self") - self0;
  run.rss_before = rss.before(0);
  run.rss_after = rss.after(0);
  run.rss_peak = rss.peak(0);
  run.periphery_rss_growth = rss.peak(1) - rss.before(1);
  return run;
}

bool Complete(const VaranRun& run, uint64_t bytes, const char* what) {
  if (run.status.ok() && run.got.bytes == bytes && !run.got.gap &&
      run.got.exited_zero) {
    return true;
  }
  std::fprintf(stderr,
               "output_bench: %s: %s; %llu of %llu bytes arrived (%llu not "
               "captured), %s, %s\n",
               what, run.status.ToString().c_str(),
               static_cast<unsigned long long>(run.got.bytes),
               static_cast<unsigned long long>(bytes),
               static_cast<unsigned long long>(run.got.uncaptured),
               run.got.gap ? "a gap in the chunks" : "no gap",
               run.got.exited_zero ? "exit 0" : "not exit 0");
  return false;
}

// One `ssh HOST GENERATOR BYTES`, its stdout read here to the end: the bytes
// read (-1 if ssh failed), wall and ssh client CPU seconds.
struct SshRun {
  int64_t bytes = -1;
  double seconds = 0;
  double cpu_client = 0;
};

SshRun RunSsh(const Options& opt, uint64_t bytes) {
  SshRun run;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return run;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> args = {"/usr/bin/ssh", "-F",
                                   opt.ssh_config, opt.ssh_host,
                                   opt.generator,  absl::StrCat(bytes)};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const absl::Time start = absl::Now();
  pid_t pid;
  const int spawned =
      posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    return run;
  }
  std::vector<char> buf(256 * 1024);
  uint64_t got = 0;
  ssize_t r;
  while ((r = read(out[0], buf.data(), buf.size())) != 0) {
    if (r < 0 && errno != EINTR) break;
    if (r > 0) got += static_cast<uint64_t>(r);
  }
  close(out[0]);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  run.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  run.cpu_client = static_cast<double>(usage.ru_utime.tv_sec) +
                   usage.ru_utime.tv_usec / 1e6 +
                   static_cast<double>(usage.ru_stime.tv_sec) +
                   usage.ru_stime.tv_usec / 1e6;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    run.bytes = static_cast<int64_t>(got);
  }
  return run;
}

double Median(const std::vector<double>& v) { return Percentile(v, 0.5); }

// The capture limit each round needs so that the whole stream reaches the
// client: 0 (core's default) if a 16 MiB probe with the default limit
// arrives whole, else `bytes`.
uint64_t ChooseCaptureLimit(varan::client::CoreClient* client,
                            const Options& opt, uint64_t bytes, pid_t core,
                            pid_t periphery, std::string* why) {
  if (opt.capture_limit == "default") {
    *why = "core's default (as asked)";
    return 0;
  }
  if (opt.capture_limit != "auto") {
    *why = absl::StrCat(opt.capture_limit, " bytes (as asked)");
    return std::stoull(opt.capture_limit);
  }
  const uint64_t probe = 16 << 20;
  VaranRun run = RunVaran(client, opt, probe, 0, core, periphery);
  if (run.status.ok() && run.got.bytes == probe) {
    *why =
        "core's default: a 16 MiB probe with it arrived whole, so live "
        "output is not cut at the capture limit";
    return 0;
  }
  *why = absl::StrCat(
      bytes,
      " bytes, raised for the stream: a 16 MiB probe with core's default "
      "limit arrived with ",
      run.got.bytes, " bytes (live output stops at the capture limit)");
  return bytes;
}

int Stream(const Options& opt, varan::client::CoreClient* client, pid_t core,
           pid_t periphery) {
  const uint64_t bytes = static_cast<uint64_t>(opt.mib) << 20;
  const bool with_ssh = !opt.ssh_config.empty();
  std::string why;
  const uint64_t limit =
      ChooseCaptureLimit(client, opt, bytes, core, periphery, &why);
  const std::string load_before = LoadAverage();
  std::vector<double> varan_mbs, ssh_mbs, ratio, rss_growth, core_cpu,
      core_stream_cpu, stored_s, periphery_cpu, client_cpu, ssh_cpu,
      periphery_rss;
  std::vector<std::string> rows;
  uint64_t chunks = 0;
  for (int i = 0; i < opt.rounds; ++i) {
    SshRun s;
    auto ssh = [&] {
      if (!with_ssh) return true;
      s = RunSsh(opt, bytes);
      if (s.bytes == static_cast<int64_t>(bytes)) return true;
      std::fprintf(stderr, "output_bench: ssh: %lld of %llu bytes\n",
                   static_cast<long long>(s.bytes),
                   static_cast<unsigned long long>(bytes));
      return false;
    };
    if (i % 2 == 1 && !ssh()) return 1;
    VaranRun v = RunVaran(client, opt, bytes, limit, core, periphery);
    if (!Complete(v, bytes, "Exec")) return 1;
    if (i % 2 == 0 && !ssh()) return 1;
    const double gib = static_cast<double>(bytes) / kGiB;
    varan_mbs.push_back(static_cast<double>(bytes) / v.seconds / 1e6);
    rss_growth.push_back(v.rss_peak - v.rss_before);
    core_cpu.push_back(v.cpu_core / gib);
    core_stream_cpu.push_back(v.cpu_core_stream / gib);
    stored_s.push_back(v.stored_seconds);
    periphery_cpu.push_back(v.cpu_periphery / gib);
    client_cpu.push_back(v.cpu_client / gib);
    periphery_rss.push_back(v.periphery_rss_growth);
    chunks = v.got.chunks;
    std::string ssh_cells = "| – | – | – ";
    if (with_ssh) {
      ssh_mbs.push_back(static_cast<double>(bytes) / s.seconds / 1e6);
      ratio.push_back(varan_mbs.back() / ssh_mbs.back());
      ssh_cpu.push_back(s.cpu_client / gib);
      ssh_cells =
          absl::StrCat("| ", absl::StrFormat("%.0f", ssh_mbs.back()), " | ",
                       absl::StrFormat("%.2f", ratio.back()), "x | ",
                       absl::StrFormat("%.2f", ssh_cpu.back()), " ");
    }
    rows.push_back(absl::StrFormat(
        "| %d (%s first) | %.0f %s| %.0f MB (%.0f → %.0f) | %.2f / %.2f | "
        "%.1f s | %.2f | %.2f | %.0f MB |",
        i + 1, i % 2 == 0 ? "Varan" : "ssh", varan_mbs.back(), ssh_cells,
        rss_growth.back(), v.rss_before, v.rss_peak, core_stream_cpu.back(),
        core_cpu.back(), stored_s.back(), periphery_cpu.back(),
        client_cpu.back(), periphery_rss.back()));
  }
  std::printf(
      "### 4. %d MiB of stdout to the client: Varan versus ssh (output_bench; "
      "%d rounds, interleaved; load average %s, at the end %s)\n\n",
      opt.mib, opt.rounds, load_before.c_str(), LoadAverage().c_str());
  std::printf(
      "`output_gen %llu` (pseudo-random bytes, a 1 MiB block written again "
      "and again) on one real periphery, through core to this client with "
      "`CoreClient::Exec` (every event read); and the same command through "
      "`ssh` (OpenSSH defaults: no compression, its default cipher) to the "
      "sshd of bench/peers on 127.0.0.1, its stdout read here to the end. "
      "The test fleet runs without TLS (plaintext gRPC on loopback), ssh "
      "encrypts. "
      "MB/s is bytes / wall time of the call. Every run checked: all bytes "
      "arrived, chunk sequence without gaps, exit 0. Capture limit: %s. "
      "CPU-s/GiB from /proc/PID/stat (utime + stime); core's RSS growth is "
      "its peak (VmHWM, reset before each run, and VmRSS every 20 ms) minus "
      "its RSS before (in brackets: before → peak, MB; glibc keeps what "
      "core freed, so a round after one that grew core starts high and "
      "grows less), until the store committed the output (a later "
      "Dispatch acknowledged: the store commits in order), which is also "
      "when core's CPU is read the second time; the stream does not wait "
      "for the store. The client received %llu chunks in the last round "
      "(%.1f KiB each on average).\n\n",
      static_cast<unsigned long long>(bytes), why.c_str(),
      static_cast<unsigned long long>(chunks),
      chunks > 0 ? static_cast<double>(bytes) / chunks / 1024 : 0.0);
  std::printf(
      "| round | Varan MB/s | ssh MB/s | Varan / ssh | ssh client CPU-s/GiB "
      "| core peak RSS growth | core CPU-s/GiB (stream / until stored) | "
      "stored after | periphery CPU-s/GiB | client CPU-s/GiB | periphery "
      "peak RSS growth |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& row : rows) std::printf("%s\n", row.c_str());
  std::printf(
      "| median | %.0f | %s | %s | %s | %.0f MB | %.2f / %.2f | %.1f s | "
      "%.2f | %.2f | %.0f MB |\n\n",
      Median(varan_mbs),
      with_ssh ? absl::StrFormat("%.0f", Median(ssh_mbs)).c_str() : "–",
      with_ssh ? absl::StrFormat("%.2fx", Median(ratio)).c_str() : "–",
      with_ssh ? absl::StrFormat("%.2f", Median(ssh_cpu)).c_str() : "–",
      Median(rss_growth), Median(core_stream_cpu), Median(core_cpu),
      Median(stored_s), Median(periphery_cpu), Median(client_cpu),
      Median(periphery_rss));
  auto verdict = [](bool pass) { return pass ? "**PASS**" : "**FAIL**"; };
  if (with_ssh) {
    std::printf(
        "- Goal: Varan >= 2x ssh's throughput: %s (median ratio %.2fx)\n",
        verdict(Median(ratio) >= 2), Median(ratio));
  } else {
    std::printf(
        "- Goal: Varan >= 2x ssh's throughput: not measured (no ssh)\n");
  }
  std::printf(
      "- Goal: >= 800 MB/s on an idle machine: %s (median %.0f MB/s, load "
      "average at start %s)\n",
      verdict(Median(varan_mbs) >= 800), Median(varan_mbs),
      load_before.c_str());
  std::printf(
      "- Goal: core's peak RSS growth while streaming <= 64 MB: %s "
      "(median %.0f MB, worst %.0f MB)\n\n",
      verdict(Median(rss_growth) <= 64 &&
              *std::max_element(rss_growth.begin(), rss_growth.end()) <= 64),
      Median(rss_growth),
      *std::max_element(rss_growth.begin(), rss_growth.end()));
  return 0;
}

int Flood(const Options& opt, varan::client::CoreClient* client, pid_t core,
          pid_t periphery) {
  const uint64_t bytes = static_cast<uint64_t>(opt.flood_mib) << 20;
  const std::string load_before = LoadAverage();
  VaranRun v = RunVaran(client, opt, bytes, 0, core, periphery);
  if (!v.status.ok() || !v.got.exited_zero || v.got.gap) {
    std::fprintf(stderr, "output_bench: flood: %s, %s\n",
                 v.status.ToString().c_str(),
                 v.got.exited_zero ? "exit 0" : "not exit 0");
    return 1;
  }
  const double gib = static_cast<double>(bytes) / kGiB;
  std::printf(
      "### 4b. Flood: %d MiB of stdout through Exec with core's default "
      "limits (output_bench; load average %s, at the end %s)\n\n",
      opt.flood_mib, load_before.c_str(), LoadAverage().c_str());
  std::printf(
      "| client received | not captured (finished event) | wall | core RSS "
      "before | core RSS peak | core RSS after | core CPU-s/GiB | "
      "periphery CPU-s/GiB |\n|---|---|---|---|---|---|---|---|\n");
  std::printf(
      "| %.1f MiB | %.1f MiB | %.1f s | %.0f MB | %.0f MB | %.0f MB | %.2f | "
      "%.2f |\n\n",
      static_cast<double>(v.got.bytes) / (1 << 20),
      static_cast<double>(v.got.uncaptured) / (1 << 20), v.seconds,
      v.rss_before, v.rss_peak, v.rss_after, v.cpu_core / gib,
      v.cpu_periphery / gib);
  const double growth = v.rss_peak - v.rss_before;
  std::printf(
      "- Flat (core's peak RSS growth <= 64 MB): %s (%.0f MB); all %d MiB "
      "reached the client: %s\n\n",
      growth <= 64 ? "**PASS**" : "**FAIL**", growth, opt.flood_mib,
      v.got.bytes == bytes ? "yes"
                           : "no (live output stops at the capture "
                             "limit)");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // As varanctl does: this process is the client measured.
  varan::KeepHeapForStreams();
  Options opt;
  if (!varan::bench::ParseFlags(
          argc, argv, "output_bench",
          {
              {"--mib", [&](const std::string& v) { opt.mib = std::stoi(v); }},
              {"--rounds",
               [&](const std::string& v) { opt.rounds = std::stoi(v); }},
              {"--flood-mib",
               [&](const std::string& v) { opt.flood_mib = std::stoi(v); }},
              {"--capture-limit",
               [&](const std::string& v) {
                 // auto, default or a byte count (stoull throws on others)
                 if (v != "auto" && v != "default") (void)std::stoull(v);
                 opt.capture_limit = v;
               }},
              {"--generator", [&](const std::string& v) { opt.generator = v; }},
              {"--ssh-config",
               [&](const std::string& v) { opt.ssh_config = v; }},
              {"--ssh-host", [&](const std::string& v) { opt.ssh_host = v; }},
          })) {
    return 2;
  }
  if (opt.mib < 1 || opt.rounds < 1 || opt.flood_mib < 0 ||
      opt.ssh_config.empty() != opt.ssh_host.empty()) {
    std::fprintf(stderr,
                 "output_bench: counts must be positive; --ssh-config and "
                 "--ssh-host go together\n");
    return 2;
  }
  if (opt.generator.empty()) {
    std::string self = argv[0];
    opt.generator = self.substr(0, self.rfind('/') + 1) + "output_gen";
  }
  char resolved[PATH_MAX];
  if (realpath(opt.generator.c_str(), resolved) == nullptr ||
      access(resolved, X_OK) != 0) {
    std::fprintf(stderr, "output_bench: no generator at %s\n",
                 opt.generator.c_str());
    return 2;
  }
  opt.generator = resolved;
  TestFleet fleet;
  fleet.StartCore();
  varan::testing::Daemon* periphery =
      fleet.StartPeriphery("bench", {}, {"--log-level", "warn"});
  auto client = varan::bench::AdminClient(fleet, absl::Minutes(15));
  if (!client.ok()) {
    std::fprintf(stderr, "output_bench: %s\n",
                 client.status().ToString().c_str());
    return 1;
  }
  const pid_t core = fleet.core()->pid();
  if (Stream(opt, client->get(), core, periphery->pid()) != 0) return 1;
  if (opt.flood_mib > 0 &&
      Flood(opt, client->get(), core, periphery->pid()) != 0) {
    return 1;
  }
  return 0;
}
