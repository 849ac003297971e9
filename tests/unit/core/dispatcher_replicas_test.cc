// Tests for the dispatcher among core replicas (core/jobs/dispatcher.h,
// DispatcherOptions::replica_tag / owns_job, AdoptOrphans): two replicas'
// dispatchers on one store and one MemoryCluster, with fake links and a
// fake clock.
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "core/cluster/memory_cluster.h"
#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/jobs/job_owner.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/fake_links.h"
#include "tests/unit/core/report_until_stored.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr absl::Duration kClusterTtl = absl::Seconds(10);

struct Replica {
  std::unique_ptr<MemoryCluster> cluster;
  std::unique_ptr<JobOwners> owners;
  FakeLinks links;
  std::unique_ptr<Dispatcher> dispatcher;
};

class DispatcherReplicasTest : public ::testing::Test {
 protected:
  DispatcherReplicasTest() {
    state_ = std::make_shared<MemoryClusterState>(&clock_);
    fleet_ = std::make_unique<FleetRegistry>(
        &clock_, FleetOptions{absl::Seconds(10), 3}, &store_);
    for (const char* id : {"r-aaaaaaaa00000001", "r-bbbbbbbb00000002"}) {
      auto r = std::make_unique<Replica>();
      ClusterOptions o;
      o.replica_id = id;
      o.address = std::string(id) + ":7700";
      o.ttl = kClusterTtl;
      o.leases = {kJobsLease};
      r->cluster = std::make_unique<MemoryCluster>(state_, o);
      r->owners = std::make_unique<JobOwners>(r->cluster.get());
      DispatcherOptions d;
      d.replica_tag = r->owners->tag();
      d.owns_job = [owners = r->owners.get()](const std::string& job) {
        return owners->OwnsHere(job);
      };
      d.fence_creator = [this, c = r->cluster.get()](const std::string& tag) {
        fenced_.push_back(tag);
        return fence_failure_.ok() ? c->Fence(tag) : fence_failure_;
      };
      r->dispatcher = std::make_unique<Dispatcher>(fleet_.get(), &r->links,
                                                   &store_, &clock_, d);
      replicas_.push_back(std::move(r));
    }
    varan::v1::RegisterRequest req;
    req.set_name("p1");
    req.set_advertise_address("[::1]:7701");
    auto reg = fleet_->Register(req, "::1");
    EXPECT_TRUE(reg.ok()) << reg.status();
    p1_ = reg->id;
    EXPECT_TRUE(fleet_->Heartbeat(reg->id, reg->credential, {}, "::1").ok());
  }
  ~DispatcherReplicasTest() override {
    for (auto& r : replicas_) {
      r->links.EndAll();
      r->dispatcher.reset();
    }
  }

  Replica& a() { return *replicas_[0]; }
  Replica& b() { return *replicas_[1]; }

  std::shared_ptr<Job> Dispatch(Replica& r, const std::string& command) {
    varan::v1::DispatchRequest req;
    req.mutable_target()->add_names("p1");
    req.mutable_spec()->set_shell(command);
    auto job = r.dispatcher->Dispatch(req, "tester");
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_TRUE(store_.Sync().ok());
    return job.ok() ? *job : nullptr;
  }

  static google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>
  Finished(const std::string& execution_id, const std::string& tail) {
    google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> out;
    varan::v1::ExecutionReport& r = *out.Add();
    r.set_execution_id(execution_id);
    r.mutable_started()->set_pid(42);
    r.mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
    r.mutable_stdout_tail()->set_data(tail);
    return out;
  }

  FakeClock clock_;
  MemoryStore store_;
  std::shared_ptr<MemoryClusterState> state_;
  std::unique_ptr<FleetRegistry> fleet_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::string p1_;
  // The tags fence_creator was called with; what it fails with (OK: the
  // cluster's answer).
  std::vector<std::string> fenced_;
  absl::Status fence_failure_;
};

TEST_F(DispatcherReplicasTest, AJobIdNamesItsReplica) {
  auto job = Dispatch(a(), "true");
  ASSERT_NE(job, nullptr);
  EXPECT_EQ(JobTag(job->id()), "aaaaaaaa");
  EXPECT_TRUE(a().owners->OwnsHere(job->id()));
  EXPECT_FALSE(b().owners->OwnsHere(job->id()));
}

TEST_F(DispatcherReplicasTest, OnlyTheJobsReplicaAnswersItsReports) {
  auto job = Dispatch(a(), "echo hi");
  ASSERT_NE(job, nullptr);
  ASSERT_EQ(a().links.calls().size(), 1u);
  a().links.calls()[0]->Start(7);
  // The call breaks: the target waits for the periphery's report.
  a().links.calls()[0]->End(absl::UnavailableError("link cut"));
  const std::string exec = job->id() + "/p1";
  // The periphery's heartbeat reached b, which forwards it: b neither
  // records nor acknowledges another replica's execution.
  std::vector<std::string> cancel;
  EXPECT_THAT(
      b().dispatcher->OnPeripheryReport(p1_, Finished(exec, "hi\n"), &cancel),
      IsEmpty());
  EXPECT_THAT(cancel, IsEmpty());
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_RUNNING);
  // a records it, and tells the periphery to forget it.
  EXPECT_THAT(
      ReportUntilStored(*a().dispatcher, store_, p1_, Finished(exec, "hi\n")),
      ElementsAre(exec));
  EXPECT_EQ(job->Snapshot().targets(0).state(), varan::v1::TARGET_STATE_EXITED);
}

TEST_F(DispatcherReplicasTest, AReplicaTakesOverTheJobsOfADeadOne) {
  auto job = Dispatch(a(), "sleep 5; echo done");
  ASSERT_NE(job, nullptr);
  a().links.calls()[0]->Start(7);
  const std::string id = job->id();
  const std::string exec = id + "/p1";
  a().cluster->Crash();
  // Live for its TTL: nothing to take over yet.
  ASSERT_TRUE(b().cluster->Holds(kJobsLease));
  auto adopted = b().dispatcher->AdoptOrphans();
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(*adopted, 0u);
  clock_.Advance(kClusterTtl + absl::Seconds(1));
  adopted = b().dispatcher->AdoptOrphans();
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(*adopted, 1u);
  EXPECT_TRUE(b().dispatcher->Running(id));
  // Once only.
  EXPECT_EQ(*b().dispatcher->AdoptOrphans(), 0u);
  // Nothing sent again: the target waits for the periphery's held result.
  EXPECT_THAT(b().links.calls(), IsEmpty());
  auto found = b().dispatcher->Find(id);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_RUNNING);
  EXPECT_THAT(
      ReportUntilStored(*b().dispatcher, store_, p1_, Finished(exec, "done\n")),
      ElementsAre(exec));
  EXPECT_EQ((*found)->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_EXITED);
  EXPECT_THAT((*found)->Snapshot().targets(0).error(), IsEmpty());
}

TEST_F(DispatcherReplicasTest, ADeadReplicaIsFencedBeforeItsJobsAreTakenOver) {
  auto first = Dispatch(a(), "sleep 5");
  auto second = Dispatch(a(), "sleep 6");
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  a().cluster->Crash();
  clock_.Advance(kClusterTtl + absl::Seconds(1));
  EXPECT_FALSE(a().cluster->Fenced());
  auto adopted = b().dispatcher->AdoptOrphans();
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(*adopted, 2u);
  // Once for both jobs, before either was taken over.
  EXPECT_THAT(fenced_, ElementsAre("aaaaaaaa"));
  EXPECT_TRUE(a().cluster->Fenced());
  EXPECT_FALSE(b().cluster->Fenced());
}

TEST_F(DispatcherReplicasTest, JobsOfAReplicaThatCannotBeFencedAreLeftAlone) {
  auto job = Dispatch(a(), "sleep 5");
  ASSERT_NE(job, nullptr);
  a().cluster->Crash();
  clock_.Advance(kClusterTtl + absl::Seconds(1));
  // The database is out of reach: the scan fails, to be tried again.
  fence_failure_ = absl::UnavailableError("database unreachable");
  auto adopted = b().dispatcher->AdoptOrphans();
  EXPECT_TRUE(absl::IsUnavailable(adopted.status())) << adopted.status();
  EXPECT_FALSE(b().dispatcher->Running(job->id()));
  // It renewed after all: not an error, and nothing taken over.
  fence_failure_ = absl::FailedPreconditionError("replica is live");
  adopted = b().dispatcher->AdoptOrphans();
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(*adopted, 0u);
  EXPECT_FALSE(b().dispatcher->Running(job->id()));
  fence_failure_ = absl::OkStatus();
  adopted = b().dispatcher->AdoptOrphans();
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(*adopted, 1u);
  EXPECT_TRUE(b().dispatcher->Running(job->id()));
}

// A job of its own that a live replica no longer runs has finished (its
// final record on its way to the store): never taken over as an orphan,
// even by the jobs lease's holder.
TEST_F(DispatcherReplicasTest, AReplicaNeverTakesOverItsOwnJobs) {
  // A job stored as running with a's tag that a does not run: made from a
  // job b runs, copied under an id of a's.
  auto job = Dispatch(b(), "sleep 5");
  ASSERT_NE(job, nullptr);
  b().links.calls()[0]->Start(7);
  ASSERT_TRUE(store_.Sync().ok());
  auto stored = store_.LoadJob(job->id());
  ASSERT_TRUE(stored.ok()) << stored.status();
  const std::string id = "1a24d10fdbc000" + a().owners->tag();
  stored->record.set_id(id);
  store_.CreateJob(stored->record, {});
  for (auto& e : stored->events) e.set_job_id(id);
  store_.AppendEvents(id, stored->events);
  ASSERT_TRUE(store_.Sync().ok());
  ASSERT_TRUE(a().cluster->Holds(kJobsLease));
  auto adopted = a().dispatcher->AdoptOrphans();
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(*adopted, 0u);
  EXPECT_FALSE(a().dispatcher->Running(id));
}

// What another replica forwards is only its part of a heartbeat: its
// silence about a waiting target means nothing. A whole heartbeat (its
// own, or one asked of the replica holding the periphery: Replica.Held)
// without it does.
TEST_F(DispatcherReplicasTest, OnlyWholeHeartbeatsResolveAnAbsentTarget) {
  auto job = Dispatch(a(), "sleep 5");
  ASSERT_NE(job, nullptr);
  a().links.calls()[0]->Start(7);
  const std::string id = job->id();
  a().cluster->Crash();
  clock_.Advance(kClusterTtl + absl::Seconds(1));
  ASSERT_EQ(*b().dispatcher->AdoptOrphans(), 1u);
  EXPECT_THAT(b().dispatcher->AwaitedPeripheries(), ElementsAre(p1_));
  const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> none;
  for (int i = 0; i < 3; ++i) {
    b().dispatcher->OnPeripheryReport(p1_, none, nullptr, /*complete=*/false);
  }
  auto found = b().dispatcher->Find(id);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_RUNNING);
  b().dispatcher->OnPeripheryReport(p1_, none);
  b().dispatcher->OnPeripheryReport(p1_, none);
  const varan::v1::Job snap = (*found)->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_LOST);
  EXPECT_THAT(snap.targets(0).error(),
              ::testing::HasSubstr("no longer holds execution"));
  EXPECT_THAT(b().dispatcher->AwaitedPeripheries(), IsEmpty());
}

// The replica holding the periphery died before the others saw it: the
// relay never reached the periphery (Misrouted). The target is sent again
// (same execution id) once the pause has passed, whole heartbeats that do
// not mention it meanwhile mean nothing, and it runs once.
TEST_F(DispatcherReplicasTest, AMisroutedCallIsSentAgainAndRunsOnce) {
  auto job = Dispatch(a(), "echo once");
  ASSERT_NE(job, nullptr);
  ASSERT_EQ(a().links.calls().size(), 1u);
  a().links.calls()[0]->End(
      Misrouted(absl::UnavailableError("replica r-b: connection refused")));
  a().dispatcher->Tick();  // not before the pause
  ASSERT_EQ(a().links.calls().size(), 1u);
  const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> none;
  for (int i = 0; i < 3; ++i) a().dispatcher->OnPeripheryReport(p1_, none);
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_DISPATCHED);
  clock_.Advance(absl::Seconds(1));
  a().dispatcher->Tick();
  ASSERT_EQ(a().links.calls().size(), 2u);
  FakeCall* again = a().links.calls()[1];
  EXPECT_EQ(again->request.execution_id(), job->id() + "/p1");
  EXPECT_EQ(again->request.spec().shell(), "echo once");
  EXPECT_TRUE(again->request.hold_result());
  again->Start(9);
  again->Exit(varan::v1::ExitStatus::KIND_EXITED, 0);
  EXPECT_EQ(job->Snapshot().targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  clock_.Advance(absl::Seconds(1));
  a().dispatcher->Tick();
  EXPECT_EQ(a().links.calls().size(), 2u);
}

// No replica takes the periphery over within the window: the target fails
// with why, after being tried about twice a second.
TEST_F(DispatcherReplicasTest, AMisroutedCallFailsOnceTheWindowPassed) {
  auto job = Dispatch(a(), "true");
  ASSERT_NE(job, nullptr);
  for (int i = 0; i < 100; ++i) {
    std::vector<FakeCall*> calls = a().links.calls();
    if (!calls.back()->done) {
      calls.back()->End(Misrouted(
          absl::UnavailableError("periphery p1 has no tunnel to any core")));
    }
    clock_.Advance(absl::Milliseconds(500));
    a().dispatcher->Tick();
  }
  const size_t tries = a().links.calls().size();
  EXPECT_GE(tries, 20u);
  EXPECT_LE(tries, 32u);
  const varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(0).error(), ::testing::HasSubstr("no tunnel"));
}

// Canceled while it waited to be sent again: CANCELED, never sent.
TEST_F(DispatcherReplicasTest, AMisroutedCallCanceledMeanwhileIsNotSent) {
  auto job = Dispatch(a(), "true");
  ASSERT_NE(job, nullptr);
  a().links.calls()[0]->End(Misrouted(absl::UnavailableError("refused")));
  ASSERT_TRUE(a().dispatcher->Cancel(job->id(), "tester").ok());
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_CANCELED);
  clock_.Advance(absl::Seconds(1));
  a().dispatcher->Tick();
  EXPECT_EQ(a().links.calls().size(), 1u);
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_CANCELED);
}

// A periphery going offline meanwhile loses the target, as any other.
TEST_F(DispatcherReplicasTest, AMisroutedCallsPeripheryGoneIsLost) {
  auto job = Dispatch(a(), "true");
  ASSERT_NE(job, nullptr);
  a().links.calls()[0]->End(Misrouted(absl::UnavailableError("refused")));
  a().dispatcher->PeripheryGone(p1_, "periphery p1 went offline");
  clock_.Advance(absl::Seconds(1));
  a().dispatcher->Tick();
  EXPECT_EQ(a().links.calls().size(), 1u);
  EXPECT_EQ(job->Snapshot().targets(0).state(), varan::v1::TARGET_STATE_LOST);
}

// The command's end went out on the relayed call, and the replica relaying
// it died before passing it on: the periphery counts it delivered and
// reports the result without tails. Core asks for them (the last output is
// missing otherwise) in answer to every report without them — those sent
// before the periphery heard the ask, a forwarding replica's answer coming
// a heartbeat late — and applies the report that brings them; one without
// them only once kAskForTails has passed (a periphery that does not know
// the ask).
TEST_F(DispatcherReplicasTest, AnEndThatNeverArrivedIsAskedForWithItsTails) {
  for (const bool answered : {true, false}) {
    SCOPED_TRACE(answered);
    auto job = Dispatch(a(), "echo start; sleep 5; echo end");
    ASSERT_NE(job, nullptr);
    FakeCall* call = a().links.calls().back();
    call->Start(7);
    call->Output("start\n");
    call->End(absl::UnavailableError("the replica relaying it died"));
    const std::string exec = job->id() + "/p1";
    auto no_tails = Finished(exec, "");
    no_tails.Mutable(0)->clear_stdout_tail();
    // Forwarded reports (not complete), then the periphery's own.
    for (const bool complete : {false, false, true}) {
      std::vector<std::string> resend;
      EXPECT_THAT(a().dispatcher->OnPeripheryReport(p1_, no_tails, nullptr,
                                                    complete, &resend),
                  IsEmpty());
      EXPECT_THAT(resend, ElementsAre(exec));
      EXPECT_EQ(job->Snapshot().targets(0).state(),
                varan::v1::TARGET_STATE_RUNNING);
      clock_.Advance(absl::Seconds(1));
    }
    if (!answered) clock_.Advance(Dispatcher::kAskForTails);
    std::vector<std::string> resend;
    EXPECT_THAT(a().dispatcher->OnPeripheryReport(
                    p1_, answered ? Finished(exec, "start\nend\n") : no_tails,
                    nullptr, true, &resend),
                IsEmpty());
    EXPECT_THAT(resend, IsEmpty());
    const varan::v1::Job snap = job->Snapshot();
    EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
    EXPECT_EQ(snap.targets(0).stdout_info().total_bytes(), answered ? 10u : 6u);
  }
}

}  // namespace
}  // namespace varan::core
