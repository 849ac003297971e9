// The walking path of issue #2 with the three real binaries on loopback:
// register -> list -> exec with streamed output -> exit codes propagated.
#include <signal.h>
#include <sys/utsname.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class WalkingPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_ = std::make_unique<TestFleet>(
        std::vector<std::string>{"--heartbeat-interval", "0.5"});
    fleet_->StartCore();
  }
  std::unique_ptr<TestFleet> fleet_;
};

TEST_F(WalkingPathTest, RegisterListExec) {
  fleet_->StartPeriphery("alpha", {"env=test", "tier=web"});

  RunResult list = fleet_->Ctl({"peripheries", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("alpha"));
  EXPECT_THAT(list.out, HasSubstr("online"));
  EXPECT_THAT(list.out, HasSubstr("env=test,tier=web"));
  // The advertised address parses back: bracketed IPv6.
  EXPECT_THAT(list.out, HasSubstr("[::1]:"));

  RunResult json = fleet_->Ctl({"peripheries", "list", "-o", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"name\": \"alpha\""));
  EXPECT_THAT(json.out, HasSubstr("\"state\": \"PERIPHERY_STATE_ONLINE\""));

  RunResult exec = fleet_->Ctl({"exec", "-n", "alpha", "--", "uname", "-a"});
  ASSERT_EQ(exec.exit_code, 0) << exec.err;
  RunResult local = RunProgram({"/bin/uname", "-a"});
  EXPECT_EQ(exec.out, local.out);
}

TEST_F(WalkingPathTest, ExitCodesPropagate) {
  fleet_->StartPeriphery("alpha");
  struct Case {
    std::vector<std::string> command;
    int exit_code;
  } cases[] = {
      {{"true"}, 0},
      {{"sh", "-c", "exit 3"}, 3},
      {{"false"}, 1},
      {{"sh", "-c", "kill -9 $$"}, 128 + 9},
      {{"/no/such/program"}, 127},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"exec", "-n", "alpha", "--"};
    args.insert(args.end(), c.command.begin(), c.command.end());
    RunResult r = fleet_->Ctl(args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.command[0] << ": " << r.err;
  }
  RunResult missing =
      fleet_->Ctl({"exec", "-n", "alpha", "--", "/no/such/program"});
  EXPECT_THAT(missing.err, HasSubstr("No such file or directory"));
}

TEST_F(WalkingPathTest, StdoutAndStderrStayApart) {
  fleet_->StartPeriphery("alpha");
  RunResult r = fleet_->Ctl(
      {"exec", "-n", "alpha", "--shell", "--", "echo to-out; echo to-err >&2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "to-out\n");
  EXPECT_THAT(r.err, HasSubstr("to-err\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("to-err")));
}

TEST_F(WalkingPathTest, OutputStreamsAsItIsProduced) {
  fleet_->StartPeriphery("alpha");
  varan::v1::DispatchRequest req;
  req.mutable_target()->add_names("alpha");
  req.mutable_spec()->set_shell("echo first; sleep 1; echo second");
  absl::Time first_at = absl::InfinitePast(), done_at = absl::InfinitePast();
  std::string out;
  absl::Status s =
      fleet_->client()->Exec(req, [&](const varan::v1::JobEvent& ev) {
        if (ev.has_output()) {
          out += ev.output().data();
          if (absl::StrContains(ev.output().data(), "first"))
            first_at = absl::Now();
        }
        if (ev.has_job_finished()) done_at = absl::Now();
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(out, "first\nsecond\n");
  // "first" reached the client while the command was still sleeping.
  EXPECT_GT(done_at - first_at, absl::Milliseconds(700));
}

TEST_F(WalkingPathTest, ALineEverySecondArrivesPromptly) {
  fleet_->StartPeriphery("alpha");
  varan::v1::DispatchRequest req;
  req.mutable_target()->add_names("alpha");
  req.mutable_spec()->set_shell(
      "for i in 1 2 3 4; do date +%s.%N; sleep 1; done");
  std::vector<absl::Duration> delays;
  absl::Status s =
      fleet_->client()->Exec(req, [&](const varan::v1::JobEvent& ev) {
        if (!ev.has_output()) return;
        // Each line carries the time the command printed it (same clock).
        double printed = 0;
        ASSERT_TRUE(absl::SimpleAtod(
            absl::StripAsciiWhitespace(ev.output().data()), &printed))
            << ev.output().data();
        delays.push_back(absl::Now() - absl::FromUnixNanos(static_cast<int64_t>(
                                           printed * 1e9)));
      });
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(delays.size(), 4u);  // one chunk per line: nothing was batched
  for (absl::Duration d : delays) EXPECT_LT(d, absl::Milliseconds(100));
}

TEST_F(WalkingPathTest, ConcurrencyLimitIsAClearError) {
  fleet_->StartPeriphery("alpha", {}, {"--max-concurrent", "2"});
  for (int i = 0; i < 2; ++i) {
    RunResult r =
        fleet_->Ctl({"exec", "-n", "alpha", "--async", "--", "sleep", "30"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  varan::v1::Target target;
  target.add_names("alpha");
  // The periphery reports both as running.
  EXPECT_TRUE(WaitFor([&] {
    auto p = fleet_->client()->GetPeriphery("alpha");
    return p.ok() && p->stats().running_executions() == 2;
  }));
  RunResult third = fleet_->Ctl({"exec", "-n", "alpha", "--", "true"});
  EXPECT_EQ(third.exit_code, 1);
  EXPECT_THAT(third.err, HasSubstr("too many commands running (2 allowed)"));
}

TEST_F(WalkingPathTest, FanOutBySelectorAndSummary) {
  fleet_->StartPeriphery("web-1", {"tier=web"});
  fleet_->StartPeriphery("web-2", {"tier=web"});
  fleet_->StartPeriphery("db-1", {"tier=db"});

  RunResult r = fleet_->Ctl({"exec", "-l", "tier=web", "--", "echo", "hello"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("web-1 | hello"));
  EXPECT_THAT(r.out, HasSubstr("web-2 | hello"));
  EXPECT_THAT(r.out, Not(HasSubstr("db-1")));
  EXPECT_THAT(r.err, HasSubstr("2 of 2 succeeded"));

  // One failing target makes the whole run exit 1 and is named. (Each
  // periphery's default working directory is its state directory, which
  // carries its name.)
  RunResult f = fleet_->Ctl({"exec", "-n", "web-1", "-n", "db-1", "--shell",
                             "--", "pwd | grep -q web"});
  EXPECT_EQ(f.exit_code, 1);
  EXPECT_THAT(f.err, HasSubstr("1 of 2 succeeded"));
  EXPECT_THAT(f.err, HasSubstr("db-1: exit 1"));

  RunResult bad = fleet_->Ctl({"exec", "-l", "tier in (web", "--", "true"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("at position"));

  RunResult none = fleet_->Ctl({"exec", "-l", "tier=cache", "--", "true"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("no periphery matches"));

  RunResult unknown = fleet_->Ctl({"exec", "-n", "nope", "--", "true"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("no periphery named nope"));
}

TEST_F(WalkingPathTest, JobsAreRecordedWithOutput) {
  fleet_->StartPeriphery("alpha");
  RunResult async =
      fleet_->Ctl({"exec", "-n", "alpha", "--async", "--", "echo", "kept"});
  ASSERT_EQ(async.exit_code, 0) << async.err;
  std::string id = async.out.substr(0, async.out.find('\n'));
  ASSERT_FALSE(id.empty());
  // Watching a finished job replays its recorded events and ends with it;
  // its output was stored and is read back with `jobs logs`.
  RunResult watch = fleet_->Ctl({"jobs", "watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  RunResult logs = fleet_->Ctl({"jobs", "logs", id});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "kept\n");
  RunResult get = fleet_->Ctl({"jobs", "get", id, "-o", "json"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("\"state\": \"JOB_STATE_SUCCEEDED\""));
  EXPECT_THAT(get.out, HasSubstr("\"created_by\": \"admin\""));
  RunResult list = fleet_->Ctl({"jobs", "list"});
  EXPECT_THAT(list.out, HasSubstr(id));
}

TEST_F(WalkingPathTest, WrongTokenIsRefused) {
  TempDir tmp;
  WriteFile(tmp.File("token"), "not-the-token\n");
  RunResult r =
      RunProgram({BinPath("varanctl"), "--core", fleet_->core_address(),
                  "--ca-hash", fleet_->client_tls().ca_pin, "--token-file",
                  tmp.File("token"), "peripheries", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("operator token"));
  // The token never shows up in core's log.
  std::string token = ReadFile(fleet_->admin_token_file());
  token.pop_back();
  EXPECT_THAT(fleet_->core()->Log(), Not(HasSubstr(token)));
  EXPECT_THAT(fleet_->core()->Log(), HasSubstr("refused a call"));
}

TEST_F(WalkingPathTest, PeripheryRegistersAgainWhenCoreForgetsIt) {
  fleet_->StartPeriphery("alpha");
  // A restarted core (in-memory fleet) does not know alpha; alpha notices
  // at its next heartbeat and registers again.
  ASSERT_EQ(fleet_->StopCore(), 0);
  fleet_->StartCore();
  varan::v1::Target target;
  target.add_names("alpha");
  EXPECT_TRUE(
      WaitFor([&] { return fleet_->client()->ListPeripheries(target).ok(); },
              absl::Seconds(10)));
  RunResult r = fleet_->Ctl({"exec", "-n", "alpha", "--", "echo", "back"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "back\n");
}

TEST_F(WalkingPathTest, SigtermStopsRunningCommandsAndExitsZero) {
  Daemon* alpha = fleet_->StartPeriphery("alpha");
  TempDir tmp;
  std::string marker = tmp.File("pid");
  RunResult async =
      fleet_->Ctl({"exec", "-n", "alpha", "--async", "--shell", "--",
                   absl::StrCat("echo $$ > ", marker, "; exec sleep 600")});
  ASSERT_EQ(async.exit_code, 0) << async.err;
  ASSERT_TRUE(WaitFor([&] { return !ReadFile(marker).empty(); }));
  pid_t pid = std::stoi(ReadFile(marker));
  ASSERT_EQ(kill(pid, 0), 0);
  EXPECT_EQ(alpha->Stop(SIGTERM, absl::Seconds(10)), 0) << alpha->Log();
  // The command was stopped with its periphery (ESRCH: no such process).
  EXPECT_TRUE(WaitFor([&] { return kill(pid, 0) != 0; }, absl::Seconds(5)));
  EXPECT_EQ(fleet_->StopCore(SIGTERM), 0);
}

}  // namespace
}  // namespace varan::testing
