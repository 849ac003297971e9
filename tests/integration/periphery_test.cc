// The periphery process under real load, called directly through its Agent
// service with the credential core issued (read from its state directory).
#include <dirent.h>

#include <fstream>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::testing {
namespace {

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  DIR* d = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (d == nullptr) return 0;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

// Children of `pid` (any state), from /proc/*/stat.
std::vector<std::string> ChildStates(pid_t pid) {
  std::vector<std::string> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    int child = 0;
    if (!absl::SimpleAtoi(e->d_name, &child)) continue;
    std::ifstream in(absl::StrCat("/proc/", child, "/stat"));
    std::string stat;
    std::getline(in, stat);
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    if (f.size() > 1 && f[1] == std::to_string(pid)) out.push_back(f[0]);
  }
  closedir(d);
  return out;
}

class PeripheryProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_.StartCore();
    periphery_ = fleet_.StartPeriphery("alpha");
    credential_ = ReadFile(fleet_.dir().File("periphery-alpha/credential"));
    while (!credential_.empty() && credential_.back() == '\n')
      credential_.pop_back();
    auto p = fleet_.client()->GetPeriphery("alpha");
    ASSERT_TRUE(p.ok()) << p.status();
    // Calls it as core does.
    channel_ = SecureChannel(p->address(), fleet_.AsCore());
    agent_ = varan::v1::Agent::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientReaderInterface<varan::v1::ExecuteEvent>> Start(
      grpc::ClientContext* ctx, const std::string& shell) {
    ctx->AddMetadata("authorization", "Bearer " + credential_);
    varan::v1::ExecuteRequest req;
    req.mutable_spec()->set_shell(shell);
    return agent_->Execute(ctx, req);
  }

  TestFleet fleet_;
  Daemon* periphery_ = nullptr;
  std::string credential_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<varan::v1::Agent::Stub> agent_;
};

TEST_F(PeripheryProcessTest, SlowReaderKeepsPeripheryMemoryFlat) {
#ifdef VARAN_SANITIZED
  GTEST_SKIP()
      << "RSS is not meaningful under a sanitizer's allocator "
         "(quarantine keeps freed memory); measured in the normal build";
#endif
  // An endless producer read at a crawl: back-pressure must reach the
  // process (its pipe fills and it blocks) instead of periphery memory.
  grpc::ClientContext ctx;
  auto reader = Start(&ctx, "cat /dev/zero");
  varan::v1::ExecuteEvent ev;
  ASSERT_TRUE(reader->Read(&ev));  // started
  const long before = RssKb(periphery_->pid());
  uint64_t received = 0;
  const absl::Time until = absl::Now() + absl::Seconds(2);
  while (absl::Now() < until && reader->Read(&ev)) {
    received += ev.output().data().size();
    absl::SleepFor(absl::Milliseconds(20));
  }
  const long grown = RssKb(periphery_->pid()) - before;
  EXPECT_GT(received, 0u);
  EXPECT_LT(grown, 32 * 1024) << "periphery RSS grew by " << grown << " KiB";
  ctx.TryCancel();  // the caller leaves: the command must go
  while (reader->Read(&ev)) {
  }
  reader->Finish();
  EXPECT_TRUE(WaitFor([&] { return ChildStates(periphery_->pid()).empty(); }));
}

TEST_F(PeripheryProcessTest, NoZombiesAndNoDescriptorLeaksAfterManyRuns) {
  auto run = [&](const std::string& shell) {
    grpc::ClientContext ctx;
    auto reader = Start(&ctx, shell);
    varan::v1::ExecuteEvent ev;
    while (reader->Read(&ev)) {
    }
    return reader->Finish().ok();
  };
  ASSERT_TRUE(run("true"));  // warm up channels and threads
  const size_t fds_before = OpenFds(periphery_->pid());
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(run(i % 2 ? "echo out; echo err >&2" : "sleep 0.01 & exit 3"));
  }
  // Every command and background child is reaped: nothing left, no zombie.
  EXPECT_TRUE(WaitFor([&] { return ChildStates(periphery_->pid()).empty(); }))
      << ::testing::PrintToString(ChildStates(periphery_->pid()));
  EXPECT_LE(OpenFds(periphery_->pid()), fds_before + 2);
}

}  // namespace
}  // namespace varan::testing
