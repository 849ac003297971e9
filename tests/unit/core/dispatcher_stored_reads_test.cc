// Dispatcher (core/jobs/dispatcher.h) and the heartbeats that ask about a
// job no longer in memory (a late outcome of a lost target, a command still
// running whose job was canceled): the heartbeat never reads the store
// itself — the read goes to DispatcherOptions::run_reads (core: its
// BlockingWork pool), the heartbeat is answered without it, and a later one
// finds the job read (StoredJobViews).
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/dispatcher_fixture.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Reads handed to run_reads, run when the test says.
class HeldReads {
 public:
  absl::Status Run(absl::AnyInvocable<void() &&> read) {
    absl::MutexLock lock(&mu_);
    if (refuse_) return absl::ResourceExhaustedError("the pool is full");
    queued_.push_back(std::move(read));
    return absl::OkStatus();
  }
  // Runs what is queued; returns how many.
  size_t RunAll() {
    std::deque<absl::AnyInvocable<void() &&>> now;
    {
      absl::MutexLock lock(&mu_);
      now.swap(queued_);
    }
    for (auto& read : now) std::move(read)();
    return now.size();
  }
  size_t queued() const {
    absl::MutexLock lock(&mu_);
    return queued_.size();
  }
  void set_refuse(bool refuse) {
    absl::MutexLock lock(&mu_);
    refuse_ = refuse;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queued_ ABSL_GUARDED_BY(mu_);
  bool refuse_ ABSL_GUARDED_BY(mu_) = false;
};

class StoredReadsTest : public DispatcherTest {
 protected:
  StoredReadsTest() {
    Close();
    options_.run_reads = [this](absl::AnyInvocable<void() &&> read) {
      return reads_.Run(std::move(read));
    };
    Open();
  }
  ~StoredReadsTest() override {
    reads_.RunAll();  // the dispatcher waits for the reads it started
    Close();
  }

  // Dispatches to every periphery (`cancel`: then cancels the job), breaks
  // every call after its start, and keeps the peripheries away past their
  // TTL: each target is LOST, and the job is stored as finished and no
  // longer in memory.
  std::shared_ptr<Job> LoseEveryTarget(bool cancel = false) {
    auto job = MustDispatch(Request(""));
    for (FakeCall* call : links_.calls()) {
      call->Start(7);
      call->End(absl::UnavailableError("link down"));
    }
    if (cancel) {
      EXPECT_TRUE(dispatcher_->Cancel(job->id(), "ops").ok());
    }
    clock_.Advance(kInterval * 4);
    fleet_->Tick();
    EXPECT_TRUE(store_->Sync().ok());
    for (auto state : States(*job)) {
      EXPECT_EQ(state, varan::v1::TARGET_STATE_LOST);
    }
    EXPECT_FALSE(dispatcher_->Running(job->id()));
    return job;
  }

  // The job as stored now.
  varan::v1::Job Stored(const std::string& id) {
    EXPECT_TRUE(store_->Sync().ok());
    auto found = dispatcher_->Find(id);
    EXPECT_TRUE(found.ok()) << found.status();
    return found.ok() ? (*found)->Snapshot() : varan::v1::Job();
  }

  HeldReads reads_;
};

TEST_F(StoredReadsTest, ALateOutcomeIsAnsweredWithoutReadingTheStoreAtOnce) {
  const std::string p1 = Add("p1");
  auto job = LoseEveryTarget();
  const std::string exec = job->id() + "/p1";
  const auto report = Reports({Finished(exec, 0, "late\n")});
  // The heartbeat is answered at once, with nothing: the job is being read
  // elsewhere. The periphery keeps reporting the outcome meanwhile, and
  // that starts no second read.
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), IsEmpty());
  }
  EXPECT_EQ(reads_.queued(), 1u);
  EXPECT_EQ(Stored(job->id()).targets(0).state(), varan::v1::TARGET_STATE_LOST);
  // Read: the next heartbeat amends the target. The outcome is not
  // acknowledged until a read shows it stored — not by the view it changed.
  ASSERT_EQ(reads_.RunAll(), 1u);
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), IsEmpty());
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), IsEmpty());
  EXPECT_EQ(reads_.queued(), 0u);
  EXPECT_EQ(Stored(job->id()).targets(0).state(),
            varan::v1::TARGET_STATE_EXITED);
  // Once the view is old, the job is read again, and the outcome is
  // acknowledged from that read.
  clock_.Advance(absl::Seconds(3));
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), IsEmpty());
  ASSERT_EQ(reads_.RunAll(), 1u);
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), ElementsAre(exec));
  const varan::v1::Job stored = Stored(job->id());
  EXPECT_EQ(stored.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(stored.state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(StoredStdout(job->id(), "p1"), "late\n");
}

TEST_F(StoredReadsTest, ReportsOfOneJobShareOneReadAndAllTheirOutcomesLand) {
  const std::vector<std::string> ids = {Add("p1"), Add("p2"), Add("p3")};
  auto job = LoseEveryTarget();
  auto report = [&](int i) {
    return Reports({Finished(job->id() + "/p" + std::to_string(i + 1), i,
                             "out" + std::to_string(i + 1) + "\n")});
  };
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(dispatcher_->OnPeripheryReport(ids[i], report(i)), IsEmpty());
  }
  EXPECT_EQ(reads_.queued(), 1u);
  ASSERT_EQ(reads_.RunAll(), 1u);
  // Amended one after the other on the one view: no amendment's events
  // collide with another's in the store.
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(dispatcher_->OnPeripheryReport(ids[i], report(i)), IsEmpty());
  }
  const varan::v1::Job stored = Stored(job->id());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(stored.targets(i).state(), varan::v1::TARGET_STATE_EXITED)
        << stored.targets(i).name();
    EXPECT_EQ(stored.targets(i).exit_status().code(), i);
    EXPECT_EQ(StoredStdout(job->id(), stored.targets(i).name()),
              "out" + std::to_string(i + 1) + "\n");
  }
  clock_.Advance(absl::Seconds(3));
  std::vector<std::string> acks;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 3; ++i) {
      for (auto& ack : dispatcher_->OnPeripheryReport(ids[i], report(i))) {
        acks.push_back(std::move(ack));
      }
    }
    reads_.RunAll();
  }
  EXPECT_THAT(acks, UnorderedElementsAre(job->id() + "/p1", job->id() + "/p2",
                                         job->id() + "/p3"));
}

TEST_F(StoredReadsTest, AStrayCommandOfACanceledJobIsStoppedOnceItIsRead) {
  const std::string p1 = Add("p1");
  auto job = LoseEveryTarget(/*cancel=*/true);
  const std::string exec = job->id() + "/p1";
  // Back, the periphery reports the command still running.
  varan::v1::ExecutionReport running;
  running.set_execution_id(exec);
  running.mutable_started()->set_pid(42);
  std::vector<std::string> cancel;
  dispatcher_->OnPeripheryReport(p1, Reports({running}), &cancel);
  EXPECT_THAT(cancel, IsEmpty());
  ASSERT_EQ(reads_.RunAll(), 1u);
  dispatcher_->OnPeripheryReport(p1, Reports({running}), &cancel);
  EXPECT_THAT(cancel, ElementsAre(exec));
}

TEST_F(StoredReadsTest, AReadThePoolRefusesIsAskedForAgainLater) {
  const std::string p1 = Add("p1");
  auto job = LoseEveryTarget();
  const auto report = Reports({Finished(job->id() + "/p1", 0, "late\n")});
  reads_.set_refuse(true);
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), IsEmpty());
  EXPECT_EQ(reads_.queued(), 0u);
  reads_.set_refuse(false);
  EXPECT_THAT(dispatcher_->OnPeripheryReport(p1, report), IsEmpty());
  ASSERT_EQ(reads_.RunAll(), 1u);
  dispatcher_->OnPeripheryReport(p1, report);
  EXPECT_EQ(Stored(job->id()).targets(0).state(),
            varan::v1::TARGET_STATE_EXITED);
}

}  // namespace
}  // namespace varan::core
