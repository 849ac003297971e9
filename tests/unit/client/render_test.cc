// Tests for client/cli/render.h: how varanctl shows a job's event stream
// (raw for one target, prefixed lines for several, --group, the progress
// line) and the exit code it turns the final results into.
#include "client/cli/render.h"

#include <signal.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/client/job_events.h"

namespace varan::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using varan::testing::Ended;
using varan::testing::Exited;
using varan::testing::JobEvents;
using varan::testing::Signaled;
using varan::v1::ExitStatus;
using varan::v1::JobState;
using varan::v1::TargetFinished;
using varan::v1::TargetState;

// A protobuf enum may carry a value this varanctl does not know (a newer
// core); the generated sentinels make sure it fits.
constexpr TargetState kNewerTargetState = static_cast<TargetState>(42);
constexpr JobState kNewerJobState = static_cast<JobState>(42);

struct ResultCase {
  std::string name;
  TargetFinished finished;
  int exit_code;
  std::string description;
  Outcome outcome;
};

std::vector<ResultCase> ResultCases() {
  TargetFinished output_limit =
      Ended(varan::v1::TARGET_STATE_FAILED, ExitStatus::KIND_OUTPUT_LIMIT);
  TargetFinished start_failed =
      Ended(varan::v1::TARGET_STATE_FAILED, ExitStatus::KIND_START_FAILED);
  start_failed.mutable_exit_status()->set_error("no such file: frob");
  return {
      {"Success", Exited(0), 0, "exit 0", Outcome::kSucceeded},
      {"NonzeroExit", Exited(3), 3, "exit 3", Outcome::kFailed},
      {"ExitCode255", Exited(255), 255, "exit 255", Outcome::kFailed},
      {"KilledBySignal", Signaled(SIGKILL), 128 + SIGKILL, "killed by signal 9",
       Outcome::kFailed},
      {"TerminatedBySignal", Signaled(SIGTERM), 128 + SIGTERM,
       "killed by signal 15", Outcome::kFailed},
      {"TimedOut",
       Ended(varan::v1::TARGET_STATE_TIMED_OUT, ExitStatus::KIND_TIMED_OUT),
       124, "timed out", Outcome::kFailed},
      {"Canceled",
       Ended(varan::v1::TARGET_STATE_CANCELED, ExitStatus::KIND_CANCELED,
             "by alice"),
       130, "canceled: by alice", Outcome::kCanceled},
      {"CanceledBeforeStart", Ended(varan::v1::TARGET_STATE_CANCELED), 130,
       "canceled", Outcome::kCanceled},
      {"Lost",
       Ended(varan::v1::TARGET_STATE_LOST, ExitStatus::KIND_UNSPECIFIED,
             "periphery went offline"),
       1, "lost: periphery went offline", Outcome::kFailed},
      {"FailedToReach",
       Ended(varan::v1::TARGET_STATE_FAILED, ExitStatus::KIND_UNSPECIFIED,
             "periphery is offline"),
       1, "failed: periphery is offline", Outcome::kFailed},
      {"CouldNotStart", start_failed, 127, "failed: no such file: frob",
       Outcome::kFailed},
      {"OutputLimit", output_limit, 1, "stopped: output passed the limit",
       Outcome::kFailed},
      {"Skipped",
       Ended(varan::v1::TARGET_STATE_SKIPPED, ExitStatus::KIND_UNSPECIFIED,
             "offline"),
       1, "skipped: offline", Outcome::kSkipped},
      {"NewerState", Ended(kNewerTargetState), 1, "unknown", Outcome::kFailed},
  };
}

class TargetResultTest : public ::testing::TestWithParam<ResultCase> {};

TEST_P(TargetResultTest, MapsToExitCodeDescriptionAndOutcome) {
  const ResultCase& c = GetParam();
  EXPECT_EQ(TargetExitCode(c.finished), c.exit_code);
  EXPECT_EQ(DescribeResult(c.finished), c.description);
  EXPECT_EQ(TargetOutcome(c.finished.state(), c.finished.exit_status()),
            c.outcome);
}

// The whole path a user sees: one target's events through the printer, and
// the exit code varanctl returns for them.
TEST_P(TargetResultTest, OneTargetExitsWithItsOwnCode) {
  const ResultCase& c = GetParam();
  std::ostringstream out, err;
  PrinterOptions options;
  options.out = &out;
  options.err = &err;
  JobPrinter printer(options);
  JobEvents events;
  printer.OnEvent(events.Accepted({"web-1"}));
  printer.OnEvent(events.Started("web-1"));
  printer.OnEvent(events.Finished("web-1", c.finished));
  printer.OnEvent(events.JobFinished(c.exit_code == 0
                                         ? varan::v1::JOB_STATE_SUCCEEDED
                                         : varan::v1::JOB_STATE_FAILED));
  ASSERT_TRUE(printer.finished());
  EXPECT_EQ(printer.Summarize(), c.exit_code);
  EXPECT_THAT(out.str(), IsEmpty());
  // A plain exit needs no words; anything else is said on stderr.
  if (c.finished.state() == varan::v1::TARGET_STATE_EXITED) {
    EXPECT_THAT(err.str(), IsEmpty());
  } else {
    EXPECT_EQ(err.str(), "varanctl: web-1: " + c.description + "\n");
  }
}

INSTANTIATE_TEST_SUITE_P(Results, TargetResultTest,
                         ::testing::ValuesIn(ResultCases()),
                         [](const ::testing::TestParamInfo<ResultCase>& param) {
                           return param.param.name;
                         });

TEST(JobExitCodeTest, OnlySucceededIsZero) {
  EXPECT_EQ(JobExitCode(varan::v1::JOB_STATE_SUCCEEDED), 0);
  EXPECT_EQ(JobExitCode(varan::v1::JOB_STATE_FAILED), 1);
  EXPECT_EQ(JobExitCode(varan::v1::JOB_STATE_CANCELED), 1);
  EXPECT_EQ(JobExitCode(varan::v1::JOB_STATE_RUNNING), 1);
  EXPECT_EQ(JobExitCode(kNewerJobState), 1);
}

// Options with one field changed.
PrinterOptions With(PrinterOptions::Prefix prefix) {
  PrinterOptions options;
  options.prefix = prefix;
  return options;
}
PrinterOptions With(bool PrinterOptions::*flag) {
  PrinterOptions options;
  options.*flag = true;
  return options;
}

class JobPrinterTest : public ::testing::Test {
 protected:
  JobPrinter Printer(PrinterOptions options = PrinterOptions()) {
    options.out = &out_;
    options.err = &err_;
    options.clock = &clock_;
    return JobPrinter(options);
  }

  std::ostringstream out_;
  std::ostringstream err_;
  FakeClock clock_;
  JobEvents events_;
};

TEST_F(JobPrinterTest, OneTargetIsRawAndByteExact) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"web-1"}));
  printer.OnEvent(events_.Started("web-1"));
  printer.OnEvent(events_.Stdout("web-1", "par"));
  printer.OnEvent(events_.Stdout("web-1", std::string("tial\0\xff", 6)));
  printer.OnEvent(events_.Stderr("web-1", "warn"));
  printer.OnEvent(events_.Finished("web-1", Exited(0)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(out_.str(), std::string("partial\0\xff", 9));
  EXPECT_EQ(err_.str(), "warn");
  EXPECT_EQ(printer.Summarize(), 0);
  EXPECT_EQ(err_.str(), "warn");
  EXPECT_EQ(printer.job_id(), "job-1");
  EXPECT_EQ(printer.next_sequence(), 7u);
}

TEST_F(JobPrinterTest, SeveralTargetsGetAlignedPrefixesPerLine) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a", "web-10"}));
  printer.OnEvent(events_.Stdout("a", "one\ntw"));
  printer.OnEvent(events_.Stdout("web-10", "x\n"));
  // A partial line waits for its newline...
  EXPECT_EQ(out_.str(), "a      | one\nweb-10 | x\n");
  printer.OnEvent(events_.Stdout("a", "o\nthree"));
  printer.OnEvent(events_.Stderr("web-10", "oops\n"));
  // ... or for the target's end.
  printer.OnEvent(events_.Finished("a", Exited(0)));
  printer.OnEvent(events_.Finished("web-10", Exited(2)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_FAILED));
  EXPECT_EQ(out_.str(),
            "a      | one\nweb-10 | x\na      | two\na      | three\n");
  EXPECT_EQ(printer.Summarize(), 1);
  EXPECT_EQ(err_.str(),
            "web-10 | oops\n"
            "1 of 2 succeeded; 1 failed:\n"
            "  web-10: exit 2\n");
}

TEST_F(JobPrinterTest, SeveralTargetsAllSucceededExitZero) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a", "b"}));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  printer.OnEvent(events_.Finished("b", Exited(0)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(printer.Summarize(), 0);
  EXPECT_EQ(err_.str(), "2 of 2 succeeded\n");
}

TEST_F(JobPrinterTest, SeveralTargetsCountEveryKindOfEnd) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a", "b", "c", "d", "e"}));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  printer.OnEvent(events_.Finished(
      "b", Ended(varan::v1::TARGET_STATE_LOST, ExitStatus::KIND_UNSPECIFIED,
                 "periphery went offline")));
  printer.OnEvent(events_.Finished(
      "c", Ended(varan::v1::TARGET_STATE_CANCELED, ExitStatus::KIND_CANCELED)));
  printer.OnEvent(
      events_.Finished("d", Ended(varan::v1::TARGET_STATE_SKIPPED,
                                  ExitStatus::KIND_UNSPECIFIED, "offline")));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_CANCELED));
  EXPECT_EQ(printer.Summarize(), 1);
  EXPECT_EQ(err_.str(),
            "1 of 5 succeeded; 1 failed; 1 canceled; 1 skipped; 1 without a "
            "result:\n"
            "  b: lost: periphery went offline\n"
            "  c: canceled\n"
            "  d: skipped: offline\n");
}

// Targets skip_offline skipped do not fail the job, so neither the command.
TEST_F(JobPrinterTest, JobStateDecidesForSeveralTargets) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a", "b"}));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  printer.OnEvent(
      events_.Finished("b", Ended(varan::v1::TARGET_STATE_SKIPPED,
                                  ExitStatus::KIND_UNSPECIFIED, "offline")));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(printer.Summarize(), 0);
}

TEST_F(JobPrinterTest, OneSkippedTargetTakesTheJobsCode) {
  for (auto [state, code] : {std::pair{varan::v1::JOB_STATE_SUCCEEDED, 0},
                             std::pair{varan::v1::JOB_STATE_FAILED, 1}}) {
    std::ostringstream err;
    PrinterOptions options;
    options.err = &err;
    JobPrinter printer(options);
    JobEvents events;
    printer.OnEvent(events.Accepted({"web-1"}));
    printer.OnEvent(events.Finished(
        "web-1", Ended(varan::v1::TARGET_STATE_SKIPPED,
                       ExitStatus::KIND_UNSPECIFIED, "offline")));
    printer.OnEvent(events.JobFinished(state));
    EXPECT_EQ(printer.Summarize(), code) << varan::v1::JobState_Name(state);
    EXPECT_EQ(err.str(), "varanctl: web-1: skipped: offline\n");
  }
}

TEST_F(JobPrinterTest, NoPrefixPrintsBareLinesForSeveral) {
  JobPrinter printer = Printer(With(PrinterOptions::Prefix::kNever));
  printer.OnEvent(events_.Accepted({"a", "b"}));
  printer.OnEvent(events_.Stdout("a", "one\ntwo"));
  printer.OnEvent(events_.Stdout("b", "three\n"));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  EXPECT_EQ(out_.str(), "one\nthree\ntwo\n");
}

TEST_F(JobPrinterTest, PrefixAlwaysPrefixesOneTarget) {
  JobPrinter printer = Printer(With(PrinterOptions::Prefix::kAlways));
  printer.OnEvent(events_.Accepted({"web-1"}));
  printer.OnEvent(events_.Stdout("web-1", "hi\n"));
  printer.OnEvent(events_.Stderr("web-1", "err"));
  printer.OnEvent(events_.Finished("web-1", Exited(0)));
  EXPECT_EQ(out_.str(), "web-1 | hi\n");
  EXPECT_EQ(err_.str(), "web-1 | err\n");
}

TEST_F(JobPrinterTest, ColoursPrefixesByPlaceInTheTargetList) {
  JobPrinter printer = Printer(With(&PrinterOptions::color_stdout));
  printer.OnEvent(events_.Accepted({"a", "bb"}));
  printer.OnEvent(events_.Stdout("bb", "x\n"));
  printer.OnEvent(events_.Stdout("a", "y\n"));
  printer.OnEvent(events_.Stderr("a", "z\n"));
  EXPECT_EQ(out_.str(), "\033[33mbb\033[0m | x\n\033[36ma\033[0m  | y\n");
  EXPECT_EQ(err_.str(), "a  | z\n");  // stderr is not a terminal here
}

TEST_F(JobPrinterTest, GroupPrintsIdenticalResultsOnceAtTheEnd) {
  JobPrinter printer = Printer(With(&PrinterOptions::group));
  printer.OnEvent(events_.Accepted({"a", "b", "c"}));
  for (const char* t : {"c", "a", "b"}) {
    printer.OnEvent(
        events_.Stdout(t, t == std::string("c") ? "12.0" : "11.8\n"));
  }
  printer.OnEvent(events_.Stderr("c", "old"));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  printer.OnEvent(events_.Finished("b", Exited(0)));
  printer.OnEvent(events_.Finished("c", Exited(1)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_FAILED));
  EXPECT_THAT(out_.str(), IsEmpty());  // nothing live
  EXPECT_EQ(printer.Summarize(), 1);
  EXPECT_EQ(out_.str(),
            "==== a, b (2) ====\n11.8\n"
            "==== c (1) ====\n12.0\n---- stderr ----\nold\n---- exit 1 ----\n");
  EXPECT_EQ(err_.str(), "2 of 3 succeeded; 1 failed:\n  c: exit 1\n");
}

TEST_F(JobPrinterTest, ProgressLineCountsAndIsClearedBeforeOutput) {
  JobPrinter printer = Printer(With(&PrinterOptions::progress));
  printer.OnEvent(events_.Accepted({"a", "b", "c"}));
  EXPECT_EQ(err_.str(), "\r\033[K[0/3] failed 0, running 0, 0.0s");
  err_.str("");
  clock_.Advance(absl::Milliseconds(1500));
  printer.OnEvent(events_.Started("a"));
  printer.OnEvent(events_.Started("b"));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  clock_.Advance(absl::Seconds(1));
  printer.OnEvent(events_.Finished("b", Exited(7)));
  EXPECT_THAT(err_.str(), HasSubstr("[0/3] failed 0, running 2, 1.5s"));
  EXPECT_THAT(err_.str(), HasSubstr("[1/3] failed 0, running 1, 1.5s"));
  EXPECT_THAT(err_.str(), HasSubstr("[2/3] failed 1, running 0, 2.5s"));
  // Output clears the line first, then it is drawn again.
  err_.str("");
  printer.OnEvent(events_.Stderr("c", "boom\n"));
  EXPECT_EQ(err_.str(),
            "\r\033[Kc | boom\n\r\033[K[2/3] failed 1, running 0, 2.5s");
  err_.str("");
  printer.OnEvent(events_.Finished("c", Exited(0)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_FAILED));
  // The end leaves no progress line behind.
  EXPECT_THAT(err_.str(), ::testing::EndsWith("\r\033[K"));
}

TEST_F(JobPrinterTest, NoProgressLineForOneTarget) {
  JobPrinter printer = Printer(With(&PrinterOptions::progress));
  printer.OnEvent(events_.Accepted({"a"}));
  printer.OnEvent(events_.Started("a"));
  EXPECT_THAT(err_.str(), IsEmpty());
}

TEST_F(JobPrinterTest, SaysWhoCanceledTheJob) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a"}));
  printer.OnEvent(events_.CancelRequested("alice"));
  printer.OnEvent(events_.CancelRequested(""));
  EXPECT_EQ(err_.str(),
            "varanctl: job canceled by alice\nvaranctl: job canceled\n");
}

TEST_F(JobPrinterTest, SaysWhatOutputCoreDidNotStore) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a"}));
  TargetFinished f = Exited(0);
  f.set_stdout_uncaptured_bytes(12'345'678);
  f.set_stderr_uncaptured_bytes(1);
  printer.OnEvent(events_.Finished("a", f));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(printer.Summarize(), 0);
  EXPECT_EQ(err_.str(),
            "varanctl: a: 12,345,678 bytes of stdout and 1 byte of stderr "
            "not stored by core (it keeps the head and tail of each "
            "stream)\n");
}

// A watcher that fell behind: the output it missed is named on stderr, the
// output around it stays byte-exact on stdout, and the exit code is still
// the command's.
TEST_F(JobPrinterTest, GapIsANoteOnStderrAndKeepsTheExitCode) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"web-1"}));
  printer.OnEvent(events_.Stdout("web-1", "abc"));
  printer.OnEvent(events_.Gap(
      4, {varan::testing::Missed("web-1", varan::v1::OUTPUT_STREAM_STDOUT, 3,
                                 12'345'678)}));
  EXPECT_EQ(printer.next_sequence(), 6u);  // after the gap's last sequence
  printer.OnEvent(events_.Stdout("web-1", "xyz"));
  printer.OnEvent(events_.Finished("web-1", Exited(3)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_FAILED));
  EXPECT_EQ(out_.str(), "abcxyz");
  EXPECT_EQ(err_.str(),
            "varanctl: web-1 stdout: ... 12,345,678 bytes not shown (bytes 3 "
            "to 12,345,680) ...; what core stored: varanctl jobs logs job-1 "
            "-t web-1\n");
  EXPECT_EQ(printer.Summarize(), 3);
}

TEST_F(JobPrinterTest, GapEndsPartialLinesAndNamesEachStream) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({"a", "b"}));
  printer.OnEvent(events_.Stdout("a", "one\npar"));
  printer.OnEvent(events_.Gap(
      3,
      {varan::testing::Missed("a", varan::v1::OUTPUT_STREAM_STDOUT, 7, 10),
       varan::testing::Missed("b", varan::v1::OUTPUT_STREAM_STDERR, 0, 5),
       varan::testing::Missed("a", varan::v1::OUTPUT_STREAM_STDOUT, 17, 10)}));
  printer.OnEvent(events_.Stdout("a", "two\n"));
  printer.OnEvent(events_.Finished("a", Exited(0)));
  printer.OnEvent(events_.Finished("b", Exited(0)));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  // The line cut by the gap is ended, not glued to what follows it.
  EXPECT_EQ(out_.str(), "a | one\na | par\na | two\n");
  EXPECT_THAT(err_.str(),
              HasSubstr("varanctl: a stdout: ... 20 bytes not shown (bytes 7 "
                        "to 26) ...; what core stored: varanctl jobs logs "
                        "job-1 -t a\n"));
  EXPECT_THAT(err_.str(),
              HasSubstr("varanctl: b stderr: ... 5 bytes not shown (bytes 0 "
                        "to 4) ...; what core stored: varanctl jobs logs "
                        "job-1 -t b --stderr\n"));
  EXPECT_EQ(printer.Summarize(), 0);
}

TEST(ByteCountTest, GroupsThousandsAndNamesUnits) {
  EXPECT_EQ(ByteCount(0), "0 bytes");
  EXPECT_EQ(ByteCount(1), "1 byte");
  EXPECT_EQ(ByteCount(999), "999 bytes");
  EXPECT_EQ(ByteCount(1000), "1,000 bytes");
  EXPECT_EQ(ByteCount(12'345'678), "12,345,678 bytes");
  EXPECT_EQ(HumanSize(3 << 20), "3 MiB");
  EXPECT_EQ(HumanSize(64 << 10), "64 KiB");
  EXPECT_EQ(HumanSize(uint64_t{1} << 30), "1 GiB");
  EXPECT_EQ(HumanSize(1000), "1,000 B");
  EXPECT_EQ(HumanSize((1 << 20) + 1), "1,048,577 B");
}

TEST_F(JobPrinterTest, NoTargetsRanNothing) {
  JobPrinter printer = Printer();
  printer.OnEvent(events_.Accepted({}));
  printer.OnEvent(events_.JobFinished(varan::v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(printer.Summarize(), 0);
  EXPECT_EQ(err_.str(), "varanctl: no periphery matched; nothing ran\n");
}

// A watch from a later sequence misses `accepted`: the results it saw are
// all it counts.
TEST_F(JobPrinterTest, WatchFromLaterSequenceCountsWhatItSaw) {
  JobPrinter printer = Printer();
  JobEvents events;
  events.Accepted({"a", "b"});  // sequence 0, not seen
  printer.OnEvent(events.Finished("b", Exited(4)));
  printer.OnEvent(events.JobFinished(varan::v1::JOB_STATE_FAILED));
  EXPECT_EQ(printer.next_sequence(), 3u);
  // One result seen: that target's own code.
  EXPECT_EQ(printer.Summarize(), 4);
  EXPECT_THAT(err_.str(), Not(HasSubstr("succeeded")));
}

}  // namespace
}  // namespace varan::cli
