// Benchmark of the periphery's Agent.Execute against the bare OS, in one run:
//   1. spawn-to-exit of `true`: posix_spawn + waitpid here, versus
//      Agent.Execute over loopback (request -> started -> exited -> end of
//      call); p50 and p99 of each and the overhead;
//   2. streaming throughput: 1 GiB of stdout through Agent.Execute.
// It starts a real varan-core and varan-periphery on loopback, takes the
// periphery's credential from its state directory and calls Agent directly.
//
// Usage: agent_bench [--runs N] [--gib G]     (printed as a Markdown table)
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/daemons.h"
#include "varan/v1/periphery.grpc.pb.h"

extern char** environ;

namespace {

using varan::bench::BareSpawn;
using varan::bench::Percentile;
using varan::testing::ReadFile;

// Runs one Execute call to the end through `agent` (the generated client of
// the periphery's Agent service); returns bytes of output received. `*ok`
// says whether the call succeeded and the command exited 0.
uint64_t Execute(varan::v1::Agent::Stub* agent, const std::string& credential,
                 const varan::v1::CommandSpec& spec, bool* ok) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + credential);
  varan::v1::ExecuteRequest req;
  *req.mutable_spec() = spec;
  auto reader = agent->Execute(&ctx, req);
  varan::v1::ExecuteEvent ev;
  uint64_t bytes = 0;
  bool exited_zero = false;
  while (reader->Read(&ev)) {
    if (ev.has_output()) bytes += ev.output().data().size();
    if (ev.has_exited()) exited_zero = ev.exited().code() == 0;
  }
  *ok = reader->Finish().ok() && exited_zero;
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 500;
  int gib = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--runs") runs = std::stoi(argv[i + 1]);
    if (flag == "--gib") gib = std::stoi(argv[i + 1]);
  }
  varan::testing::TestFleet fleet;
  fleet.StartCore();
  fleet.StartPeriphery("bench", {}, {"--log-level", "warn"});
  std::string credential =
      ReadFile(fleet.dir().File("periphery-bench/credential"));
  while (!credential.empty() && credential.back() == '\n')
    credential.pop_back();
  auto peripheries = fleet.client()->ListPeripheries({});
  if (!peripheries.ok() || peripheries->empty() || credential.empty()) {
    std::fprintf(stderr, "agent_bench: the periphery did not come up\n");
    return 1;
  }
  const std::string address = (*peripheries)[0].address();
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto agent = varan::v1::Agent::NewStub(channel);

  varan::v1::CommandSpec true_spec;
  true_spec.add_argv("/bin/true");
  bool ok = true;
  // Each sample times one way of running `true`; any failure ends the run,
  // since a failed run would be timed as a suspiciously fast one.
  auto time_bare = [&] {
    absl::Time start = absl::Now();
    ok = BareSpawn();
    return absl::ToDoubleMicroseconds(absl::Now() - start);
  };
  auto time_agent = [&] {
    absl::Time start = absl::Now();
    Execute(agent.get(), credential, true_spec, &ok);
    return absl::ToDoubleMicroseconds(absl::Now() - start);
  };
  std::vector<double> bare, through_agent;
  for (int i = -50; i < runs; ++i) {  // the first 50 warm up (not kept)
    double b = time_bare();
    if (!ok) {
      std::fprintf(stderr, "agent_bench: posix_spawn of /bin/true failed\n");
      return 1;
    }
    double a = time_agent();
    if (!ok) {
      std::fprintf(stderr, "agent_bench: Agent.Execute of true failed\n");
      return 1;
    }
    if (i < 0) continue;
    bare.push_back(b);
    through_agent.push_back(a);
  }

  varan::v1::CommandSpec big;
  big.set_shell(
      absl::StrCat("head -c ", static_cast<uint64_t>(gib) << 30, " /dev/zero"));
  absl::Time start = absl::Now();
  uint64_t bytes = Execute(agent.get(), credential, big, &ok);
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!ok || bytes != static_cast<uint64_t>(gib) << 30) {
    std::fprintf(stderr, "agent_bench: streaming run failed (%llu bytes)\n",
                 static_cast<unsigned long long>(bytes));
    return 1;
  }

  const double bare50 = Percentile(bare, 0.5), bare99 = Percentile(bare, 0.99);
  const double agent50 = Percentile(through_agent, 0.5),
               agent99 = Percentile(through_agent, 0.99);
  std::printf("| measure (%d runs each) | p50 | p99 |\n|---|---|---|\n", runs);
  std::printf("| bare posix_spawn + waitpid of true | %.0f us | %.0f us |\n",
              bare50, bare99);
  std::printf("| Agent.Execute of true over loopback | %.0f us | %.0f us |\n",
              agent50, agent99);
  std::printf("| overhead (goal <= 1000 us at p50) | %.0f us | %.0f us |\n",
              agent50 - bare50, agent99 - bare99);
  std::printf("| ratio Agent.Execute / bare spawn | %.1fx | %.1fx |\n\n",
              agent50 / bare50, agent99 / bare99);
  std::printf(
      "| streaming %d GiB of stdout through Agent.Execute | %.2f s | %.0f MB/s "
      "(goal >= 500) |\n",
      gib, seconds, static_cast<double>(bytes) / seconds / 1e6);
  return 0;
}
