// Dispatcher (core/jobs/dispatcher.h) and its peripheries' reports: a
// call that broke waits for the periphery's held result, a cancel reaches a
// command whose call broke, and a lost target takes the outcome reported
// later; results are acknowledged only once stored.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/dispatcher_fixture.h"
#include "tests/unit/core/report_until_stored.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using varan::v1::ExitStatus;

TEST_F(DispatcherTest,
       ABrokenCallWaitsForThePeripheryInsteadOfLosingTheTarget) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  FakeCall* call = links_.calls()[0];
  call->Start(7);
  call->Output("a");
  call->End(absl::UnavailableError("connection reset"));
  EXPECT_EQ(States(*job)[0], varan::v1::TARGET_STATE_RUNNING);
  // A report of another periphery changes nothing.
  dispatcher_->OnPeripheryReport(
      "someone-else", Reports({Finished(job->id() + "/p1", 0, "ab")}));
  EXPECT_EQ(States(*job)[0], varan::v1::TARGET_STATE_RUNNING);
  // The tail adds what core missed ("b"), and the exit code.
  EXPECT_THAT(
      ReportUntilStored(*dispatcher_, *store_, p1,
                        Reports({Finished(job->id() + "/p1", 3, "ab")})),
      ElementsAre(job->id() + "/p1"));
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(snap.targets(0).exit_status().code(), 3);
  EXPECT_EQ(StoredStdout(snap.id(), snap.targets(0).name()), "ab");
}

TEST_F(DispatcherTest, ACallBrokenBeforeItsStartWaitsAndTakesTheHeldResult) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  // The link breaks before "started" reached core: the command may run on
  // the periphery all the same, so the target waits.
  links_.calls()[0]->End(absl::UnavailableError("connection reset"));
  EXPECT_EQ(States(*job)[0], varan::v1::TARGET_STATE_DISPATCHED);
  // The periphery reports it running: it is.
  varan::v1::ExecutionReport running;
  running.set_execution_id(job->id() + "/p1");
  running.mutable_started()->set_pid(9);
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, Reports({running})),
              ::testing::IsEmpty());
  EXPECT_EQ(States(*job)[0], varan::v1::TARGET_STATE_RUNNING);
  // Then finished: its result and output are applied.
  EXPECT_THAT(
      ReportUntilStored(*dispatcher_, *store_, p1,
                        Reports({Finished(job->id() + "/p1", 4, "held\n")})),
      ElementsAre(job->id() + "/p1"));
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(snap.targets(0).exit_status().code(), 4);
  EXPECT_EQ(StoredStdout(snap.id(), snap.targets(0).name()), "held\n");
}

TEST_F(DispatcherTest, ACallBrokenBeforeItsStartFailsWhenThePeripheryLacksIt) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  links_.calls()[0]->End(absl::UnavailableError("connection reset"));
  dispatcher_->OnPeripheryReport(p1, Reports({}));
  EXPECT_EQ(States(*job)[0], varan::v1::TARGET_STATE_DISPATCHED);
  dispatcher_->OnPeripheryReport(p1, Reports({}));
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(0).error(),
              HasSubstr("broke before the command was reported started"));
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("connection reset"));
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("never started there"));
}

TEST_F(DispatcherTest, ACallThatNeverReachedThePeripheryFailsAtOnce) {
  Add("p1");
  auto job = MustDispatch(Request(""));
  links_.calls()[0]->End(NotDelivered(
      absl::UnavailableError("failed to connect to all addresses")));
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("failed to connect"));
}

// A running report of `execution_id`.
varan::v1::ExecutionReport Running(const std::string& execution_id) {
  varan::v1::ExecutionReport r;
  r.set_execution_id(execution_id);
  r.mutable_started()->set_pid(42);
  return r;
}

TEST_F(DispatcherTest, ACancelThatFoundTheCallBrokenReachesThePeriphery) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  const std::string exec = job->id() + "/p1";
  links_.calls()[0]->Start(7);
  links_.calls()[0]->End(absl::UnavailableError("link down"));
  ASSERT_TRUE(dispatcher_->Cancel(job->id(), "ops").ok());
  // The periphery reports the command running: the answer asks it to stop.
  std::vector<std::string> cancel;
  dispatcher_->OnPeripheryReport(p1, Reports({Running(exec)}), &cancel);
  EXPECT_THAT(cancel, ElementsAre(exec));
  // It reports how the command ended: canceled.
  varan::v1::ExecutionReport ended = Running(exec);
  ended.mutable_exited()->set_kind(ExitStatus::KIND_CANCELED);
  cancel.clear();
  EXPECT_THAT(
      ReportUntilStored(*dispatcher_, *store_, p1, Reports({ended}), &cancel),
      ElementsAre(exec));
  EXPECT_TRUE(cancel.empty());
  EXPECT_EQ(States(*job)[0], varan::v1::TARGET_STATE_CANCELED);
}

TEST_F(DispatcherTest,
       ACanceledJobsLostTargetIsStoppedWhenItsPeripheryReturns) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  const std::string exec = job->id() + "/p1";
  links_.calls()[0]->Start(7);
  links_.calls()[0]->End(absl::UnavailableError("link down"));
  ASSERT_TRUE(dispatcher_->Cancel(job->id(), "ops").ok());
  // The periphery stays away past its TTL: the target is lost.
  clock_.Advance(kInterval * 4);
  fleet_->Tick();
  ASSERT_EQ(States(*job)[0], varan::v1::TARGET_STATE_LOST);
  ASSERT_TRUE(store_->Sync().ok());
  // Back, it reports the command still running: it is told to stop it.
  std::vector<std::string> cancel;
  dispatcher_->OnPeripheryReport(p1, Reports({Running(exec)}), &cancel);
  EXPECT_THAT(cancel, ElementsAre(exec));
}

TEST_F(DispatcherTest, ALostTargetOfAJobNotCanceledRunsOn) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  links_.calls()[0]->Start(7);
  links_.calls()[0]->End(absl::UnavailableError("link down"));
  clock_.Advance(kInterval * 4);
  fleet_->Tick();
  ASSERT_EQ(States(*job)[0], varan::v1::TARGET_STATE_LOST);
  std::vector<std::string> cancel;
  dispatcher_->OnPeripheryReport(p1, Reports({Running(job->id() + "/p1")}),
                                 &cancel);
  EXPECT_TRUE(cancel.empty());
}

TEST_F(DispatcherTest, ALostTargetTakesTheOutcomeReportedLater) {
  const std::string p1 = Add("p1");
  auto job = MustDispatch(Request(""));
  FakeCall* call = links_.calls()[0];
  call->Start(7);
  call->End(absl::UnavailableError("link down"));
  // The periphery stays away past its TTL: the target is lost.
  clock_.Advance(kInterval * 4);
  fleet_->Tick();
  ASSERT_TRUE(store_->Sync().ok());
  auto snap = job->Snapshot();
  ASSERT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_LOST);
  ASSERT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);
  // It comes back and reports the command's outcome: recorded, and the job
  // summary follows (read back from the store like any finished job).
  EXPECT_THAT(
      ReportUntilStored(*dispatcher_, *store_, p1,
                        Reports({Finished(job->id() + "/p1", 0, "late\n")})),
      ElementsAre(job->id() + "/p1"));
  ASSERT_TRUE(store_->Sync().ok());
  auto found = dispatcher_->Find(job->id());
  ASSERT_TRUE(found.ok());
  snap = (*found)->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(StoredStdout(snap.id(), snap.targets(0).name()), "late\n");
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_SUCCEEDED);
  auto listed = dispatcher_->List(varan::v1::ListJobsRequest());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->jobs(0).state(), varan::v1::JOB_STATE_SUCCEEDED);
}

// A lost target's outcome reported without the output tails (the command's
// end, with the output written last, went to a core replica that could not
// store it, then stepped down): the tails are asked for first, as long as
// a periphery takes to hear the ask; without them, after kAskForTails, the
// outcome is recorded as it is.
class LateTailsTest : public DispatcherTest {
 protected:
  void ReportLate(bool answered) {
    const std::string p1 = Add("p1");
    auto job = MustDispatch(Request(""));
    FakeCall* call = links_.calls().back();
    call->Start(7);
    call->Output("start\n");
    call->End(absl::UnavailableError("link down"));
    clock_.Advance(kInterval * 4);
    fleet_->Tick();
    ASSERT_TRUE(store_->Sync().ok());
    ASSERT_EQ(job->Snapshot().targets(0).state(), varan::v1::TARGET_STATE_LOST);
    const std::string exec = job->id() + "/p1";
    auto no_tails = Reports({Finished(exec, 0, "")});
    no_tails.Mutable(0)->clear_stdout_tail();
    for (int i = 0; i < 3; ++i) {
      std::vector<std::string> resend;
      EXPECT_THAT(
          dispatcher_->OnPeripheryReport(p1, no_tails, nullptr, true, &resend),
          IsEmpty());
      EXPECT_THAT(resend, ElementsAre(exec));
      EXPECT_EQ(job->Snapshot().targets(0).state(),
                varan::v1::TARGET_STATE_LOST);
      clock_.Advance(absl::Seconds(1));
    }
    if (!answered) clock_.Advance(Dispatcher::kAskForTails);
    std::vector<std::string> resend;
    dispatcher_->OnPeripheryReport(
        p1, answered ? Reports({Finished(exec, 0, "start\nend\n")}) : no_tails,
        nullptr, true, &resend);
    EXPECT_THAT(resend, IsEmpty());
    ASSERT_TRUE(store_->Sync().ok());
    // The amended job, read back from the store.
    auto found = dispatcher_->Find(job->id());
    ASSERT_TRUE(found.ok()) << found.status();
    const varan::v1::Job snap = (*found)->Snapshot();
    EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
    EXPECT_EQ(StoredStdout(snap.id(), snap.targets(0).name()),
              answered ? "start\nend\n" : "start\n");
  }
};

TEST_F(LateTailsTest, ALostTargetsLateOutcomeComesWithItsTails) {
  ReportLate(/*answered=*/true);
}

TEST_F(LateTailsTest, APeripheryThatNeverSendsThemIsRecordedAsItIs) {
  ReportLate(/*answered=*/false);
}

}  // namespace
}  // namespace varan::core
