// Tests for core/jobs/job.h: target state machine, output (streamed whole,
// stored as head and tail), the event log and its watchers, on a fake clock
// and a MemoryStore. The live window, pacing and offsets are in
// job_output_test.cc.
#include "core/jobs/job.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/time_util.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using varan::v1::ExecuteEvent;
using varan::v1::ExitStatus;
using varan::v1::JobEvent;

class JobTest : public ::testing::Test {
 protected:
  // A job "job-1" with one queued target per name.
  std::unique_ptr<Job> MakeJob(std::vector<std::string> names,
                               OutputLimits limits = {}) {
    varan::v1::Job record;
    record.set_id("job-1");
    record.set_created_by("tester");
    record.mutable_spec()->set_shell("echo hi");
    for (const auto& n : names) {
      auto* t = record.add_targets();
      t->set_name(n);
      t->set_periphery_id("id-" + n);
      t->set_state(varan::v1::TARGET_STATE_QUEUED);
    }
    auto job =
        std::make_unique<Job>(std::move(record), limits, &clock_, &store_);
    job->Persist(nullptr);
    return job;
  }

  // What the store holds of a stream of job-1, read back through
  // ReadOutput (after every write committed).
  std::string Stored(
      const std::string& target,
      varan::v1::OutputStream stream = varan::v1::OUTPUT_STREAM_STDOUT) {
    EXPECT_TRUE(store_.Sync().ok());
    auto out = store_.ReadOutput({"job-1", target, stream}, 0, 1 << 30);
    EXPECT_TRUE(out.ok()) << out.status();
    std::string joined;
    if (!out.ok()) return joined;
    for (const auto& piece : out->pieces) joined += piece.data;
    return joined;
  }

  static ExecuteEvent Started(int pid) {
    ExecuteEvent ev;
    ev.mutable_started()->set_pid(pid);
    ev.mutable_started()->mutable_start_time()->set_seconds(1700000001);
    return ev;
  }
  static ExecuteEvent Output(varan::v1::OutputStream stream, uint64_t seq,
                             const std::string& data) {
    ExecuteEvent ev;
    ev.mutable_output()->set_stream(stream);
    ev.mutable_output()->set_sequence(seq);
    ev.mutable_output()->set_data(data);
    return ev;
  }
  static ExecuteEvent Stdout(uint64_t seq, const std::string& data) {
    return Output(varan::v1::OUTPUT_STREAM_STDOUT, seq, data);
  }
  static ExecuteEvent Stderr(uint64_t seq, const std::string& data) {
    return Output(varan::v1::OUTPUT_STREAM_STDERR, seq, data);
  }
  static ExecuteEvent Exited(int code) {
    ExecuteEvent ev;
    ev.mutable_exited()->set_kind(ExitStatus::KIND_EXITED);
    ev.mutable_exited()->set_code(code);
    return ev;
  }
  static ExecuteEvent Ended(ExitStatus::Kind kind, int signal = 0,
                            const std::string& error = "") {
    ExecuteEvent ev;
    ev.mutable_exited()->set_kind(kind);
    ev.mutable_exited()->set_signal(signal);
    ev.mutable_exited()->set_error(error);
    return ev;
  }

  // Every event recorded so far, checking that sequences have no gaps.
  static std::vector<JobEvent> Events(const Job& job) {
    std::vector<JobEvent> out;
    JobEvent ev;
    while (job.EventAt(out.size(), &ev) == Job::Read::kEvent) {
      EXPECT_EQ(ev.sequence(), out.size());
      EXPECT_EQ(ev.job_id(), "job-1");
      out.push_back(ev);
    }
    return out;
  }

  // One letter per event kind, e.g. "AsoF" for accepted, started, output,
  // finished; 'J' is job_finished.
  static std::string Kinds(const std::vector<JobEvent>& events) {
    std::string out;
    for (const auto& ev : events) {
      switch (ev.event_case()) {
        case JobEvent::kAccepted:
          out += 'A';
          break;
        case JobEvent::kStarted:
          out += 's';
          break;
        case JobEvent::kOutput:
          out += 'o';
          break;
        case JobEvent::kFinished:
          out += 'f';
          break;
        case JobEvent::kJobFinished:
          out += 'J';
          break;
        case JobEvent::kDispatched:
          out += 'd';
          break;
        case JobEvent::kCancelRequested:
          out += 'C';
          break;
        case JobEvent::kOutputGap:
          out += 'g';
          break;
        case JobEvent::EVENT_NOT_SET:
          out += '?';
          break;
      }
    }
    return out;
  }

  FakeClock clock_;
  MemoryStore store_;
};

TEST_F(JobTest, NewJobIsRunningWithAnAcceptedEvent) {
  auto job = MakeJob({"a", "b"});
  EXPECT_EQ(job->id(), "job-1");
  EXPECT_EQ(job->target_count(), 2u);
  EXPECT_FALSE(job->finished());
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_RUNNING);
  EXPECT_EQ(FromTimestamp(snap.create_time()), clock_.Now());
  EXPECT_EQ(snap.created_by(), "tester");

  auto events = Events(*job);
  ASSERT_EQ(Kinds(events), "A");
  EXPECT_THAT(events[0].accepted().targets(), ElementsAre("a", "b"));
  EXPECT_EQ(FromTimestamp(events[0].time()), clock_.Now());
  JobEvent ev;
  EXPECT_EQ(job->EventAt(1, &ev), Job::Read::kWait);
  EXPECT_EQ(job->EventAt(100, &ev), Job::Read::kWait);
}

TEST_F(JobTest, TwoTargetsExitingZeroSucceed) {
  auto job = MakeJob({"a", "b"});
  job->MarkDispatched(0);
  job->MarkDispatched(1);
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_DISPATCHED);

  job->OnExecuteEvent(0, Started(100));
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_RUNNING);
  job->OnExecuteEvent(1, Started(200));
  job->OnExecuteEvent(0, Stdout(0, "hello "));
  job->OnExecuteEvent(0, Stderr(0, "oops\n"));
  job->OnExecuteEvent(0, Stdout(1, "world\n"));
  job->OnExecuteEvent(1, Stdout(0, "b-out"));
  clock_.Advance(absl::Seconds(7));
  job->OnExecuteEvent(0, Exited(0));
  EXPECT_FALSE(job->finished());
  job->OnExecuteEvent(1, Exited(0));
  EXPECT_TRUE(job->finished());

  auto events = Events(*job);
  EXPECT_EQ(Kinds(events), "AddssooooffJ");
  EXPECT_EQ(events[3].target(), "a");
  EXPECT_EQ(events[3].started().pid(), 100);
  EXPECT_EQ(events[4].started().pid(), 200);
  EXPECT_EQ(events[5].output().data(), "hello ");
  EXPECT_EQ(events[6].output().stream(), varan::v1::OUTPUT_STREAM_STDERR);
  EXPECT_EQ(events[8].target(), "b");
  EXPECT_EQ(events[9].finished().state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(events[9].target(), "a");
  EXPECT_EQ(events[10].target(), "b");
  const auto& done = events[11].job_finished();
  EXPECT_EQ(done.state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.succeeded(), 2u);
  EXPECT_EQ(done.failed(), 0u);
  EXPECT_EQ(events[11].target(), "");

  JobEvent ev;
  EXPECT_EQ(job->EventAt(12, &ev), Job::Read::kEnd);
  EXPECT_EQ(job->EventAt(11, &ev), Job::Read::kEvent);

  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(FromTimestamp(snap.finish_time()), clock_.Now());
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(snap.targets(0).exit_status().code(), 0);
  EXPECT_EQ(snap.targets(0).start_time().seconds(), 1700000001);
  EXPECT_EQ(FromTimestamp(snap.targets(0).finish_time()), clock_.Now());
  EXPECT_EQ(snap.targets(0).stdout_info().total_bytes(), 12u);
  EXPECT_EQ(snap.targets(0).stderr_info().total_bytes(), 5u);
  EXPECT_EQ(snap.targets(1).stdout_info().total_bytes(), 5u);
  EXPECT_EQ(snap.target_count(), 2u);
  // The output is in the store, not in the record.
  EXPECT_EQ(snap.targets(0).stdout(), "");
  EXPECT_EQ(snap.targets(0).stderr(), "");
  EXPECT_EQ(Stored("a"), "hello world\n");
  EXPECT_EQ(Stored("a", varan::v1::OUTPUT_STREAM_STDERR), "oops\n");
  EXPECT_EQ(Stored("b"), "b-out");
}

// JobEventWriter streams events straight from the log without copying
// them: an event handed out must stay where it is, unchanged, while the
// log grows.
TEST_F(JobTest, AnEventHandedOutStaysValidWhileTheLogGrows) {
  auto job = MakeJob({"a"});
  job->MarkDispatched(0);
  job->OnExecuteEvent(0, Started(100));
  const JobEvent* first = nullptr;
  ASSERT_EQ(job->EventAt(3, &first), Job::Read::kWait);
  job->OnExecuteEvent(0, Stdout(0, "first chunk"));
  ASSERT_EQ(job->EventAt(3, &first), Job::Read::kEvent);
  for (uint64_t i = 1; i < 5000; ++i) {
    job->OnExecuteEvent(0, Stdout(i, "more output "));
  }
  job->OnExecuteEvent(0, Exited(0));
  EXPECT_EQ(first->sequence(), 3u);
  EXPECT_EQ(first->output().data(), "first chunk");
  const JobEvent* same = nullptr;
  ASSERT_EQ(job->EventAt(3, &same), Job::Read::kEvent);
  EXPECT_EQ(same, first);
  EXPECT_EQ(job->EventAt(5006, &same), Job::Read::kEnd);
  // The stored output is the output events' data, in order.
  const std::string out = Stored("a");
  EXPECT_EQ(out.size(), 11u + 4999u * 12u);
  EXPECT_EQ(out.substr(0, 23), "first chunkmore output ");
}

TEST_F(JobTest, AnyOtherOutcomeFailsTheJob) {
  struct Case {
    std::string label;
    ExecuteEvent second;
    varan::v1::TargetState target_state;
  };
  const std::vector<Case> cases = {
      {"exit 1", Exited(1), varan::v1::TARGET_STATE_EXITED},
      {"signaled", Ended(ExitStatus::KIND_SIGNALED, 9),
       varan::v1::TARGET_STATE_EXITED},
      {"timed out", Ended(ExitStatus::KIND_TIMED_OUT, 15),
       varan::v1::TARGET_STATE_TIMED_OUT},
      {"canceled", Ended(ExitStatus::KIND_CANCELED, 15),
       varan::v1::TARGET_STATE_CANCELED},
      {"start failed",
       Ended(ExitStatus::KIND_START_FAILED, 0, "cannot run \"x\""),
       varan::v1::TARGET_STATE_FAILED},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    auto job = MakeJob({"a", "b"});
    job->OnExecuteEvent(0, Started(1));
    job->OnExecuteEvent(0, Exited(0));
    if (c.second.exited().kind() != ExitStatus::KIND_START_FAILED) {
      job->OnExecuteEvent(1, Started(2));
    }
    ExecuteEvent second = c.second;
    job->OnExecuteEvent(1, second);
    ASSERT_TRUE(job->finished());

    varan::v1::Job snap = job->Snapshot();
    EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);
    EXPECT_EQ(snap.targets(1).state(), c.target_state);
    EXPECT_EQ(snap.targets(1).exit_status().kind(), c.second.exited().kind());
    EXPECT_EQ(snap.targets(1).error(), c.second.exited().error());

    auto events = Events(*job);
    ASSERT_FALSE(events.empty());
    const JobEvent& last = events.back();
    ASSERT_TRUE(last.has_job_finished());
    EXPECT_EQ(last.job_finished().state(), varan::v1::JOB_STATE_FAILED);
    EXPECT_EQ(last.job_finished().succeeded(), 1u);
    EXPECT_EQ(last.job_finished().failed(), 1u);
    const JobEvent& finished = events[events.size() - 2];
    ASSERT_TRUE(finished.has_finished());
    EXPECT_EQ(finished.target(), "b");
    EXPECT_EQ(finished.finished().state(), c.target_state);
  }
}

TEST_F(JobTest, OutputIsStreamedWholeAndStoredAsHeadAndTail) {
  auto job = MakeJob({"a"}, {.head_bytes = 4, .tail_bytes = 6});
  job->OnExecuteEvent(0, Started(1));
  job->OnExecuteEvent(0, Stdout(0, "0123456"));
  job->OnExecuteEvent(0, Stdout(1, "789ABCDE"));
  job->OnExecuteEvent(0, Stdout(2, "xyz"));
  job->OnExecuteEvent(0, Stderr(0, "err"));  // other stream: its own
  job->OnExecuteEvent(0, Exited(0));

  auto events = Events(*job);
  ASSERT_EQ(Kinds(events), "AsoooofJ");
  std::string streamed;
  for (const auto& ev : events) {
    if (ev.has_output() &&
        ev.output().stream() == varan::v1::OUTPUT_STREAM_STDOUT) {
      EXPECT_EQ(ev.output().offset(), streamed.size());
      streamed += ev.output().data();
    }
  }
  // Nothing is cut from what watchers get.
  EXPECT_EQ(streamed, "0123456789ABCDExyz");

  // Stored: the first 4 and the last 6 bytes; the 8 between are counted.
  EXPECT_EQ(Stored("a"), "0123CDExyz");
  EXPECT_EQ(Stored("a", varan::v1::OUTPUT_STREAM_STDERR), "err");
  varan::v1::Job snap = job->Snapshot();
  const auto& info = snap.targets(0).stdout_info();
  EXPECT_EQ(info.total_bytes(), 18u);
  EXPECT_EQ(info.head_end(), 4u);
  EXPECT_EQ(info.tail_start(), 12u);
  EXPECT_EQ(info.omitted_bytes(), 8u);
  EXPECT_EQ(snap.targets(0).stdout_uncaptured_bytes(), 8u);
  EXPECT_EQ(snap.targets(0).stderr_uncaptured_bytes(), 0u);
  EXPECT_EQ(snap.output_head_bytes(), 4u);
  EXPECT_EQ(snap.output_tail_bytes(), 6u);
  EXPECT_EQ(snap.capture_limit_bytes(), 10u);
  EXPECT_EQ(events[6].finished().stdout_uncaptured_bytes(), 8u);
  // The stored log has no output events: holes where they were.
  auto stored = store_.LoadJob("job-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  std::vector<uint64_t> seqs;
  for (const auto& ev : stored->events) seqs.push_back(ev.sequence());
  EXPECT_THAT(seqs, ElementsAre(0, 1, 6, 7));
}

TEST_F(JobTest, ExecuteDoneBeforeStartFailsTheTargetWithTheMessage) {
  auto job = MakeJob({"a"});
  job->MarkDispatched(0);
  job->OnExecuteDone(0, absl::UnavailableError("connection refused"));
  ASSERT_TRUE(job->finished());
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_EQ(snap.targets(0).error(), "connection refused");
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);
  auto events = Events(*job);
  ASSERT_EQ(Kinds(events), "AdfJ");
  EXPECT_EQ(events[2].finished().state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_EQ(events[2].finished().error(), "connection refused");
}

TEST_F(JobTest, ExecuteDoneOkWithoutResultFailsTheTarget) {
  auto job = MakeJob({"a"});
  job->OnExecuteDone(0, absl::OkStatus());
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("without a result"));
}

TEST_F(JobTest, ExecuteDoneAfterStartLosesTheTarget) {
  auto job = MakeJob({"a"});
  job->OnExecuteEvent(0, Started(1));
  job->OnExecuteEvent(0, Stdout(0, "partial"));
  job->OnExecuteDone(0, absl::UnavailableError("socket closed"));
  ASSERT_TRUE(job->finished());
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_LOST);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("socket closed"));
  EXPECT_EQ(Stored("a"), "partial");
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_FAILED);
  EXPECT_EQ(Kinds(Events(*job)), "AsofJ");
}

TEST_F(JobTest, ExecuteDoneAfterExitChangesNothing) {
  auto job = MakeJob({"a"});
  job->OnExecuteEvent(0, Started(1));
  job->OnExecuteEvent(0, Exited(0));
  const size_t before = Events(*job).size();
  job->OnExecuteDone(0, absl::UnavailableError("late"));
  job->FinishTarget(0, varan::v1::TARGET_STATE_FAILED, "late");
  job->OnExecuteEvent(0, Stdout(0, "late output"));
  job->OnExecuteEvent(0, Exited(1));
  EXPECT_EQ(Events(*job).size(), before);
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(snap.targets(0).error(), "");
  EXPECT_EQ(Stored("a"), "");
}

TEST_F(JobTest, FinishTargetFinishesAnUnsentTarget) {
  auto job = MakeJob({"a", "b"});
  job->FinishTarget(1, varan::v1::TARGET_STATE_FAILED,
                    "periphery b is offline");
  EXPECT_FALSE(job->finished());
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.targets(1).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_EQ(snap.targets(1).error(), "periphery b is offline");
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_QUEUED);

  job->OnExecuteEvent(0, Started(1));
  job->OnExecuteEvent(0, Exited(0));
  ASSERT_TRUE(job->finished());
  auto events = Events(*job);
  EXPECT_EQ(Kinds(events), "AfsfJ");
  EXPECT_EQ(events[1].target(), "b");
  EXPECT_EQ(events[1].finished().error(), "periphery b is offline");
  EXPECT_EQ(events.back().job_finished().succeeded(), 1u);
  EXPECT_EQ(events.back().job_finished().failed(), 1u);
}

TEST_F(JobTest, JobWithoutTargetsFinishesAtOnce) {
  auto job = MakeJob({});
  EXPECT_TRUE(job->finished());
  auto events = Events(*job);
  ASSERT_EQ(events.size(), 2u);
  // Even without targets the first event says the job was accepted.
  ASSERT_TRUE(events[0].has_accepted());
  EXPECT_EQ(events[0].accepted().targets_size(), 0);
  ASSERT_TRUE(events[1].has_job_finished());
  EXPECT_EQ(events[1].job_finished().state(), varan::v1::JOB_STATE_SUCCEEDED);
  JobEvent ev;
  EXPECT_EQ(job->EventAt(2, &ev), Job::Read::kEnd);
  varan::v1::Job snap = job->Snapshot();
  EXPECT_EQ(snap.state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_TRUE(snap.has_finish_time());
}

TEST_F(JobTest, WatchersSeeEveryEventAsItIsAppended) {
  auto job = MakeJob({"a"});
  uint64_t next = 1;  // the accepted event was there before the watcher
  std::vector<uint64_t> seen;
  int calls = 0;
  uint64_t handle = job->AddWatcher([&] {
    ++calls;
    JobEvent ev;
    while (job->EventAt(next, &ev) == Job::Read::kEvent) {
      seen.push_back(ev.sequence());
      ++next;
    }
  });

  job->OnExecuteEvent(0, Started(1));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1}));
  job->OnExecuteEvent(0, Stdout(0, "x"));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2}));
  job->OnExecuteEvent(0, Exited(0));  // finished + job_finished
  EXPECT_GE(calls, 3);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3, 4}));
  job->RemoveWatcher(handle);
}

TEST_F(JobTest, NoCallbackAfterRemoveWatcher) {
  auto job = MakeJob({"a", "b"});
  int first = 0, second = 0;
  uint64_t h1 = job->AddWatcher([&] { ++first; });
  uint64_t h2 = job->AddWatcher([&] { ++second; });
  EXPECT_NE(h1, h2);
  job->OnExecuteEvent(0, Started(1));
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 1);
  job->RemoveWatcher(h1);
  job->OnExecuteEvent(0, Exited(0));
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 2);
  job->RemoveWatcher(h2);
  job->FinishTarget(1, varan::v1::TARGET_STATE_FAILED,
                    "gone");  // appends finished and job_finished
  ASSERT_TRUE(job->finished());
  EXPECT_EQ(first, 1);
  EXPECT_EQ(second, 2);
}

TEST_F(JobTest, EventTimesComeFromTheClock) {
  auto job = MakeJob({"a"});
  const absl::Time t0 = clock_.Now();
  clock_.Advance(absl::Seconds(3));
  job->OnExecuteEvent(0, Started(1));
  clock_.Advance(absl::Seconds(4));
  job->OnExecuteEvent(0, Exited(0));
  auto events = Events(*job);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(FromTimestamp(events[0].time()), t0);
  EXPECT_EQ(FromTimestamp(events[1].time()), t0 + absl::Seconds(3));
  EXPECT_EQ(FromTimestamp(events[2].time()), t0 + absl::Seconds(7));
  EXPECT_EQ(FromTimestamp(events[3].time()), t0 + absl::Seconds(7));
}

TEST_F(JobTest, IsFinal) {
  for (auto s :
       {varan::v1::TARGET_STATE_EXITED, varan::v1::TARGET_STATE_FAILED,
        varan::v1::TARGET_STATE_TIMED_OUT, varan::v1::TARGET_STATE_CANCELED,
        varan::v1::TARGET_STATE_LOST}) {
    EXPECT_TRUE(IsFinal(s)) << s;
  }
  for (auto s :
       {varan::v1::TARGET_STATE_UNSPECIFIED, varan::v1::TARGET_STATE_QUEUED,
        varan::v1::TARGET_STATE_DISPATCHED, varan::v1::TARGET_STATE_RUNNING}) {
    EXPECT_FALSE(IsFinal(s)) << s;
  }
}

TEST_F(JobTest, CoreGivesUpOnATargetPastItsTimeout) {
  varan::v1::Job record;
  record.set_id("job-t");
  record.mutable_spec()->set_shell("sleep 100");
  record.mutable_spec()->mutable_timeout()->set_seconds(5);
  record.add_targets()->set_name("a");
  Job job(std::move(record), OutputLimits{}, &clock_, &store_);
  job.MarkDispatched(0);
  job.OnExecuteEvent(0, Started(5));
  job.OnExecuteDone(0, absl::DeadlineExceededError("Deadline Exceeded"));
  varan::v1::Job snap = job.Snapshot();
  EXPECT_EQ(snap.targets(0).state(), varan::v1::TARGET_STATE_TIMED_OUT);
  EXPECT_THAT(snap.targets(0).error(), HasSubstr("within a minute"));
}

TEST_F(JobTest, RestoreReplaysTheStoredLogIntoTheSameRecord) {
  auto job = MakeJob({"a", "b"}, {.head_bytes = 1, .tail_bytes = 3});
  job->MarkDispatched(0);
  job->MarkDispatched(1);
  job->OnExecuteEvent(0, Started(100));
  job->OnExecuteEvent(0, Stdout(0, "hello"));  // one byte not stored
  job->OnExecuteEvent(0, Exited(0));
  ASSERT_TRUE(job->RequestCancel("alice"));
  job->OnExecuteDone(1, absl::CancelledError("gone"));
  ASSERT_TRUE(job->finished());
  ASSERT_TRUE(store_.Sync().ok());

  // The stored log has a hole where the output event was.
  auto stored = store_.LoadJob("job-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  auto restored = Job::Restore(*stored, &clock_, &store_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->Snapshot().DebugString(),
            job->Snapshot().DebugString());
  EXPECT_EQ((*restored)->Snapshot().state(), varan::v1::JOB_STATE_CANCELED);
  EXPECT_EQ((*restored)->Snapshot().targets(0).stdout_info().total_bytes(), 5u);
  EXPECT_EQ((*restored)->Snapshot().targets(0).stdout_uncaptured_bytes(), 1u);
  EXPECT_EQ(Stored("a"), "hllo");
  // The hole reads as an output_gap; the events around it as they were.
  JobEvent ev;
  ASSERT_EQ((*restored)->EventAt(4, &ev), Job::Read::kEvent);
  ASSERT_TRUE(ev.has_output_gap()) << ev.DebugString();
  EXPECT_EQ(ev.output_gap().first_sequence(), 4u);
  EXPECT_EQ(ev.sequence(), 4u);
  ASSERT_EQ((*restored)->EventAt(5, &ev), Job::Read::kEvent);
  EXPECT_TRUE(ev.has_finished());

  StoredJob unknown = *stored;
  unknown.events.back().set_target("nobody");
  auto broken = Job::Restore(unknown, &clock_, &store_);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(broken.status().message()), HasSubstr("nobody"));
}

}  // namespace
}  // namespace varan::core
