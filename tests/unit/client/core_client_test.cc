// Tests for CoreClient::FollowJob and ExecAndFollow (client/core_client.h)
// against a real gRPC server on loopback: a fake Jobs service that streams
// a job's event log and breaks the stream where each test says. Time is a
// FakeClock; the waits between watches only advance it.
#include "client/core_client.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/unit/client/fake_core.h"
#include "tests/unit/client/job_events.h"

namespace varan::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using varan::testing::Exited;
using varan::testing::JobEvents;
using varan::v1::JobEvent;

// A Jobs service holding one job's event log. Each Exec or WatchJob call
// takes the next step of the script: how many events to send from where
// the call starts, and the status to end with; with no step left a call
// sends the rest of the log and ends OK. Thread-safe (gRPC's threads call
// it).
class FakeJobs final : public varan::v1::Jobs::CallbackService {
 public:
  struct Step {
    size_t events;
    grpc::Status end;
  };

  explicit FakeJobs(std::vector<JobEvent> log) : log_(std::move(log)) {}

  // Replaces the job's event log (before any call).
  void SetLog(std::vector<JobEvent> log) {
    absl::MutexLock lock(&mu_);
    log_ = std::move(log);
  }

  void Then(size_t events, grpc::Status end) {
    absl::MutexLock lock(&mu_);
    script_.push_back({events, std::move(end)});
  }
  // The from_sequence of each WatchJob call, in order.
  std::vector<uint64_t> watches() const {
    absl::MutexLock lock(&mu_);
    return watches_;
  }
  int execs() const {
    absl::MutexLock lock(&mu_);
    return execs_;
  }
  // Stored output: `data` at `offset` of a target's stream (stored runs of
  // one stream added in order, not overlapping).
  void Store(const std::string& target, varan::v1::OutputStream stream,
             uint64_t offset, const std::string& data) {
    absl::MutexLock lock(&mu_);
    stored_[{target, stream}].push_back({offset, data});
  }
  // Each ReadOutput call: "target stream@offset" plus " follow".
  std::vector<std::string> reads() const {
    absl::MutexLock lock(&mu_);
    return reads_;
  }

  grpc::ServerWriteReactor<JobEvent>* Exec(
      grpc::CallbackServerContext*,
      const varan::v1::DispatchRequest*) override {
    absl::MutexLock lock(&mu_);
    ++execs_;
    return Start(0);
  }
  grpc::ServerWriteReactor<JobEvent>* WatchJob(
      grpc::CallbackServerContext*,
      const varan::v1::WatchJobRequest* request) override {
    absl::MutexLock lock(&mu_);
    watches_.push_back(request->from_sequence());
    return Start(request->from_sequence());
  }
  grpc::ServerWriteReactor<varan::v1::OutputPiece>* ReadOutput(
      grpc::CallbackServerContext*,
      const varan::v1::ReadOutputRequest* request) override {
    absl::MutexLock lock(&mu_);
    reads_.push_back(absl::StrCat(
        request->target(), " ", varan::v1::OutputStream_Name(request->stream()),
        "@", request->offset(), request->follow() ? " follow" : ""));
    std::vector<varan::v1::OutputPiece> pieces;
    uint64_t at = request->offset();
    for (const auto& [offset, data] :
         stored_[{request->target(), request->stream()}]) {
      if (offset + data.size() <= at) continue;
      const uint64_t from = std::max<uint64_t>(offset, at);
      varan::v1::OutputPiece piece;
      piece.set_offset(from);
      piece.set_data(data.substr(from - offset));
      piece.set_skipped_bytes(from - at);
      pieces.push_back(piece);
      at = offset + data.size();
    }
    for (auto& piece : pieces) piece.set_total_bytes(at);
    return new varan::testing::ScriptedWriter<varan::v1::OutputPiece>(
        std::move(pieces), grpc::Status::OK);
  }

 private:
  grpc::ServerWriteReactor<JobEvent>* Start(uint64_t from)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Step step{log_.size(), grpc::Status::OK};
    if (!script_.empty()) {
      step = script_.front();
      script_.pop_front();
    }
    std::vector<JobEvent> events;
    // By sequence: an output_gap event stands for several.
    for (const JobEvent& e : log_) {
      if (e.sequence() >= from && events.size() < step.events) {
        events.push_back(e);
      }
    }
    return new varan::testing::ScriptedWriter<JobEvent>(std::move(events),
                                                        step.end);
  }

  mutable absl::Mutex mu_;
  std::vector<JobEvent> log_ ABSL_GUARDED_BY(mu_);
  std::deque<Step> script_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> watches_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, varan::v1::OutputStream>,
           std::vector<std::pair<uint64_t, std::string>>>
      stored_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> reads_ ABSL_GUARDED_BY(mu_);
  int execs_ ABSL_GUARDED_BY(mu_) = 0;
};

std::vector<JobEvent> Log() {
  JobEvents e;
  return {e.Accepted({"web-1"}),
          e.Started("web-1"),
          e.Stdout("web-1", "a"),
          e.Stdout("web-1", "b"),
          e.Finished("web-1", Exited(0)),
          e.JobFinished(varan::v1::JOB_STATE_SUCCEEDED)};
}

const grpc::Status kBroken(grpc::StatusCode::UNAVAILABLE, "connection reset");

// What an event delivers, for comparing: "seq target stdout@offset data",
// "seq gap target stderr@offset+bytes", or "seq <kind>".
std::string Show(const JobEvent& e) {
  if (e.has_output()) {
    return absl::StrCat(e.sequence(), " ", e.target(), " ",
                        varan::v1::OutputStream_Name(e.output().stream()), "@",
                        e.output().offset(), " ", e.output().data());
  }
  if (e.has_output_gap()) {
    std::string s = absl::StrCat(e.sequence(), " gap");
    for (const auto& m : e.output_gap().missed()) {
      absl::StrAppend(&s, " ", m.target(), " ",
                      varan::v1::OutputStream_Name(m.stream()), "@", m.offset(),
                      "+", m.bytes());
    }
    return s;
  }
  if (e.has_finished()) return absl::StrCat(e.sequence(), " finished");
  if (e.has_job_finished()) return absl::StrCat(e.sequence(), " job_finished");
  return absl::StrCat(e.sequence(), " other");
}

constexpr auto kOut = varan::v1::OUTPUT_STREAM_STDOUT;
constexpr auto kErr = varan::v1::OUTPUT_STREAM_STDERR;

class FollowJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    varan::testing::ServeOnLoopback(&jobs_, &server_, &client_);
    if (HasFatalFailure()) return;
    options_.clock = &clock_;
    options_.sleep = [this](absl::Duration d) {
      sleeps_.push_back(d);
      clock_.Advance(d);
    };
    options_.on_resume = [this](const std::string& job_id, uint64_t next) {
      resumed_.push_back(absl::StrCat(job_id, "@", next));
    };
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  // FollowJob of job-1 from `from`, which must succeed: its events, Show()n.
  std::vector<std::string> Shown(uint64_t from) {
    std::vector<std::string> events;
    absl::Status s = client_->FollowJob(
        "job-1", from, [&](const JobEvent& ev) { events.push_back(Show(ev)); },
        options_);
    EXPECT_TRUE(s.ok()) << s;
    return events;
  }

  CoreClient::EventCallback Collect() {
    return [this](const JobEvent& e) { seen_.push_back(e.sequence()); };
  }

  FakeJobs jobs_{Log()};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<CoreClient> client_;
  FakeClock clock_;
  FollowOptions options_;
  std::vector<absl::Duration> sleeps_;
  std::vector<std::string> resumed_;
  std::vector<uint64_t> seen_;
};

TEST_F(FollowJobTest, ResumesFromTheSequenceAfterTheLastEvent) {
  jobs_.Then(2, kBroken);  // accepted, started, then the stream breaks
  jobs_.Then(0, kBroken);  // core still down
  EXPECT_TRUE(client_->FollowJob("job-1", 0, Collect(), options_).ok());
  EXPECT_THAT(seen_, ElementsAre(0, 1, 2, 3, 4, 5));  // each once, in order
  EXPECT_THAT(jobs_.watches(), ElementsAre(0, 2, 2));
  EXPECT_THAT(resumed_, ElementsAre("job-1@2"));  // said once
  EXPECT_THAT(sleeps_,
              ElementsAre(absl::Milliseconds(200), absl::Milliseconds(400)));
}

TEST_F(FollowJobTest, StartsFromTheSequenceAsked) {
  jobs_.Then(1, kBroken);
  EXPECT_TRUE(client_->FollowJob("job-1", 3, Collect(), options_).ok());
  EXPECT_THAT(seen_, ElementsAre(3, 4, 5));
  EXPECT_THAT(jobs_.watches(), ElementsAre(3, 4));
}

TEST_F(FollowJobTest, ExecIsFollowedByWatchesOnceTheJobExists) {
  jobs_.Then(3, kBroken);  // the Exec stream
  varan::v1::DispatchRequest req;
  req.mutable_spec()->add_argv("true");
  EXPECT_TRUE(client_->ExecAndFollow(req, Collect(), options_).ok());
  EXPECT_EQ(jobs_.execs(), 1);
  EXPECT_THAT(jobs_.watches(), ElementsAre(3));
  EXPECT_THAT(seen_, ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_THAT(resumed_, ElementsAre("job-1@3"));
}

TEST_F(FollowJobTest, ExecThatNeverStartedIsNotRetried) {
  jobs_.Then(0, grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  absl::Status s = client_->ExecAndFollow({}, Collect(), options_);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("cannot reach core at 127.0.0.1:"));
  EXPECT_THAT(jobs_.watches(), ::testing::IsEmpty());
  EXPECT_THAT(resumed_, ::testing::IsEmpty());
}

TEST_F(FollowJobTest, AStreamEndingCleanlyBeforeTheEndIsResumed) {
  jobs_.Then(4, grpc::Status::OK);
  EXPECT_TRUE(client_->FollowJob("job-1", 0, Collect(), options_).ok());
  EXPECT_THAT(jobs_.watches(), ElementsAre(0, 4));
  EXPECT_THAT(seen_, ElementsAre(0, 1, 2, 3, 4, 5));
}

TEST_F(FollowJobTest, NothingDeliveredIsNotRetried) {
  // E.g. --from past the job's last event: core ends the stream at once.
  jobs_.Then(0, grpc::Status::OK);
  absl::Status s = client_->FollowJob("job-1", 9, Collect(), options_);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(s.message(), kStreamEndedEarly);
  EXPECT_THAT(jobs_.watches(), ElementsAre(9));
  EXPECT_THAT(sleeps_, ::testing::IsEmpty());
}

TEST_F(FollowJobTest, CoresAnswersAreFinal) {
  jobs_.Then(2, kBroken);
  jobs_.Then(0, grpc::Status(grpc::StatusCode::NOT_FOUND, "no job job-1"));
  absl::Status s = client_->FollowJob("job-1", 0, Collect(), options_);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_THAT(jobs_.watches(), ElementsAre(0, 2));
  EXPECT_THAT(seen_, ElementsAre(0, 1));
}

TEST_F(FollowJobTest, GivesUpAfterItsPatience) {
  jobs_.Then(1, kBroken);
  for (int i = 0; i < 20; ++i) jobs_.Then(0, kBroken);
  options_.patience = absl::Seconds(5);
  const absl::Time start = clock_.Now();
  absl::Status s = client_->FollowJob("job-1", 0, Collect(), options_);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("connection reset"));
  // Waits double up to max_backoff: 0.2 + 0.4 + 0.8 + 1.6 + 2 = 5 s.
  EXPECT_THAT(sleeps_,
              ElementsAre(absl::Milliseconds(200), absl::Milliseconds(400),
                          absl::Milliseconds(800), absl::Milliseconds(1600),
                          absl::Seconds(2)));
  EXPECT_EQ(clock_.Now() - start, absl::Seconds(5));
  EXPECT_EQ(jobs_.watches().size(), 6u);
  EXPECT_THAT(seen_, ElementsAre(0));
}

TEST_F(FollowJobTest, GivesUpAfterMaxAttempts) {
  jobs_.Then(1, kBroken);
  for (int i = 0; i < 20; ++i) jobs_.Then(0, kBroken);
  options_.max_attempts = 2;
  absl::Status s = client_->FollowJob("job-1", 0, Collect(), options_);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(jobs_.watches(), ElementsAre(0, 1, 1));
}

TEST_F(FollowJobTest, CleanEndsUntilThePatienceRunsOutSaySo) {
  jobs_.Then(1, grpc::Status::OK);
  for (int i = 0; i < 20; ++i) jobs_.Then(0, grpc::Status::OK);
  options_.max_attempts = 3;
  absl::Status s = client_->FollowJob("job-1", 0, Collect(), options_);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_EQ(s.message(), kStreamEndedEarly);
  EXPECT_EQ(jobs_.watches().size(), 4u);
}

// A watcher that fell behind gets an output_gap standing for the output
// events it missed; after a broken stream the watch resumes after the
// gap's own sequence, not after its first one.
TEST_F(FollowJobTest, GapsArePassedOnAndResumedAfter) {
  JobEvents e;
  std::vector<JobEvent> log = {e.Accepted({"web-1"}), e.Started("web-1")};
  log.push_back(
      e.Gap(3, {varan::testing::Missed("web-1", varan::v1::OUTPUT_STREAM_STDOUT,
                                       0, 3 << 20)}));  // sequences 2..4
  log.push_back(e.Stdout("web-1", "z"));
  log.push_back(e.Finished("web-1", Exited(0)));
  log.push_back(e.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  jobs_.SetLog(log);
  jobs_.Then(3, kBroken);  // accepted, started, the gap; then it breaks
  std::vector<JobEvent> events;
  EXPECT_TRUE(client_
                  ->FollowJob(
                      "job-1", 0,
                      [&](const JobEvent& ev) { events.push_back(ev); },
                      options_)
                  .ok());
  EXPECT_THAT(jobs_.watches(), ElementsAre(0, 5));
  ASSERT_EQ(events.size(), 6u);
  ASSERT_TRUE(events[2].has_output_gap());
  EXPECT_EQ(events[2].output_gap().first_sequence(), 2u);
  EXPECT_EQ(events[2].output_gap().missed(0).bytes(), 3u << 20);
  EXPECT_EQ(events[3].sequence(), 5u);
  EXPECT_EQ(events[3].output().data(), "z");
  EXPECT_THAT(resumed_, ElementsAre("job-1@5"));
}

// Core was killed while the job ran: the restarted core's log has a gap
// (without `missed`) where its output events were, repeats bytes this
// watcher got, and jumps over bytes written while it was down. After the
// resume, repeated bytes are cut, and what core stored in between and
// after the last byte streamed is read back, in order, before the events
// that follow it; what is stored nowhere is an explicit gap.
TEST_F(FollowJobTest, AfterAResumeOutputContinuesWhereItStopped) {
  JobEvents e;
  std::vector<JobEvent> log = {e.Accepted({"web-1"}), e.Started("web-1"),
                               e.Stdout("web-1", "ab")};
  log.push_back(e.Gap(3, {}));  // sequences 3..5: the restart
  log.push_back(e.OutputAt("web-1", kOut, 1, "bcd"));  // 6
  log.push_back(e.OutputAt("web-1", kOut, 8, "ij"));   // 7
  log.push_back(e.Finished("web-1", Exited(0)));       // 8
  log.push_back(e.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  jobs_.SetLog(log);
  jobs_.Store("web-1", kOut, 0, "abcdef");
  jobs_.Store("web-1", kOut, 8, "ijk");
  jobs_.Store("web-1", kErr, 0, "oops");
  jobs_.Then(3, kBroken);  // accepted, started, "ab"; then it breaks
  const std::vector<std::string> events = Shown(0);
  EXPECT_THAT(events, ElementsAre("0 other", "1 other",
                                  "2 web-1 OUTPUT_STREAM_STDOUT@0 ab", "5 gap",
                                  "6 web-1 OUTPUT_STREAM_STDOUT@2 cd",
                                  "7 web-1 OUTPUT_STREAM_STDOUT@4 ef",
                                  "7 gap web-1 OUTPUT_STREAM_STDOUT@6+2",
                                  "7 web-1 OUTPUT_STREAM_STDOUT@8 ij",
                                  "8 web-1 OUTPUT_STREAM_STDOUT@10 k",
                                  "8 web-1 OUTPUT_STREAM_STDERR@0 oops",
                                  "8 finished", "9 job_finished"));
  EXPECT_THAT(jobs_.reads(),
              ElementsAre("web-1 OUTPUT_STREAM_STDOUT@4",
                          "web-1 OUTPUT_STREAM_STDOUT@10 follow",
                          "web-1 OUTPUT_STREAM_STDERR@0 follow"));
}

// A stream that never broke reads nothing back: output core streams with
// a jump (bytes it never received) is passed on as it came.
TEST_F(FollowJobTest, AnUnbrokenStreamReadsNothingBack) {
  JobEvents e;
  std::vector<JobEvent> log = {e.Accepted({"web-1"}), e.Started("web-1"),
                               e.Stdout("web-1", "ab")};
  log.push_back(e.OutputAt("web-1", kOut, 5, "fg"));
  log.push_back(e.Finished("web-1", Exited(0)));
  log.push_back(e.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  jobs_.SetLog(log);
  jobs_.Store("web-1", kOut, 0, "abcdefg");
  const std::vector<std::string> events = Shown(0);
  EXPECT_THAT(events, ElementsAre("0 other", "1 other",
                                  "2 web-1 OUTPUT_STREAM_STDOUT@0 ab",
                                  "3 web-1 OUTPUT_STREAM_STDOUT@5 fg",
                                  "4 finished", "5 job_finished"));
  EXPECT_THAT(jobs_.reads(), ::testing::IsEmpty());
}

// Watching a finished job from the start: core replays its stored log, in
// which output events are gaps without `missed`; each target's stored
// output is read back before its `finished` event. Watching from a later
// sequence does not know where the streams were, and reads nothing.
TEST_F(FollowJobTest, AStoredLogGetsItsOutputReadBackFromTheStart) {
  JobEvents e;
  std::vector<JobEvent> log = {e.Accepted({"web-1"}), e.Started("web-1")};
  log.push_back(e.Gap(2, {}));  // sequences 2..3: output events
  log.push_back(e.Finished("web-1", Exited(0)));  // 4
  log.push_back(e.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  jobs_.SetLog(log);
  jobs_.Store("web-1", kOut, 0, "hello\n");
  EXPECT_THAT(Shown(0), ElementsAre("0 other", "1 other", "3 gap",
                                    "4 web-1 OUTPUT_STREAM_STDOUT@0 hello\n",
                                    "4 finished", "5 job_finished"));
  EXPECT_THAT(Shown(2), ElementsAre("3 gap", "4 finished", "5 job_finished"));
  EXPECT_THAT(jobs_.reads(),
              ElementsAre("web-1 OUTPUT_STREAM_STDOUT@0 follow",
                          "web-1 OUTPUT_STREAM_STDERR@0 follow"));
}

// Several core addresses: a core that does not answer is passed over, the
// next one that does serves the call and is used from then on.
TEST_F(FollowJobTest, SeveralAddressesGoToACoreThatAnswers) {
  const std::string dead = absl::StrCat("[::1]:", varan::testing::FreePort());
  ClientOptions options;
  options.address = absl::StrCat(dead, ", ", client_->address());
  options.token = "t";
  auto several = CoreClient::Create(options);
  ASSERT_TRUE(several.ok()) << several.status();
  std::vector<uint64_t> seen;
  EXPECT_TRUE((*several)
                  ->FollowJob(
                      "job-1", 0,
                      [&](const JobEvent& e) { seen.push_back(e.sequence()); },
                      options_)
                  .ok());
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_EQ((*several)->address(), client_->address());

  // None answers: the call fails there, naming the core.
  options.address = absl::StrCat(dead, ",[::1]:", varan::testing::FreePort());
  auto none = CoreClient::Create(options);
  ASSERT_TRUE(none.ok()) << none.status();
  const absl::Status s = (*none)->WatchJob("job-1", 0, [](const JobEvent&) {});
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(),
              HasSubstr(absl::StrCat("cannot reach core at ", dead)));
  // A malformed one of them is refused at once.
  options.address = absl::StrCat(client_->address(), ",[::1");
  EXPECT_EQ(CoreClient::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace varan::client
