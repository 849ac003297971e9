// Tests for periphery/exec/executor.h with real processes: admission, and
// executions held for core — surviving their caller, reported with their
// output tails, forgotten once acknowledged, bounded in number.
#include "periphery/exec/executor.h"

#include <ostream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::v1 {
// How gtest shows a report in a failure. Its own protobuf printer, inlined
// at -O3, trips a false -Werror=restrict inside std::string in GCC 12 (GCC
// bug 105329), which broke Release builds of this file.
void PrintTo(const ExecutionReport& report, std::ostream* os) {
  *os << report.ShortDebugString();
}
}  // namespace varan::v1

namespace varan::periphery {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

varan::v1::ExecuteRequest Request(const std::string& id,
                                  const std::string& shell, bool hold = true) {
  varan::v1::ExecuteRequest req;
  req.set_execution_id(id);
  req.mutable_spec()->set_shell(shell);
  req.set_hold_result(hold);
  return req;
}

// Waits until `e` finished.
void WaitFinished(const std::shared_ptr<Execution>& e) {
  for (int i = 0; i < 500 && !e->finished(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(e->finished());
}

TEST(ExecutorTest, AdmissionLimitsAndUniqueIds) {
  ExecutorOptions options;
  options.max_concurrent = 1;
  Executor executor(options);
  auto first = executor.Start(Request("a", "sleep 5"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = executor.Start(Request("b", "true"));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(executor.running(), 1u);
  ASSERT_TRUE(executor.Cancel("a").ok());
  EXPECT_EQ(executor.Cancel("nope").code(), absl::StatusCode::kNotFound);
  WaitFinished(*first);
  // A held, unacknowledged id cannot be started again.
  EXPECT_EQ(executor.Start(Request("a", "true")).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(ExecutorTest, HeldExecutionOutlivesItsCallerAndIsReportedWithItsTail) {
  ExecutorOptions options;
  options.execution.tail_bytes = 4;
  Executor executor(options);
  auto e = executor.Start(Request("job/p1", "echo one; sleep 0.3; echo two"));
  ASSERT_TRUE(e.ok());
  // The caller goes away at once, having read nothing.
  (*e)->CallerGone();
  (*e)->events().Abandon();
  executor.Detached("job/p1", /*delivered=*/false);
  auto reports = executor.Report();
  ASSERT_THAT(reports, SizeIs(1));
  EXPECT_FALSE(reports[0].has_exited());  // still running
  WaitFinished(*e);
  reports = executor.Report();
  ASSERT_THAT(reports, SizeIs(1));
  const auto& r = reports[0];
  EXPECT_EQ(r.execution_id(), "job/p1");
  ASSERT_TRUE(r.has_exited());
  EXPECT_EQ(r.exited().kind(), varan::v1::ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.exited().code(), 0);
  // The last 4 bytes of "one\ntwo\n", and where they start.
  EXPECT_EQ(r.stdout_tail().data(), "two\n");
  EXPECT_EQ(r.stdout_tail().offset(), 4u);
  EXPECT_TRUE(r.has_started());
  // Reported until acknowledged, then forgotten.
  EXPECT_THAT(executor.Report(), SizeIs(1));
  executor.Acknowledge({"job/p1"});
  EXPECT_THAT(executor.Report(), IsEmpty());
}

TEST(ExecutorTest, ExecutionNotHeldStopsWithItsCallerAndIsNotReported) {
  Executor executor(ExecutorOptions{});
  auto e = executor.Start(Request("x", "sleep 30", /*hold=*/false));
  ASSERT_TRUE(e.ok());
  (*e)->CallerGone();
  WaitFinished(*e);
  EXPECT_EQ((*e)->outcome().exit.kind(), varan::v1::ExitStatus::KIND_CANCELED);
  EXPECT_THAT(executor.Report(), IsEmpty());
}

TEST(ExecutorTest,
     ADeliveredResultIsReportedWithoutTailsAndHeldOnesAreBounded) {
  ExecutorOptions options;
  options.max_held = 2;
  Executor executor(options);
  std::vector<std::shared_ptr<Execution>> all;
  for (const char* id : {"j/1", "j/2", "j/3"}) {
    auto e = executor.Start(Request(id, "echo out"));
    ASSERT_TRUE(e.ok());
    WaitFinished(*e);
    executor.Detached(id, /*delivered=*/true);
    all.push_back(*e);
    absl::SleepFor(absl::Milliseconds(5));
  }
  auto reports = executor.Report();
  // The oldest was dropped (beyond max_held); the others carry no tails.
  ASSERT_THAT(reports, SizeIs(2));
  for (const auto& r : reports) {
    EXPECT_NE(r.execution_id(), "j/1");
    EXPECT_TRUE(r.has_exited());
    EXPECT_FALSE(r.has_stdout_tail());
  }
  // Core never got j/2's end (the call broke after it went out): asked, the
  // periphery reports it again with its tails.
  executor.ResendTails({"j/2", "j/unknown"});
  reports = executor.Report();
  ASSERT_THAT(reports, SizeIs(2));
  EXPECT_EQ(reports[0].execution_id(), "j/2");
  EXPECT_EQ(reports[0].stdout_tail().data(), "out\n");
  EXPECT_TRUE(reports[0].has_exited());
  EXPECT_FALSE(reports[1].has_stdout_tail());
}

}  // namespace
}  // namespace varan::periphery
