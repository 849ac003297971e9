// Tunnel mode through the real binaries (issue #6): a periphery that serves
// no port at all and is reached only through its Registry.Connect tunnel;
// one that has both; many executions at once over one tunnel, a busy one
// not stalling a quick one; cancel over the tunnel.
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/integration/sockets.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;

class TunnelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_ = std::make_unique<TestFleet>(
        std::vector<std::string>{"--heartbeat-interval", "0.3"});
    fleet_->StartCore();
  }

  std::string MustDispatch(const std::string& name, const std::string& shell) {
    varan::v1::DispatchRequest req;
    req.mutable_target()->add_names(name);
    req.mutable_spec()->set_shell(shell);
    auto resp = fleet_->client()->Dispatch(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->job_id() : "";
  }

  std::unique_ptr<TestFleet> fleet_;
};

TEST_F(TunnelTest, PeripheryWithNoListeningPortRunsCommandsThroughItsTunnel) {
  Daemon* p = fleet_->StartPeriphery("behind-nat", {"env=nat"},
                                     {"--tunnel", "--no-listen"});
  ASSERT_TRUE(p->Running());
  // It really serves nothing: no listening TCP socket belongs to it.
  EXPECT_THAT(ListeningPorts(p->pid()), ::testing::IsEmpty());
  EXPECT_THAT(p->Log(), HasSubstr("serves no port"));

  auto info = fleet_->client()->GetPeriphery("behind-nat");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->connection(), varan::v1::CONNECTION_TUNNEL);
  EXPECT_EQ(info->address(), "");
  EXPECT_EQ(info->state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_EQ(info->labels().at("env"), "nat");

  // varanctl exec end to end: output on both streams, exit code passed on.
  RunResult r = fleet_->Ctl({"exec", "-n", "behind-nat", "--shell", "--",
                             "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");

  // Heartbeats ride the tunnel: it stays online well past its TTL.
  absl::SleepFor(absl::Seconds(2));
  info = fleet_->client()->GetPeriphery("behind-nat");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state(), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_NE(info->stats().uptime_seconds(), 0u);
}

TEST_F(TunnelTest, ManyExecutionsShareOneTunnelAndABusyOneDoesNotStallOthers) {
  fleet_->StartPeriphery("t1", {}, {"--tunnel", "--no-listen"});
  // A command flooding its stdout without end, then quick ones beside it.
  varan::v1::DispatchRequest flood_req;
  flood_req.mutable_target()->add_names("t1");
  flood_req.mutable_spec()->set_shell(
      "while :; do head -c 1048576 /dev/zero; done");
  flood_req.mutable_options()->set_capture_limit_bytes(1024);
  auto flood = fleet_->client()->Dispatch(flood_req);
  ASSERT_TRUE(flood.ok()) << flood.status();
  auto flooded = [&] {
    auto j = fleet_->client()->GetJob(flood->job_id(), kPreview);
    return j.ok() ? j->targets(0).stdout_info().total_bytes() : 0;
  };
  ASSERT_TRUE(WaitFor([&] { return flooded() > 0; }));
  std::vector<std::string> quick;
  for (int i = 0; i < 20; ++i) {
    quick.push_back(
        MustDispatch("t1", absl::StrCat("sleep 0.2; echo quick-", i)));
  }
  for (int i = 0; i < 20; ++i) {
    varan::v1::Job job = fleet_->WaitFinished(quick[i], absl::Seconds(10));
    ASSERT_EQ(job.state(), varan::v1::JOB_STATE_SUCCEEDED) << job.DebugString();
    EXPECT_EQ(job.targets(0).stdout_info().head(),
              absl::StrCat("quick-", i, "\n"));
  }
  // The flood went on meanwhile, through the same tunnel (the uncaptured
  // bytes are counted from what arrived).
  auto during = fleet_->client()->GetJob(flood->job_id(), kPreview);
  ASSERT_TRUE(during.ok());
  EXPECT_EQ(during->state(), varan::v1::JOB_STATE_RUNNING);
  const uint64_t before = flooded();
  ASSERT_TRUE(WaitFor([&] { return flooded() > before + (16u << 20); }));
  ASSERT_TRUE(fleet_->client()->CancelJob(flood->job_id()).ok());
  EXPECT_EQ(fleet_->WaitFinished(flood->job_id(), absl::Seconds(30))
                .targets(0)
                .state(),
            varan::v1::TARGET_STATE_CANCELED);
}

TEST_F(TunnelTest, CancelReachesACommandOverTheTunnel) {
  fleet_->StartPeriphery("t1", {}, {"--tunnel", "--no-listen"});
  const std::string id = MustDispatch("t1", "echo up; exec sleep 60");
  ASSERT_TRUE(WaitFor([&] {
    auto j = fleet_->client()->GetJob(id, kPreview);
    return j.ok() && j->targets(0).stdout_info().head() == "up\n";
  }));
  ASSERT_TRUE(fleet_->client()->CancelJob(id).ok());
  varan::v1::Job job = fleet_->WaitFinished(id, absl::Seconds(10));
  EXPECT_EQ(job.state(), varan::v1::JOB_STATE_CANCELED);
  EXPECT_EQ(job.targets(0).state(), varan::v1::TARGET_STATE_CANCELED)
      << job.DebugString();
  EXPECT_EQ(job.targets(0).exit_status().kind(),
            varan::v1::ExitStatus::KIND_CANCELED);
}

TEST_F(TunnelTest, TunnelPeripheryMayServeItsPortToo) {
  Daemon* p = fleet_->StartPeriphery("both", {}, {"--tunnel"});
  auto info = fleet_->client()->GetPeriphery("both");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->connection(), varan::v1::CONNECTION_TUNNEL);
  EXPECT_NE(info->address(), "");
  // Served over TLS with the certificate core issued it; the health service
  // asks no client certificate.
  ClientTlsFiles any_server;
  any_server.skip_verify = true;
  EXPECT_TRUE(Healthy(info->address(), any_server));
  EXPECT_FALSE(Healthy(info->address()));
  EXPECT_THAT(ListeningPorts(p->pid()), ::testing::SizeIs(1));
  RunResult r = fleet_->Ctl({"exec", "-n", "both", "--shell", "--", "echo hi"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "hi\n");
  // And a dial periphery beside it works as before.
  fleet_->StartPeriphery("dial");
  info = fleet_->client()->GetPeriphery("dial");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->connection(), varan::v1::CONNECTION_DIAL);
  r = fleet_->Ctl({"exec", "--all", "--shell", "--", "echo x"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(TunnelFlagsTest, NoListenWithoutTunnelIsAClearError) {
  TempDir dir;
  WriteFile(dir.File("join.token"), "x\n");
  RunResult r = RunProgram({BinPath("varan-periphery"), "--core", "[::1]:1",
                            "--join-token-file", dir.File("join.token"),
                            "--state-dir", dir.File("state"), "--no-listen"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--no-listen needs --tunnel"));
  RunResult help = RunProgram({BinPath("varan-periphery"), "--help"});
  EXPECT_THAT(help.out, HasSubstr("--tunnel"));
  EXPECT_THAT(help.out, HasSubstr("--no-listen"));
  EXPECT_THAT(help.out, HasSubstr("--keepalive-time"));
  EXPECT_THAT(help.out, HasSubstr("--held-results"));
}

// Keepalive and dead-peer detection, with keepalive shortened to 1 s on both
// sides and heartbeats so rare that the tunnel is otherwise idle.
class TunnelKeepaliveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_ = std::make_unique<TestFleet>(std::vector<std::string>{
        "--heartbeat-interval", "30", "--keepalive-time", "1",
        "--keepalive-timeout", "1"});
    fleet_->StartCore();
    periphery_ = fleet_->StartPeriphery(
        "idle", {},
        {"--tunnel", "--no-listen", "--keepalive-time", "1",
         "--keepalive-timeout", "1", "--reconnect-max-backoff", "1"},
        {{"GRPC_TRACE", "http_keepalive"}, {"GRPC_VERBOSITY", "INFO"}});
  }

  static size_t Count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos;
         at = text.find(what, at + 1)) {
      ++n;
    }
    return n;
  }

  std::unique_ptr<TestFleet> fleet_;
  Daemon* periphery_ = nullptr;
};

TEST_F(TunnelKeepaliveTest, IdleTunnelOutlivesManyKeepalivePeriods) {
  ASSERT_THAT(periphery_->Log(), HasSubstr("registered with core"));
  absl::SleepFor(absl::Seconds(8));  // eight keepalive periods, no heartbeat
  const std::string log = periphery_->Log();
  // Pings went out all along (on the idle connection) ...
  EXPECT_GE(Count(log, "Start keepalive ping"), 4u) << log;
  // ... and core never objected, nor did the tunnel ever close. (The
  // tunnel that registered is replaced once, at once, by one presenting the
  // certificate core issued: that one stays.)
  EXPECT_THAT(log, ::testing::Not(HasSubstr("too_many_pings")));
  EXPECT_EQ(Count(log, "tunnel to core at"), 1u) << log;
  EXPECT_THAT(log, HasSubstr("opening the tunnel again with the certificate"));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("closed:")));
  EXPECT_EQ(Count(fleet_->core()->Log(), "registered from"), 1u);
  EXPECT_EQ(Count(fleet_->core()->Log(), "tunnel of periphery"), 1u)
      << fleet_->core()->Log();
  // Still the same tunnel, and it works.
  RunResult r = fleet_->Ctl({"exec", "-n", "idle", "--shell", "--", "echo ok"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ok\n");
}

TEST_F(TunnelKeepaliveTest, FrozenCoreIsNoticedWithinKeepaliveTimeAndTimeout) {
  ASSERT_EQ(kill(fleet_->core()->pid(), SIGSTOP), 0);
  const absl::Time frozen = absl::Now();
  // Heartbeats (every 30 s) would take far longer: this is keepalive.
  const bool noticed =
      WaitFor([&] { return absl::StrContains(periphery_->Log(), "closed: "); },
              absl::Seconds(10));
  const absl::Duration took = absl::Now() - frozen;
  ASSERT_EQ(kill(fleet_->core()->pid(), SIGCONT), 0);
  ASSERT_TRUE(noticed) << periphery_->Log();
  EXPECT_LT(took, absl::Seconds(5));
  // Once core thaws, the periphery is back on a new tunnel by itself (the
  // log held "tunnel to core at ... open" and "... closed" before).
  EXPECT_TRUE(WaitFor(
      [&] {
        return Count(periphery_->Log(), "tunnel to core at") >= 3 &&
               absl::StrContains(periphery_->Log(), "open");
      },
      absl::Seconds(15)))
      << periphery_->Log();
  RunResult r = fleet_->Ctl({"exec", "-n", "idle", "--shell", "--", "echo ok"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace varan::testing
