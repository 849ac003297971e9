// Jobs through the real binaries (issue #4): fan-out by label, max_parallel,
// stop_after_failures, cancel reaching running processes, a watch resumed
// mid-job, a periphery killed mid-job, and core killed with kill -9 mid-job
// and restarted.
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/grpc_util.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using varan::v1::JobEvent;

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }
  // Core with `extra` flags (after TearDown of the default one, if any).
  void Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--heartbeat-interval", "0.3",
                                     "--restart-grace", "5"};
    args.insert(args.end(), extra.begin(), extra.end());
    fleet_ = std::make_unique<TestFleet>(std::move(args));
    fleet_->StartCore();
  }

  // A raw Jobs stub (for what the client library does not expose, such as
  // dropping a watch half-way).
  std::unique_ptr<varan::v1::Jobs::Stub> Stub() {
    return varan::v1::Jobs::NewStub(fleet_->Channel());
  }
  std::string Token() {
    return std::string(absl::StripTrailingAsciiWhitespace(
        ReadFile(fleet_->admin_token_file())));
  }

  static varan::v1::DispatchRequest Shell(const std::string& selector,
                                          const std::string& command) {
    varan::v1::DispatchRequest req;
    req.mutable_target()->set_selector(selector);
    req.mutable_spec()->set_shell(command);
    return req;
  }

  std::string MustDispatch(const varan::v1::DispatchRequest& req) {
    auto resp = fleet_->client()->Dispatch(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->job_id() : "";
  }

  varan::v1::Job MustGet(const std::string& id) {
    auto job = fleet_->client()->GetJob(id, kPreview);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : varan::v1::Job();
  }

  // `varanctl exec -n p1 --no-prefix --shell -- command` in the background,
  // its stdout and stderr in CtlLog(), once `first` is there (null when it
  // never is).
  std::unique_ptr<Daemon> StartExec(const std::string& command,
                                    const std::string& first) {
    auto ctl = std::make_unique<Daemon>(
        std::vector<std::string>{
            BinPath("varanctl"), "--core", fleet_->core_address(),
            fleet_->plaintext() ? "--insecure-plaintext" : "--ca-hash",
            fleet_->plaintext() ? "--timeout=10" : fleet_->client_tls().ca_pin,
            "--token-file", fleet_->admin_token_file(), "exec", "-n", "p1",
            "--no-prefix", "--shell", "--", command},
        fleet_->dir().File("varanctl.log"));
    ctl->Start();
    if (!WaitFor([&] { return absl::StrContains(CtlLog(), first); })) {
      ADD_FAILURE() << "no \"" << first << "\" from varanctl: " << CtlLog();
      return nullptr;
    }
    return ctl;
  }
  std::string CtlLog() { return ReadFile(fleet_->dir().File("varanctl.log")); }

  std::unique_ptr<TestFleet> fleet_;
};

TEST_F(JobsTest, FanOutReachesOnlyMatchedPeripheries) {
  fleet_->StartPeriphery("web-1", {"role=web", "env=prod"});
  fleet_->StartPeriphery("web-2", {"role=web", "env=dev"});
  fleet_->StartPeriphery("db-1", {"role=db", "env=prod"});
  std::vector<JobEvent> events;
  absl::Status s = fleet_->client()->Exec(
      Shell("role in (web),env!=staging", "echo from-$PPID"),
      [&](const JobEvent& ev) { events.push_back(ev); });
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_FALSE(events.empty());
  ASSERT_TRUE(events[0].has_accepted());
  EXPECT_THAT(events[0].accepted().targets(), ElementsAre("web-1", "web-2"));
  std::set<std::string> outputs;
  for (const auto& ev : events) {
    if (ev.has_output()) outputs.insert(ev.target());
  }
  EXPECT_THAT(outputs, ElementsAre("web-1", "web-2"));
  ASSERT_TRUE(events.back().has_job_finished());
  EXPECT_EQ(events.back().job_finished().state(),
            varan::v1::JOB_STATE_SUCCEEDED);

  // A malformed selector is refused with its position, and nothing runs.
  auto bad = fleet_->client()->Dispatch(Shell("role in (web", "true"));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("position"));
  // Zero matches is an error unless asked for.
  auto none = fleet_->client()->Dispatch(Shell("role=cache", "true"));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(JobsTest, MaxParallelIsHonoured) {
  for (int i = 1; i <= 4; ++i) fleet_->StartPeriphery(absl::StrCat("p", i));
  auto req = Shell("", "sleep 0.4");
  req.mutable_options()->set_max_parallel(2);
  varan::v1::Job job = fleet_->WaitFinished(MustDispatch(req));
  ASSERT_EQ(job.state(), varan::v1::JOB_STATE_SUCCEEDED);
  // At no start of a target were more than two running (counting it).
  struct Span {
    absl::Time start, finish;
  };
  std::vector<Span> spans;
  for (const auto& t : job.targets()) {
    spans.push_back(
        {FromTimestamp(t.start_time()), FromTimestamp(t.finish_time())});
  }
  size_t peak = 0;
  for (const Span& s : spans) {
    size_t running = 0;
    for (const Span& o : spans) {
      if (o.start <= s.start && s.start < o.finish) ++running;
    }
    peak = std::max(peak, running);
  }
  EXPECT_EQ(peak, 2u);
  // Four targets of 0.4 s two at a time: at least 0.8 s in all.
  EXPECT_GE(FromTimestamp(job.finish_time()) - FromTimestamp(job.create_time()),
            absl::Milliseconds(800));
}

TEST_F(JobsTest, StopAfterFailuresSkipsTheRest) {
  for (int i = 1; i <= 4; ++i) fleet_->StartPeriphery(absl::StrCat("p", i));
  auto req = Shell("", "exit 7");
  req.mutable_options()->set_max_parallel(1);
  req.mutable_options()->set_stop_after_failures(2);
  varan::v1::Job job = fleet_->WaitFinished(MustDispatch(req));
  EXPECT_EQ(job.state(), varan::v1::JOB_STATE_FAILED);
  ASSERT_EQ(job.targets_size(), 4);
  for (int i : {0, 1}) {
    EXPECT_EQ(job.targets(i).state(), varan::v1::TARGET_STATE_EXITED);
    EXPECT_EQ(job.targets(i).exit_status().code(), 7);
  }
  for (int i : {2, 3}) {
    EXPECT_EQ(job.targets(i).state(), varan::v1::TARGET_STATE_SKIPPED);
    EXPECT_THAT(job.targets(i).error(), HasSubstr("stop_after_failures is 2"));
  }
}

// Process ids each target printed on its first output line.
std::vector<pid_t> PrintedPids(const varan::v1::Job& job) {
  std::vector<pid_t> pids;
  for (const auto& t : job.targets()) {
    int pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(t.stdout_info().head()),
                         &pid)) {
      pids.push_back(pid);
    }
  }
  return pids;
}

TEST_F(JobsTest, CancelKillsRunningProcesses) {
  fleet_->StartPeriphery("p1");
  fleet_->StartPeriphery("p2");
  const std::string id = MustDispatch(Shell("", "echo $$; exec sleep 60"));
  std::vector<pid_t> pids;
  ASSERT_TRUE(WaitFor([&] {
    pids = PrintedPids(MustGet(id));
    return pids.size() == 2;
  }));
  for (pid_t pid : pids) ASSERT_EQ(kill(pid, 0), 0) << pid;

  auto canceled = fleet_->client()->CancelJob(id);
  ASSERT_TRUE(canceled.ok()) << canceled.status();
  varan::v1::Job job = fleet_->WaitFinished(id, absl::Seconds(10));
  EXPECT_EQ(job.state(), varan::v1::JOB_STATE_CANCELED);
  EXPECT_FALSE(job.canceled_by().empty());
  for (const auto& t : job.targets()) {
    EXPECT_EQ(t.state(), varan::v1::TARGET_STATE_CANCELED) << t.name();
    // The periphery confirmed it: the exit status says how it ended.
    EXPECT_EQ(t.exit_status().kind(), varan::v1::ExitStatus::KIND_CANCELED)
        << t.DebugString();
  }
  for (pid_t pid : pids) {
    EXPECT_TRUE(WaitFor([&] { return kill(pid, 0) != 0 && errno == ESRCH; }))
        << "process " << pid << " still exists";
  }
}

TEST_F(JobsTest, WatchResumedMidJobMissesNothing) {
  fleet_->StartPeriphery("p1");
  const std::string id = MustDispatch(
      Shell("", "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.1; done"));
  auto stub = Stub();
  std::vector<JobEvent> seen;
  {
    // Read a few events, then drop the stream like a client that lost its
    // connection.
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", BearerHeader(Token()));
    varan::v1::WatchJobRequest req;
    req.set_job_id(id);
    auto reader = stub->WatchJob(&ctx, req);
    JobEvent ev;
    while (seen.size() < 4 && reader->Read(&ev)) seen.push_back(ev);
    ctx.TryCancel();
    while (reader->Read(&ev)) {
    }
    reader->Finish();
  }
  ASSERT_EQ(seen.size(), 4u);
  absl::Status s = fleet_->client()->WatchJob(
      id, seen.back().sequence() + 1,
      [&](const JobEvent& ev) { seen.push_back(ev); });
  ASSERT_TRUE(s.ok()) << s;
  std::string out;
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].sequence(), i);
    if (seen[i].has_output()) out += seen[i].output().data();
  }
  EXPECT_EQ(out, "line1\nline2\nline3\nline4\nline5\nline6\n");
  ASSERT_TRUE(seen.back().has_job_finished());
}

TEST_F(JobsTest, PeripheryKilledMidJobLosesItsTarget) {
  Daemon* victim = fleet_->StartPeriphery("victim");
  fleet_->StartPeriphery("steady");
  const std::string id = MustDispatch(Shell("", "echo $$; exec sleep 30"));
  ASSERT_TRUE(WaitFor([&] { return PrintedPids(MustGet(id)).size() == 2; }));
  victim->Stop(SIGKILL);
  varan::v1::Job job;
  ASSERT_TRUE(WaitFor([&] {
    job = MustGet(id);
    return job.targets(1).state() == varan::v1::TARGET_STATE_LOST;
  })) << job.DebugString();
  EXPECT_EQ(job.targets(1).name(), "victim");
  EXPECT_FALSE(job.targets(1).error().empty());
  EXPECT_EQ(job.targets(0).state(), varan::v1::TARGET_STATE_RUNNING);
  // And the periphery is offline once its TTL passes.
  EXPECT_TRUE(WaitFor([&] {
    auto p = fleet_->client()->GetPeriphery("victim");
    return p.ok() && p->state() == varan::v1::PERIPHERY_STATE_OFFLINE;
  }));
  ASSERT_TRUE(fleet_->client()->CancelJob(id).ok());
  EXPECT_EQ(fleet_->WaitFinished(id).state(), varan::v1::JOB_STATE_CANCELED);
}

TEST_F(JobsTest, CoreKilledMidJobRestartsWithEveryJobFinal) {
  fleet_->StartPeriphery("p1", {"env=test"});
  fleet_->StartPeriphery("p2", {"env=test"});
  // A finished job with output, and one still running at the crash.
  const std::string done = MustDispatch(Shell("", "echo kept"));
  ASSERT_EQ(fleet_->WaitFinished(done).state(), varan::v1::JOB_STATE_SUCCEEDED);
  const std::string running =
      MustDispatch(Shell("", "echo $$; sleep 2; echo after"));
  std::vector<pid_t> pids;
  ASSERT_TRUE(WaitFor([&] {
    pids = PrintedPids(MustGet(running));
    return pids.size() == 2;
  }));
  auto before = fleet_->client()->ListPeripheries({});
  ASSERT_TRUE(before.ok());

  ASSERT_EQ(fleet_->StopCore(SIGKILL), 128 + SIGKILL);
  fleet_->StartCore();

  // The running job ends with the results the peripheries held: the
  // commands went on while core was down and were reported afterwards.
  varan::v1::Job job = fleet_->WaitFinished(running);
  EXPECT_EQ(job.state(), varan::v1::JOB_STATE_SUCCEEDED) << job.DebugString();
  for (const auto& t : job.targets()) {
    EXPECT_EQ(t.state(), varan::v1::TARGET_STATE_EXITED) << t.name();
    EXPECT_THAT(t.stdout_info().head(), ::testing::EndsWith("\nafter\n"))
        << t.name();
  }
  // The finished one is intact, output included.
  varan::v1::Job kept = MustGet(done);
  EXPECT_EQ(kept.state(), varan::v1::JOB_STATE_SUCCEEDED);
  for (const auto& t : kept.targets())
    EXPECT_EQ(t.stdout_info().head(), "kept\n");
  // The fleet is there at once (grace period), same ids, and keeps
  // heartbeating without registering again.
  auto after = fleet_->client()->ListPeripheries({});
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), before->size());
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_EQ((*after)[i].id(), (*before)[i].id());
    EXPECT_EQ((*after)[i].state(), varan::v1::PERIPHERY_STATE_ONLINE);
  }
  // The commands ran to their end; nothing is left behind.
  for (pid_t pid : pids) {
    EXPECT_TRUE(WaitFor([&] { return kill(pid, 0) != 0 && errno == ESRCH; }))
        << "process " << pid << " still exists";
  }
  // New work runs on the restarted core.
  std::vector<JobEvent> events;
  ASSERT_TRUE(fleet_->client()
                  ->Exec(Shell("env=test", "true"),
                         [&](const JobEvent& ev) { events.push_back(ev); })
                  .ok());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().job_finished().state(),
            varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_THAT(fleet_->core()->Log(),
              ::testing::Not(HasSubstr("registered from")));
}

TEST_F(JobsTest, VaranctlDrivesRolloutsCancelLabelsAndHistory) {
  fleet_->StartPeriphery("p1", {"role=web"});
  fleet_->StartPeriphery("p2", {"role=web"});
  Daemon* p3 = fleet_->StartPeriphery("p3", {"role=db"});

  // Labels set by the operator take part in selection.
  RunResult label =
      fleet_->Ctl({"peripheries", "label", "p3", "role=web", "canary="});
  ASSERT_EQ(label.exit_code, 0) << label.err;
  RunResult rollout =
      fleet_->Ctl({"exec", "-l", "role=web", "--parallel", "1",
                   "--stop-after-failures", "1", "--", "sh", "-c", "exit 4"});
  EXPECT_EQ(rollout.exit_code, 1) << rollout.err;
  EXPECT_THAT(rollout.err, HasSubstr("2 skipped"));
  EXPECT_THAT(rollout.err, HasSubstr("stop_after_failures is 1"));

  RunResult async =
      fleet_->Ctl({"exec", "-n", "p1", "--async", "--", "sleep", "30"});
  ASSERT_EQ(async.exit_code, 0) << async.err;
  const std::string id(absl::StripAsciiWhitespace(async.out));
  ASSERT_TRUE(WaitFor([&] {
    return MustGet(id).targets(0).state() == varan::v1::TARGET_STATE_RUNNING;
  }));
  RunResult cancel = fleet_->Ctl({"jobs", "cancel", id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(fleet_->WaitFinished(id).state(), varan::v1::JOB_STATE_CANCELED);

  RunResult canceled =
      fleet_->Ctl({"jobs", "list", "--state", "canceled", "-o", "json"});
  ASSERT_EQ(canceled.exit_code, 0) << canceled.err;
  EXPECT_THAT(canceled.out, HasSubstr(id));
  EXPECT_THAT(canceled.out, ::testing::Not(HasSubstr("JOB_STATE_FAILED")));
  RunResult failed = fleet_->Ctl({"jobs", "list", "--state", "failed"});
  ASSERT_EQ(failed.exit_code, 0) << failed.err;
  EXPECT_THAT(failed.out, ::testing::Not(HasSubstr(id)));
  EXPECT_THAT(failed.out, HasSubstr("failed"));

  RunResult bad = fleet_->Ctl({"jobs", "list", "--state", "bogus"});
  EXPECT_EQ(bad.exit_code, 2);

  // A decommissioned server: its periphery stopped, then removed (a running
  // one would register again with its join token).
  p3->Stop();
  RunResult removed = fleet_->Ctl({"peripheries", "remove", "p3"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  RunResult list = fleet_->Ctl({"peripheries", "list"});
  EXPECT_THAT(list.out, ::testing::Not(HasSubstr("p3")));
  RunResult all = fleet_->Ctl({"peripheries", "list", "--include-removed"});
  EXPECT_THAT(all.out, HasSubstr("removed"));
}

TEST(CoreDataDirTest, CorruptDatabaseIsAClearStartUpErrorAndIsKept) {
  TempDir dir;
  ASSERT_EQ(mkdir(dir.File("core").c_str(), 0700), 0);
  const std::string garbage(8192, 'x');
  WriteFile(dir.File("core/core.db"), garbage);
  RunResult r = RunProgram({BinPath("varan-core"), "--listen", "[::1]:0",
                            "--data-dir", dir.File("core")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(dir.File("core/core.db")));
  EXPECT_THAT(r.err, HasSubstr("not a valid database"));
  EXPECT_EQ(ReadFile(dir.File("core/core.db")), garbage);  // never reset
}

TEST_F(JobsTest, ExecFollowsItsJobAcrossACoreRestart) {
  fleet_->StartPeriphery("p1");
  std::unique_ptr<Daemon> ctl =
      StartExec("echo started; sleep 2; echo finished", "started");
  ASSERT_NE(ctl, nullptr);
  ASSERT_EQ(fleet_->StopCore(SIGKILL), 128 + SIGKILL);
  fleet_->StartCore();
  // varanctl follows the job on the restarted core to its end, which the
  // periphery reported after the restart: output and exit code intact.
  const int code = ctl->Wait(absl::Seconds(30));
  const std::string log = CtlLog();
  EXPECT_EQ(code, 0) << log;
  EXPECT_THAT(log, HasSubstr("following job"));
  EXPECT_THAT(log, HasSubstr("finished"));
}

// How many times `what` occurs in `text`.
size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// Output the command writes while core is down reaches core only in the
// periphery's report after the restart, which starts before what varanctl
// showed: varanctl shows every line once, in order, whatever the timing.
//
// Over TLS, as core serves by default. varanctl used to take about 19 s
// (sometimes over 30) to reconnect here: between its attempts no thread
// waited on the channel, so each step of the TCP and TLS handshakes waited
// for gRPC's 5-second backup poll, and core's handshake timeout closed the
// connection. It now waits on the channel while it retries
// (CoreClient::AwaitConnection): 1 to 4 s, so 15 s is a wide margin.
TEST_F(JobsTest, ExecShowsOutputWrittenWhileCoreWasDownOnce) {
  Start({});
  fleet_->StartPeriphery("p1");
  std::unique_ptr<Daemon> ctl = StartExec(
      "echo line-one; sleep 1; echo line-two; sleep 2; echo line-three",
      "line-one");
  ASSERT_NE(ctl, nullptr);
  ASSERT_EQ(fleet_->StopCore(SIGKILL), 128 + SIGKILL);
  absl::SleepFor(absl::Seconds(2));  // line-two is written meanwhile
  fleet_->StartCore();
  const int code = ctl->Wait(absl::Seconds(15));
  const std::string log = CtlLog();
  EXPECT_EQ(code, 0) << log;
  EXPECT_THAT(log, HasSubstr("following job"));
  for (const char* line : {"line-one\n", "line-two\n", "line-three\n"}) {
    EXPECT_EQ(Count(log, line), 1u) << line << " in:\n" << log;
  }
  EXPECT_LT(log.find("line-one"), log.find("line-two")) << log;
  EXPECT_LT(log.find("line-two"), log.find("line-three")) << log;
}

// A finished job core restored from its store (after a restart) has no
// output events; `jobs watch` still shows its output, from the store.
TEST_F(JobsTest, WatchOfAFinishedJobAfterARestartShowsItsOutput) {
  fleet_->StartPeriphery("p1");
  const std::string id =
      MustDispatch(Shell("", "echo stored-out; echo stored-err >&2"));
  ASSERT_EQ(fleet_->WaitFinished(id).state(), varan::v1::JOB_STATE_SUCCEEDED);
  fleet_->StopCore();
  fleet_->StartCore();
  RunResult watch = fleet_->Ctl({"jobs", "watch", id});
  EXPECT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_EQ(Count(watch.out, "stored-out\n"), 1u) << watch.out;
  EXPECT_EQ(Count(watch.err, "stored-err\n"), 1u) << watch.err;
}

// A core whose database is held up (another connection holds its write
// lock, as a stalled disk would) refuses new jobs once more writes wait
// than --max-pending-writes, with the varan-retry-after-ms hint, and no
// job it accepted is lost: once the database moves again they all finish.
TEST(StoreBacklogTest, AStalledDatabaseRefusesNewJobsWithAHint) {
  TestFleet fleet({"--max-pending-writes", "1"});
  fleet.StartCore();
  fleet.StartPeriphery("p1");
  varan::v1::DispatchRequest req;
  req.mutable_target()->add_names("p1");
  req.mutable_spec()->add_argv("true");

  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open_v2(fleet.dir().File("core/core.db").c_str(), &blocker,
                            SQLITE_OPEN_READWRITE, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  // Two dispatches wait for their commit (or are refused, if other writes
  // were waiting already): either way at least two writes wait after them.
  std::vector<absl::StatusOr<varan::v1::DispatchResponse>> waiting(2);
  std::vector<std::thread> threads;
  for (auto& result : waiting) {
    threads.emplace_back(
        [&fleet, &req, &result] { result = fleet.client()->Dispatch(req); });
    absl::SleepFor(absl::Milliseconds(150));
  }
  auto stub = varan::v1::Jobs::NewStub(fleet.Channel());
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization",
                  BearerHeader(std::string(absl::StripTrailingAsciiWhitespace(
                      ReadFile(fleet.admin_token_file())))));
  varan::v1::DispatchResponse refused;
  const grpc::Status s = stub->Dispatch(&ctx, req, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("core's store is behind"));
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto hint = trailers.find(kRetryAfterMetadata);
  EXPECT_TRUE(hint != trailers.end() &&
              std::string(hint->second.data(), hint->second.size()) == "1000")
      << "no varan-retry-after-ms: 1000 in the trailers";

  EXPECT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(blocker);
  for (auto& t : threads) t.join();
  for (const auto& result : waiting) {
    if (!result.ok()) {
      EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted)
          << result.status();
      continue;
    }
    EXPECT_EQ(fleet.WaitFinished(result->job_id()).state(),
              varan::v1::JOB_STATE_SUCCEEDED);
  }
  // Caught up: new jobs are taken again.
  auto again = fleet.client()->Dispatch(req);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(fleet.WaitFinished(again->job_id()).state(),
            varan::v1::JOB_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace varan::testing
