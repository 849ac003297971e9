// TLS beside plaintext (issue #20), measured in the same run: the same
// fleet twice — varan-core and N real dial-mode peripheries on loopback —
// once with the defaults (TLS from core's built-in cluster CA, peripheries'
// certificates, mutual TLS on core's calls to them) and once with
// --insecure-plaintext everywhere. Run by run, interleaved between the two
// fleets so load from elsewhere falls on both alike:
//
//   single: CoreClient::Exec of /bin/true on one periphery, warm client;
//   fan-out: CoreClient::Exec of /bin/true on all N peripheries at once,
//            until the stream ends after job_finished.
//
// Printed as a Markdown table with p50/p90/p99 and the ratio TLS/plaintext.
// Warm connections are what a running fleet has; the handshakes are paid
// once per connection, which the first (warm-up) runs include.
//
// Usage (defaults in brackets):
//   tls_bench [--peripheries N] [20]  [--runs N] [300]
//             [--fanout-runs N] [40]  [--warmup N] [20]
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.pb.h"

namespace {

using varan::bench::LoadAverage;
using varan::bench::Percentile;
using varan::testing::TestFleet;

struct Options {
  int peripheries = 20;
  int runs = 300;
  int fanout_runs = 40;
  int warmup = 20;
};

// Exec of `request` to its end; the microseconds it took, or -1 when the job
// did not succeed on every target.
double TimedExec(varan::client::CoreClient* client,
                 const varan::v1::DispatchRequest& request, int targets) {
  int succeeded = -1;
  const absl::Time start = absl::Now();
  absl::Status s = client->Exec(request, [&](const varan::v1::JobEvent& ev) {
    if (ev.has_job_finished() &&
        ev.job_finished().state() == varan::v1::JOB_STATE_SUCCEEDED) {
      succeeded = static_cast<int>(ev.job_finished().succeeded());
    }
  });
  const double us = absl::ToDoubleMicroseconds(absl::Now() - start);
  if (!s.ok() || succeeded != targets) {
    std::fprintf(stderr, "tls_bench: Exec: %s, %d of %d succeeded\n",
                 s.ToString().c_str(), succeeded, targets);
    return -1;
  }
  return us;
}

struct Fleet {
  std::unique_ptr<TestFleet> fleet;
  varan::v1::DispatchRequest single, all;
};

Fleet Start(bool plaintext, int peripheries) {
  Fleet f;
  f.fleet = std::make_unique<TestFleet>(
      plaintext ? std::vector<std::string>{"--insecure-plaintext"}
                : std::vector<std::string>{});
  f.fleet->StartCore();
  for (int i = 0; i < peripheries; ++i) {
    const std::string name = absl::StrCat("p", i);
    f.fleet->LaunchPeriphery(name, {}, {"--log-level", "warn"});
    f.all.mutable_target()->add_names(name);
  }
  f.single.mutable_target()->add_names("p0");
  for (auto* r : {&f.single, &f.all}) r->mutable_spec()->add_argv("/bin/true");
  return f;
}

bool AllOnline(TestFleet* fleet, int n) {
  return varan::testing::WaitFor(
      [&] {
        auto list = fleet->client()->ListPeripheries({});
        if (!list.ok() || static_cast<int>(list->size()) != n) return false;
        for (const auto& p : *list) {
          if (p.state() != varan::v1::PERIPHERY_STATE_ONLINE) return false;
        }
        return true;
      },
      absl::Seconds(60));
}

void Row(const char* name, const std::vector<double>& tls,
         const std::vector<double>& plain) {
  auto ms = [](double us) { return us / 1000.0; };
  std::printf(
      "| %s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | "
      "%.2f | %.2f |\n",
      name, ms(Percentile(tls, 0.5)), ms(Percentile(tls, 0.9)),
      ms(Percentile(tls, 0.99)), ms(Percentile(plain, 0.5)),
      ms(Percentile(plain, 0.9)), ms(Percentile(plain, 0.99)),
      Percentile(tls, 0.5) / Percentile(plain, 0.5),
      Percentile(tls, 0.99) / Percentile(plain, 0.99));
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!varan::bench::ParseFlags(
          argc, argv, "tls_bench",
          {
              {"--peripheries",
               [&](const std::string& v) { opt.peripheries = std::stoi(v); }},
              {"--runs",
               [&](const std::string& v) { opt.runs = std::stoi(v); }},
              {"--fanout-runs",
               [&](const std::string& v) { opt.fanout_runs = std::stoi(v); }},
              {"--warmup",
               [&](const std::string& v) { opt.warmup = std::stoi(v); }},
          })) {
    return 2;
  }
  if (opt.peripheries < 1 || opt.runs < 1 || opt.fanout_runs < 1 ||
      opt.warmup < 0) {
    std::fprintf(stderr, "tls_bench: counts must be positive\n");
    return 2;
  }
  Fleet tls = Start(/*plaintext=*/false, opt.peripheries);
  Fleet plain = Start(/*plaintext=*/true, opt.peripheries);
  for (Fleet* f : {&tls, &plain}) {
    if (!AllOnline(f->fleet.get(), opt.peripheries)) {
      std::fprintf(stderr, "tls_bench: the peripheries did not come online\n");
      return 1;
    }
  }
  const std::string load_before = LoadAverage();
  std::vector<double> single_tls, single_plain, fan_tls, fan_plain;
  for (int i = -opt.warmup; i < opt.runs; ++i) {
    const double t = TimedExec(tls.fleet->client(), tls.single, 1);
    const double p = TimedExec(plain.fleet->client(), plain.single, 1);
    if (t < 0 || p < 0) return 1;
    if (i < 0) continue;
    single_tls.push_back(t);
    single_plain.push_back(p);
  }
  for (int i = -opt.warmup / 4; i < opt.fanout_runs; ++i) {
    const double t = TimedExec(tls.fleet->client(), tls.all, opt.peripheries);
    const double p =
        TimedExec(plain.fleet->client(), plain.all, opt.peripheries);
    if (t < 0 || p < 0) return 1;
    if (i < 0) continue;
    fan_tls.push_back(t);
    fan_plain.push_back(p);
  }
  std::printf(
      "### TLS by default beside plaintext (tls_bench; %d peripheries per "
      "fleet; %d single-target and %d fan-out runs each after warm-up, "
      "interleaved; load average %s, at the end %s)\n\n",
      opt.peripheries, opt.runs, opt.fanout_runs, load_before.c_str(),
      LoadAverage().c_str());
  std::printf(
      "CoreClient::Exec of `/bin/true`, warm client, until the stream ends "
      "after job_finished. TLS: the defaults (core's built-in CA, the client "
      "pinning it, mutual TLS between core and peripheries); plaintext: "
      "`--insecure-plaintext` on all of them.\n\n");
  std::printf(
      "| measure | TLS p50 | TLS p90 | TLS p99 | plaintext p50 | plaintext "
      "p90 | plaintext p99 | ratio p50 | ratio p99 |\n"
      "|---|---|---|---|---|---|---|---|---|\n");
  Row("single target", single_tls, single_plain);
  const std::string fan = absl::StrCat("fan-out to ", opt.peripheries);
  Row(fan.c_str(), fan_tls, fan_plain);
  std::printf("\n");
  return 0;
}
