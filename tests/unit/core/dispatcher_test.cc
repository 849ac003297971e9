// Tests for core/jobs/dispatcher.h with fake links and a fake clock: limits
// (max_parallel, stop_after_failures), offline targets, cancel, peripheries
// going away, and jobs surviving a restart through the SQLite store (the
// fixture: dispatcher_fixture.h; broken calls and held results:
// dispatcher_reports_test.cc).
#include "core/jobs/dispatcher.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/dispatcher_fixture.h"
#include "tests/unit/temp_dir.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using varan::v1::ExitStatus;
using varan::v1::TargetState;

TEST_F(DispatcherTest, OnlyMatchedPeripheriesReceiveTheJob) {
  Add("web-1", {{"role", "web"}});
  Add("web-2", {{"role", "web"}});
  Add("db-1", {{"role", "db"}});
  auto job = MustDispatch(Request("role=web"));
  EXPECT_THAT(links_.names(), ElementsAre("web-1", "web-2"));
  for (FakeCall* c : links_.calls()) c->Exit(ExitStatus::KIND_EXITED, 0);
  EXPECT_TRUE(job->finished());
  EXPECT_EQ(job->Snapshot().state(), varan::v1::JOB_STATE_SUCCEEDED);
}

TEST_F(DispatcherTest, NoMatchIsAnErrorUnlessAllowed) {
  Add("web-1", {{"role", "web"}});
  auto job = dispatcher_->Dispatch(Request("role=db"), "tester");
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kFailedPrecondition);
  auto req = Request("role=db");
  req.mutable_options()->set_allow_no_targets(true);
  auto allowed = MustDispatch(req);
  EXPECT_TRUE(allowed->finished());
  EXPECT_EQ(allowed->Snapshot().state(), varan::v1::JOB_STATE_SUCCEEDED);
}

TEST_F(DispatcherTest, MaxParallelLimitsRunningTargetsInNameOrder) {
  for (const char* n : {"p1", "p2", "p3", "p4", "p5"}) Add(n);
  auto req = Request("");
  req.mutable_options()->set_max_parallel(2);
  auto job = MustDispatch(req);
  EXPECT_THAT(links_.names(), ElementsAre("p1", "p2"));
  EXPECT_THAT(States(*job), ElementsAre(varan::v1::TARGET_STATE_DISPATCHED,
                                        varan::v1::TARGET_STATE_DISPATCHED,
                                        varan::v1::TARGET_STATE_QUEUED,
                                        varan::v1::TARGET_STATE_QUEUED,
                                        varan::v1::TARGET_STATE_QUEUED));
  links_.calls()[1]->Exit(ExitStatus::KIND_EXITED, 0);
  EXPECT_THAT(links_.names(), ElementsAre("p1", "p2", "p3"));
  links_.calls()[0]->Exit(ExitStatus::KIND_EXITED, 0);
  links_.calls()[2]->Exit(ExitStatus::KIND_EXITED, 0);
  EXPECT_THAT(links_.names(), ElementsAre("p1", "p2", "p3", "p4", "p5"));
  links_.calls()[3]->Exit(ExitStatus::KIND_EXITED, 0);
  links_.calls()[4]->Exit(ExitStatus::KIND_EXITED, 0);
  EXPECT_EQ(job->Snapshot().state(), varan::v1::JOB_STATE_SUCCEEDED);
}

TEST_F(DispatcherTest, StopAfterFailuresSkipsTargetsNotStarted) {
  for (const char* n : {"p1", "p2", "p3", "p4"}) Add(n);
  auto req = Request("");
  req.mutable_options()->set_max_parallel(2);
  req.mutable_options()->set_stop_after_failures(1);
  auto job = MustDispatch(req);
  links_.calls()[0]->Exit(ExitStatus::KIND_EXITED, 3);
  // p2 keeps running; p3 and p4 are never sent.
  EXPECT_THAT(links_.names(), ElementsAre("p1", "p2"));
  links_.calls()[1]->Exit(ExitStatus::KIND_EXITED, 0);
  auto snap = job->Snapshot();
  ASSERT_TRUE(job->finished());
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);
  EXPECT_EQ(snap.targets(1).state(), varan::v1::TARGET_STATE_EXITED);
  for (int i : {2, 3}) {
    EXPECT_EQ(snap.targets(i).state(), varan::v1::TARGET_STATE_SKIPPED);
    EXPECT_THAT(snap.targets(i).error(),
                HasSubstr("1 target(s) failed and stop_after_failures is 1"));
  }
}

TEST_F(DispatcherTest, OfflineTargetsFailByDefaultAndCanBeSkipped) {
  Add("up");
  Add("down");
  clock_.Advance(kInterval * 2);
  // Keep "up" alive past the TTL; "down" stays silent.
  ASSERT_TRUE(fleet_->Get("up").ok());
  auto up = fleet_->Resolve(varan::v1::Target());
  ASSERT_TRUE(up.ok());
  for (const auto& t : *up) {
    if (t.name == "up") {
      ASSERT_TRUE(fleet_->Heartbeat(t.id, t.credential, {}, "::1").ok());
    }
  }
  clock_.Advance(kInterval * 2);

  auto failing = MustDispatch(Request(""));
  EXPECT_THAT(links_.names(), ElementsAre("up"));
  links_.calls()[0]->Exit(ExitStatus::KIND_EXITED, 0);
  auto snap = failing->Snapshot();
  EXPECT_EQ(snap.targets(0).name(), "down");
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("periphery down is offline"));
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);

  auto req = Request("");
  req.mutable_options()->set_skip_offline(true);
  auto skipping = MustDispatch(req);
  links_.calls()[1]->Exit(ExitStatus::KIND_EXITED, 0);
  snap = skipping->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_SKIPPED);
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_SUCCEEDED);
}

TEST_F(DispatcherTest, CancelStopsQueuedAndAsksRunningToStop) {
  for (const char* n : {"p1", "p2", "p3"}) Add(n);
  auto req = Request("");
  req.mutable_options()->set_max_parallel(1);
  auto job = MustDispatch(req);
  links_.calls()[0]->Start(42);
  auto canceled = dispatcher_->Cancel(job->id(), "alice");
  ASSERT_TRUE(canceled.ok()) << canceled.status();
  EXPECT_EQ(canceled->canceled_by(), "alice");
  EXPECT_TRUE(links_.calls()[0]->canceled);
  EXPECT_EQ(links_.calls().size(), 1u);  // nothing more is sent
  for (int i : {1, 2}) {
    EXPECT_EQ(canceled->targets(i).state(), varan::v1::TARGET_STATE_CANCELED);
    EXPECT_THAT(canceled->targets(i).error(), HasSubstr("before it started"));
  }
  // The periphery confirms the kill.
  links_.calls()[0]->Exit(ExitStatus::KIND_CANCELED);
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_CANCELED);
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_CANCELED);
  // A second cancel changes nothing.
  auto again = dispatcher_->Cancel(job->id(), "bob");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->canceled_by(), "alice");
  EXPECT_EQ(dispatcher_->Cancel("nope", "bob").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(DispatcherTest, PeripheryGoingOfflineMidJobLosesItsTargets) {
  Add("steady");
  const std::string flaky = Add("flaky");
  auto job = MustDispatch(Request(""));
  for (FakeCall* c : links_.calls()) c->Start(7);
  // Only "steady" keeps heartbeating.
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(kInterval);
    auto all = fleet_->Resolve(varan::v1::Target());
    for (const auto& t : *all) {
      if (t.name == "steady") {
        ASSERT_TRUE(fleet_->Heartbeat(t.id, t.credential, {}, "::1").ok());
      }
    }
    fleet_->Tick();
  }
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).name(), "flaky");
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_LOST);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("went offline"));
  EXPECT_EQ(snap.targets(1).state(), varan::v1::TARGET_STATE_RUNNING);
  FakeCall* flaky_call = links_.calls()[0]->periphery_id == flaky
                             ? links_.calls()[0]
                             : links_.calls()[1];
  EXPECT_TRUE(flaky_call->aborted);
}

TEST_F(DispatcherTest, RemovedPeripheryLosesItsTargets) {
  Add("gone");
  auto job = MustDispatch(Request(""));
  links_.calls()[0]->Start(7);
  ASSERT_TRUE(fleet_->Remove("gone").ok());
  auto snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_LOST);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("was removed"));
  EXPECT_TRUE(links_.calls()[0]->aborted);
}

TEST_F(DispatcherTest, FinishedJobsAreReadBackFromTheStoreAfterARestart) {
  Add("p1");
  auto job = MustDispatch(Request(""));
  links_.calls()[0]->Start(9);
  links_.calls()[0]->Output("hello\n");
  links_.calls()[0]->Exit(ExitStatus::KIND_EXITED, 0);
  const std::string id = job->id();
  const auto before = job->Snapshot();
  job.reset();
  Close();
  Open();
  auto found = dispatcher_->Find(id);
  ASSERT_TRUE(found.ok()) << found.status();
  auto after = (*found)->Snapshot();
  EXPECT_EQ(after.DebugString(), before.DebugString());
  // And the event log replays from any sequence.
  varan::v1::JobEvent ev;
  ASSERT_EQ((*found)->EventAt(0, &ev), Job::Read::kEvent);
  EXPECT_TRUE(ev.has_accepted());
}

TEST_F(DispatcherTest, JobsRunningAtACrashWaitForTheirPeripheriesToReport) {
  const std::string p1 = Add("p1");
  const std::string p2 = Add("p2");
  const std::string p3 = Add("p3");
  const std::string p4 = Add("p4");
  auto req = Request("");
  req.mutable_options()->set_max_parallel(2);
  auto job = MustDispatch(req);
  EXPECT_TRUE(links_.calls()[0]->request.hold_result());
  // p1 running, p2 dispatched, p3 and p4 queued.
  links_.calls()[0]->Start(1);
  links_.calls()[0]->Output("first\n");
  const std::string id = job->id();
  ASSERT_TRUE(store_->Sync().ok());
  // A crash: what was committed is all there is. Copy the database as it
  // is now (WAL included) and start a new core on the copy.
  varan::testing::UnitTempDir crashed;
  for (const char* f : {"/core.db", "/core.db-wal"}) {
    std::filesystem::copy_file(dir_.path() + f, crashed.path() + f);
  }
  job.reset();
  Close();

  Open(crashed.path());
  auto recovered = dispatcher_->Recover();
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(*recovered, 1u);
  auto found = dispatcher_->Find(id);
  ASSERT_TRUE(found.ok()) << found.status();
  std::shared_ptr<Job> restored = *found;
  // Queued targets wait too: one may have been sent with its record not
  // committed yet.
  EXPECT_THAT(States(*restored), ElementsAre(varan::v1::TARGET_STATE_RUNNING,
                                             varan::v1::TARGET_STATE_DISPATCHED,
                                             varan::v1::TARGET_STATE_QUEUED,
                                             varan::v1::TARGET_STATE_QUEUED));

  // p1 reports the command still running, then finished (its tail holds
  // the first line core had, and the one it missed).
  varan::v1::ExecutionReport still;
  still.set_execution_id(id + "/p1");
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, Reports({still})),
              ::testing::IsEmpty());
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, Reports({still})),
              ::testing::IsEmpty());
  EXPECT_EQ(States(*restored)[0], varan::v1::TARGET_STATE_RUNNING);
  const auto p1_done = Reports({Finished(id + "/p1", 0, "first\nsecond\n")});
  // Not acknowledged before the job's record is stored (below).
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, p1_done), IsEmpty());
  auto snap = restored->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(StoredStdout(snap.id(), snap.targets(0).name()), "first\nsecond\n");

  // p2 does not hold its execution: after two reports without it, the
  // target (which never started) fails with the reason.
  dispatcher_->OnPeripheryReport(p2, Reports({}));
  EXPECT_EQ(States(*restored)[1], varan::v1::TARGET_STATE_DISPATCHED);
  dispatcher_->OnPeripheryReport(p2, Reports({}));
  snap = restored->Snapshot();
  EXPECT_EQ(snap.targets(1).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(1).error(), HasSubstr("never started there"));
  EXPECT_THAT(snap.targets(1).error(), HasSubstr("core restarted"));

  // p3 had been sent its command after all: its real outcome counts.
  EXPECT_THAT(dispatcher_->OnPeripheryReport(
                  p3, Reports({Finished(id + "/p3", 0, "ran\n")})),
              IsEmpty());
  snap = restored->Snapshot();
  EXPECT_EQ(snap.targets(2).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(StoredStdout(snap.id(), snap.targets(2).name()), "ran\n");
  // p4 never got it: two reports without it, and it failed unsent.
  dispatcher_->OnPeripheryReport(p4, Reports({}));
  dispatcher_->OnPeripheryReport(p4, Reports({}));
  snap = restored->Snapshot();
  EXPECT_EQ(snap.targets(3).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(3).error(), HasSubstr("never started there"));
  EXPECT_THAT(snap.targets(3).error(),
              HasSubstr("before this target was recorded as sent"));
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);
  EXPECT_TRUE(restored->finished());
  // p1's result (applied above) is acknowledged once the job's final record
  // is stored — maybe already: the store commits it on its own thread.
  std::vector<std::string> acks;
  for (int i = 0; i < 200 && acks.empty(); ++i) {
    ASSERT_TRUE(store_->Sync().ok());
    acks = dispatcher_->OnPeripheryReport(p1, p1_done);
    if (acks.empty()) absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(acks, ElementsAre(id + "/p1"));
}

TEST_F(DispatcherTest, ListJobsFiltersPagesAndShowsLiveState) {
  Add("a");
  Add("b");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    varan::v1::DispatchRequest req = Request("");
    req.mutable_target()->add_names(i % 2 == 0 ? "a" : "b");
    ids.push_back(MustDispatch(req)->id());
    clock_.Advance(absl::Milliseconds(5));
  }
  // Finish the jobs on "a" (0, 2, 4) with failures; leave "b"'s running.
  for (FakeCall* c : links_.calls()) {
    if (c->request.execution_id().ends_with("/a")) {
      c->Exit(ExitStatus::KIND_EXITED, 1);
    }
  }
  ASSERT_TRUE(store_->Sync().ok());

  varan::v1::ListJobsRequest req;
  req.set_limit(2);
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    auto resp = dispatcher_->List(req);
    ASSERT_TRUE(resp.ok()) << resp.status();
    for (const auto& j : resp->jobs()) seen.push_back(j.id());
    if (resp->next_page_token().empty()) break;
    req.set_page_token(resp->next_page_token());
  }
  EXPECT_THAT(seen, ElementsAre(ids[4], ids[3], ids[2], ids[1], ids[0]));

  varan::v1::ListJobsRequest failed;
  failed.add_states(varan::v1::JOB_STATE_FAILED);
  auto f = dispatcher_->List(failed);
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->jobs_size(), 3);
  EXPECT_EQ(f->jobs(0).id(), ids[4]);

  varan::v1::ListJobsRequest on_b;
  on_b.set_periphery("b");
  auto b = dispatcher_->List(on_b);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->jobs_size(), 2);
  EXPECT_EQ(b->jobs(0).state(), varan::v1::JOB_STATE_RUNNING);

  varan::v1::ListJobsRequest bad;
  bad.set_page_token("not a token!");
  EXPECT_EQ(dispatcher_->List(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace varan::core
