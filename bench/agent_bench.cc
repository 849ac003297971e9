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
#include "grpcpp/grpcpp.h"
#include "tests/integration/daemons.h"
#include "varan/v1/periphery.grpc.pb.h"

extern char** environ;

namespace {

using varan::testing::ReadFile;

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double BareSpawnMicros() {
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  absl::Time start = absl::Now();
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv, environ) != 0)
    return -1;
  int status;
  waitpid(pid, &status, 0);
  return absl::ToDoubleMicroseconds(absl::Now() - start);
}

// Runs one Execute call to the end; returns bytes of output received.
uint64_t Execute(varan::v1::Agent::Stub* stub, const std::string& credential,
                 const varan::v1::CommandSpec& spec, bool* ok) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + credential);
  varan::v1::ExecuteRequest req;
  *req.mutable_spec() = spec;
  auto reader = stub->Execute(&ctx, req);
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
  auto stub = varan::v1::Agent::NewStub(channel);

  varan::v1::CommandSpec true_spec;
  true_spec.add_argv("/bin/true");
  bool ok = true;
  for (int i = 0; i < 50; ++i) {  // warm-up: connection, caches
    Execute(stub.get(), credential, true_spec, &ok);
    BareSpawnMicros();
  }
  std::vector<double> bare, agent;
  for (int i = 0; i < runs; ++i) {
    bare.push_back(BareSpawnMicros());
    absl::Time start = absl::Now();
    Execute(stub.get(), credential, true_spec, &ok);
    agent.push_back(absl::ToDoubleMicroseconds(absl::Now() - start));
    if (!ok) {
      std::fprintf(stderr, "agent_bench: Execute of true failed\n");
      return 1;
    }
  }

  varan::v1::CommandSpec big;
  big.set_shell(
      absl::StrCat("head -c ", static_cast<uint64_t>(gib) << 30, " /dev/zero"));
  absl::Time start = absl::Now();
  uint64_t bytes = Execute(stub.get(), credential, big, &ok);
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (!ok || bytes != static_cast<uint64_t>(gib) << 30) {
    std::fprintf(stderr, "agent_bench: streaming run failed (%llu bytes)\n",
                 static_cast<unsigned long long>(bytes));
    return 1;
  }

  const double bare50 = Percentile(bare, 0.5), bare99 = Percentile(bare, 0.99);
  const double agent50 = Percentile(agent, 0.5),
               agent99 = Percentile(agent, 0.99);
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
