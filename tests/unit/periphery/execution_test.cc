// Tests for periphery/exec/execution.h with real processes: exit statuses,
// output streams, environment, stdin, start failures, timeouts, cancellation,
// output limits, large output, process-group clean-up and descriptor hygiene.
#include "periphery/exec/execution.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/scoped_env.h"

namespace varan::periphery {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
using varan::v1::CommandSpec;
using varan::v1::ExecuteEvent;
using varan::v1::ExitStatus;

// Longest any single command may take to deliver all its events.
constexpr absl::Duration kMaxWait = absl::Seconds(10);

// What one execution delivered.
struct Result {
  std::vector<ExecuteEvent> events;  // every event, output included
  std::string out;
  std::string err;
  int pid = 0;
  bool exited = false;
  ExitStatus exit;
  absl::Duration elapsed;
};

using ::varan::testing::ScopedEnv;

// 64-bit FNV-1a, continued over several pieces.
uint64_t Fnv1a(uint64_t hash, const char* data, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}
constexpr uint64_t kFnvOffset = 14695981039346656037ull;

class ExecutionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Orphans of the commands (background children whose shell died) are
    // re-parented to us rather than to an init that may never reap them, so
    // a dead process group really disappears once we reap it.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
  }

  void SetUp() override {
    char tmpl[] = "/tmp/varan-exec-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = std::filesystem::canonical(tmpl).string();
    options_.kill_grace = absl::Milliseconds(300);
    options_.default_working_dir = dir_;
  }

  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static CommandSpec Argv(std::vector<std::string> argv) {
    CommandSpec spec;
    for (auto& a : argv) spec.add_argv(a);
    return spec;
  }
  static CommandSpec Shell(const std::string& command) {
    CommandSpec spec;
    spec.set_shell(command);
    return spec;
  }

  // Pops every event of `execution` until the queue is drained (or `stop`
  // returns true after a visit), passing each to `visit`. Waits on the
  // queue's ready callback, never polls. Fails the test (and abandons the
  // queue) after kMaxWait.
  static bool Drain(Execution& execution,
                    const std::function<void(const ExecuteEvent&)>& visit,
                    const std::function<bool()>& stop = nullptr) {
    struct Signal {
      absl::Mutex mu;
      bool ready ABSL_GUARDED_BY(mu) = false;
    };
    auto signal = std::make_shared<Signal>();
    const absl::Time deadline = absl::Now() + kMaxWait;
    while (true) {
      {
        absl::MutexLock lock(&signal->mu);
        signal->ready = false;
      }
      ExecuteEvent ev;
      EventQueue::PopResult r = execution.events().TryPop(&ev, [signal] {
        absl::MutexLock lock(&signal->mu);
        signal->ready = true;
      });
      if (r == EventQueue::PopResult::kItem) {
        visit(ev);
        if (stop && stop()) return true;
        continue;
      }
      if (r == EventQueue::PopResult::kDrained) return true;
      bool ready = false;
      {
        absl::MutexLock lock(&signal->mu);
        ready = signal->mu.AwaitWithDeadline(absl::Condition(&signal->ready),
                                             deadline);
      }
      if (!ready) {
        execution.events().Abandon();
        ADD_FAILURE() << "the execution did not finish within " << kMaxWait;
        return false;
      }
    }
  }

  // Runs `spec` to the end, checking the invariants every execution keeps:
  // `started` first (unless the start failed), per-stream chunk sequences
  // 0, 1, 2, ... and exactly one `exited`, last. `on_event` (optional) sees
  // each event as it arrives.
  Result Run(
      const CommandSpec& spec,
      std::function<void(Execution&, const ExecuteEvent&)> on_event = nullptr) {
    Result result;
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<Execution>> execution =
        Execution::Start(spec, options_);
    if (!execution.ok()) {
      ADD_FAILURE() << execution.status();
      return result;
    }
    std::array<uint64_t, 3> next_sequence = {0, 0, 0};
    Drain(**execution, [&](const ExecuteEvent& ev) {
      EXPECT_FALSE(result.exited) << "event after exited: " << ev.DebugString();
      if (ev.has_started()) {
        EXPECT_TRUE(result.events.empty()) << "started is not first";
        result.pid = ev.started().pid();
      } else if (ev.has_output()) {
        EXPECT_NE(result.pid, 0) << "output before started";
        const auto& chunk = ev.output();
        const size_t stream = static_cast<size_t>(chunk.stream());
        EXPECT_TRUE(stream == 1 || stream == 2) << chunk.stream();
        EXPECT_EQ(chunk.sequence(), next_sequence[stream]++)
            << "gap in stream " << stream;
        EXPECT_FALSE(chunk.data().empty());
        std::string& so_far = stream == 1 ? result.out : result.err;
        // Each chunk starts where the stream's previous one ended.
        EXPECT_EQ(chunk.offset(), so_far.size()) << "stream " << stream;
        so_far += chunk.data();
      } else if (ev.has_exited()) {
        result.exited = true;
        result.exit = ev.exited();
      } else {
        ADD_FAILURE() << "empty event";
      }
      result.events.push_back(ev);
      if (on_event) on_event(**execution, ev);
    });
    result.elapsed = absl::Now() - start;
    EXPECT_TRUE(result.exited) << "no exited event";
    if (result.exit.kind() != ExitStatus::KIND_START_FAILED) {
      EXPECT_GT(result.pid, 0) << "no started event";
    }
    return result;
  }

  // Waits until no process of group `pgid` exists, for at most 5 s; on
  // failure kills the group. With `reap_orphans`, reaps the group's dead
  // orphans re-parented to us; only once the execution reaped its own pid.
  static void ExpectGroupGone(pid_t pgid, bool reap_orphans = true) {
    ASSERT_GT(pgid, 0);
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (true) {
      while (reap_orphans && waitpid(-pgid, nullptr, WNOHANG) > 0) {
      }
      if (kill(-pgid, 0) != 0 && errno == ESRCH) return;
      if (absl::Now() > deadline) break;
      absl::SleepFor(absl::Milliseconds(10));  // a real process is exiting
    }
    ADD_FAILURE() << "process group " << pgid << " still has processes";
    kill(-pgid, SIGKILL);
    while (waitpid(-pgid, nullptr, 0) > 0) {
    }
  }

  std::string dir_;
  ExecutionOptions options_;
};

TEST_F(ExecutionTest, TrueExitsZeroAfterAStartedEvent) {
  Result r = Run(Argv({"true"}));
  ASSERT_EQ(r.events.size(), 2u);
  ASSERT_TRUE(r.events[0].has_started());
  EXPECT_GT(r.events[0].started().pid(), 0);
  EXPECT_GT(r.events[0].started().start_time().seconds(), 0);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.exit.code(), 0);
  EXPECT_EQ(r.exit.signal(), 0);
  EXPECT_EQ(r.exit.error(), "");
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_GE(FromDuration(r.exit.duration()), absl::ZeroDuration());
}

TEST_F(ExecutionTest, ExitCodeIsReported) {
  for (int code : {0, 1, 3, 255}) {
    SCOPED_TRACE(code);
    Result r = Run(Argv({"sh", "-c", "exit " + std::to_string(code)}));
    EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
    EXPECT_EQ(r.exit.code(), code);
  }
}

TEST_F(ExecutionTest, StdoutAndStderrAreSeparate) {
  Result r = Run(Shell("echo out; echo err >&2; printf 'out2'"));
  EXPECT_EQ(r.out, "out\nout2");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit.code(), 0);
}

TEST_F(ExecutionTest, ManyChunksKeepTheirOrderPerStream) {
  Result r =
      Run(Shell("i=0; while [ $i -lt 500 ]; do echo out $i; echo err $i >&2; "
                "i=$((i+1)); done"));
  std::string want_out, want_err;
  for (int i = 0; i < 500; ++i) {
    want_out += "out " + std::to_string(i) + "\n";
    want_err += "err " + std::to_string(i) + "\n";
  }
  EXPECT_EQ(r.out, want_out);
  EXPECT_EQ(r.err, want_err);
}

TEST_F(ExecutionTest, EnvironmentIsInheritedWithOverrides) {
  ScopedEnv inherited("VARAN_EXEC_TEST_INHERITED", "from-parent");
  ScopedEnv overridden("VARAN_EXEC_TEST_OVERRIDE", "old");
  CommandSpec spec = Argv({"env"});
  (*spec.mutable_env())["VARAN_EXEC_TEST_OVERRIDE"] = "new";
  (*spec.mutable_env())["VARAN_EXEC_TEST_ADDED"] = "a b=c";
  Result r = Run(spec);
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  EXPECT_THAT(lines, Contains("VARAN_EXEC_TEST_INHERITED=from-parent"));
  EXPECT_THAT(lines, Contains("VARAN_EXEC_TEST_OVERRIDE=new"));
  EXPECT_THAT(lines, Not(Contains("VARAN_EXEC_TEST_OVERRIDE=old")));
  EXPECT_THAT(lines, Contains("VARAN_EXEC_TEST_ADDED=a b=c"));
}

TEST_F(ExecutionTest, CleanEnvHasOnlyTheOverrides) {
  ScopedEnv inherited("VARAN_EXEC_TEST_INHERITED", "from-parent");
  CommandSpec spec = Argv({"env"});
  spec.set_clean_env(true);
  (*spec.mutable_env())["ONLY"] = "1";
  (*spec.mutable_env())["ALSO"] = "2";
  Result r = Run(spec);
  EXPECT_EQ(r.exit.code(), 0) << r.err;
  std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, UnorderedElementsAre("ONLY=1", "ALSO=2"));
}

TEST_F(ExecutionTest, WorkingDirectoryIsRespected) {
  const std::string sub = dir_ + "/sub";
  std::filesystem::create_directory(sub);
  CommandSpec spec = Argv({"pwd"});
  spec.set_working_dir(sub);
  EXPECT_EQ(Run(spec).out, sub + "\n");
  // Without one, the configured default is used.
  EXPECT_EQ(Run(Argv({"pwd"})).out, dir_ + "\n");
}

TEST_F(ExecutionTest, StdinBytesAreFedThenClosed) {
  CommandSpec spec = Argv({"cat"});
  spec.set_stdin(std::string("hello\nworld\0!", 13));
  Result r = Run(spec);
  EXPECT_EQ(r.out, std::string("hello\nworld\0!", 13));
  EXPECT_EQ(r.exit.code(), 0);
}

TEST_F(ExecutionTest, LargeStdinIsEchoedWhileOutputIsRead) {
  // Much more than a pipe buffer each way: stdin must be fed while stdout is
  // drained, or both sides block.
  std::string input(4 * 1024 * 1024, '\0');
  for (size_t i = 0; i < input.size(); ++i) {
    input[i] = static_cast<char>((i * 131) >> 3);
  }
  CommandSpec spec = Argv({"cat"});
  spec.set_stdin(input);
  Result r = Run(spec);
  EXPECT_EQ(r.out.size(), input.size());
  EXPECT_TRUE(r.out == input);
}

TEST_F(ExecutionTest, CommandThatIgnoresItsStdinDoesNotHurtTheSupervisor) {
  // `true` exits without reading: writing the rest of stdin hits a closed
  // pipe. That must end the stdin feed, not the process hosting it
  // (SIGPIPE is not ignored in this test binary).
  CommandSpec spec = Argv({"true"});
  spec.set_stdin(std::string(1024 * 1024, 'x'));
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.exit.code(), 0);
}

TEST_F(ExecutionTest, WithoutStdinTheCommandReadsEndOfFile) {
  Result r = Run(Argv({"cat"}));
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.out, "");
}

TEST_F(ExecutionTest, StartFailuresArriveAsStartFailed) {
  const std::string not_executable = dir_ + "/script.sh";
  std::ofstream(not_executable) << "#!/bin/sh\necho hi\n";
  ASSERT_EQ(chmod(not_executable.c_str(), 0644), 0);
  const std::string a_file = dir_ + "/file";
  std::ofstream(a_file) << "x";

  struct Case {
    std::string label;
    CommandSpec spec;
    std::vector<std::string> message_parts;
  };
  std::vector<Case> cases = {
      {"absolute path",
       Argv({"/nonexistent/varan-nope"}),
       {"/nonexistent/varan-nope", "No such file or directory"}},
      {"PATH lookup",
       Argv({"varan-no-such-program"}),
       {"varan-no-such-program", "No such file or directory"}},
      {"not executable",
       Argv({not_executable}),
       {not_executable, "Permission denied"}},
      {"missing working dir",
       Argv({"true"}),
       {"/nonexistent/varan-dir", "No such file or directory"}},
      {"working dir is a file", Argv({"true"}), {a_file, "Not a directory"}},
  };
  cases[3].spec.set_working_dir("/nonexistent/varan-dir");
  cases[4].spec.set_working_dir(a_file);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    Result r = Run(c.spec);
    ASSERT_EQ(r.events.size(), 1u) << "expected only the exited event";
    EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_START_FAILED);
    for (const auto& part : c.message_parts) {
      EXPECT_THAT(r.exit.error(), HasSubstr(part));
    }
  }
}

TEST_F(ExecutionTest, KilledBySignalIsSignaled) {
  for (int sig : {SIGKILL, SIGTERM}) {
    SCOPED_TRACE(sig);
    Result r = Run(Shell("kill -" + std::to_string(sig) + " $$"));
    EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_SIGNALED);
    EXPECT_EQ(r.exit.signal(), sig);
  }
}

TEST_F(ExecutionTest, TimeoutStopsTheCommandQuickly) {
  CommandSpec spec = Argv({"sleep", "30"});
  spec.mutable_timeout()->set_nanos(300 * 1000 * 1000);
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_TIMED_OUT);
  EXPECT_EQ(r.exit.signal(), SIGTERM);
  EXPECT_GE(FromDuration(r.exit.duration()), absl::Milliseconds(300));
  EXPECT_LT(r.elapsed, absl::Seconds(5));
}

TEST_F(ExecutionTest, TimeoutEscalatesToSigkillAfterTheGrace) {
  // The shell and its sleep both ignore SIGTERM.
  CommandSpec spec = Shell("trap '' TERM; sleep 30");
  spec.mutable_timeout()->set_nanos(300 * 1000 * 1000);
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_TIMED_OUT);
  EXPECT_EQ(r.exit.signal(), SIGKILL);
  EXPECT_GE(FromDuration(r.exit.duration()),
            absl::Milliseconds(300) + options_.kill_grace);
  EXPECT_LT(r.elapsed, absl::Seconds(5));
}

TEST_F(ExecutionTest, TimeoutKillsTheWholeProcessTree) {
  CommandSpec spec = Shell("sleep 1000 & sleep 1000");
  spec.mutable_timeout()->set_nanos(300 * 1000 * 1000);
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_TIMED_OUT);
  EXPECT_LT(r.elapsed, absl::Seconds(5));
  ExpectGroupGone(r.pid);
}

TEST_F(ExecutionTest, BackgroundChildrenDoNotOutliveTheCommand) {
  Result r = Run(Shell("sleep 1000 & echo started"));
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.exit.code(), 0);
  EXPECT_EQ(r.out, "started\n");
  EXPECT_LT(r.elapsed, absl::Seconds(5));
  ExpectGroupGone(r.pid);
}

TEST_F(ExecutionTest, CancelStopsARunningCommand) {
  int cancels = 0;
  Result r = Run(Argv({"sleep", "30"}),
                 [&](Execution& execution, const ExecuteEvent& ev) {
                   if (!ev.has_started()) return;
                   // The pid leads its own process group.
                   EXPECT_EQ(getpgid(ev.started().pid()), ev.started().pid());
                   execution.Cancel();
                   execution.Cancel();  // idempotent
                   ++cancels;
                 });
  EXPECT_EQ(cancels, 1);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_CANCELED);
  EXPECT_EQ(r.exit.signal(), SIGTERM);
  EXPECT_LT(r.elapsed, absl::Seconds(5));
}

TEST_F(ExecutionTest, CancelRightAfterStartStillCancels) {
  absl::StatusOr<std::shared_ptr<Execution>> execution =
      Execution::Start(Argv({"sleep", "30"}), options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  (*execution)->Cancel();
  std::optional<ExitStatus> exit;
  const absl::Time start = absl::Now();
  ASSERT_TRUE(Drain(**execution, [&](const ExecuteEvent& ev) {
    if (ev.has_exited()) exit = ev.exited();
  }));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->kind(), ExitStatus::KIND_CANCELED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  (*execution)->Cancel();  // after the exit: no effect, no crash
}

TEST_F(ExecutionTest, OutputLimitDeliversExactlyTheLimit) {
  CommandSpec spec = Shell("head -c 100000 /dev/zero");
  spec.set_output_limit_bytes(1000);
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.exit.code(), 0);
  EXPECT_EQ(r.out, std::string(1000, '\0'));
  EXPECT_EQ(r.exit.stdout_dropped_bytes(), 99000u);
  EXPECT_EQ(r.exit.stderr_dropped_bytes(), 0u);
}

TEST_F(ExecutionTest, OutputLimitAppliesPerStream) {
  CommandSpec spec = Shell("head -c 5000 /dev/zero >&2; echo hi");
  spec.set_output_limit_bytes(1000);
  Result r = Run(spec);
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err.size(), 1000u);
  EXPECT_EQ(r.exit.stdout_dropped_bytes(), 0u);
  EXPECT_EQ(r.exit.stderr_dropped_bytes(), 4000u);
}

TEST_F(ExecutionTest, PastTheLimitTheCommandRunsOn) {
  // The command goes on after its output is cut: it still reaches its end.
  CommandSpec spec = Shell("head -c 100000 /dev/zero; echo finished >&2");
  spec.set_output_limit_bytes(1000);
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(r.err, "finished\n");
}

TEST_F(ExecutionTest, StopAtOutputLimitStopsTheCommand) {
  // `yes` never ends by itself.
  CommandSpec spec = Argv({"yes"});
  spec.set_output_limit_bytes(1000);
  spec.set_stop_at_output_limit(true);
  Result r = Run(spec);
  EXPECT_EQ(r.exit.kind(), ExitStatus::KIND_OUTPUT_LIMIT);
  EXPECT_EQ(r.out.size(), 1000u);
  EXPECT_GT(r.exit.stdout_dropped_bytes(), 0u);
  EXPECT_LT(r.elapsed, absl::Seconds(5));
}

TEST_F(ExecutionTest, CallerGoneStopsTheCommandUnlessAskedToSurvive) {
  for (bool survive : {false, true}) {
    SCOPED_TRACE(survive ? "survive" : "default");
    const std::string marker = dir_ + (survive ? "/survived" : "/default");
    CommandSpec spec = Shell("sleep 0.5; touch " + marker);
    spec.set_survive_caller(survive);
    auto execution = Execution::Start(spec, options_);
    ASSERT_TRUE(execution.ok()) << execution.status();
    std::weak_ptr<Execution> weak = *execution;
    // The consumer leaves as a gRPC reactor does when its call ends.
    (*execution)->CallerGone();
    (*execution)->events().Abandon();
    execution->reset();
    // The supervisor keeps the execution alive until the command is gone.
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (!weak.expired() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_TRUE(weak.expired());
    EXPECT_EQ(access(marker.c_str(), F_OK) == 0, survive);
  }
}

TEST_F(ExecutionTest, SlowConsumerKeepsMemoryFlat) {
#ifdef VARAN_SANITIZED
  GTEST_SKIP()
      << "RSS is not meaningful under a sanitizer's allocator "
         "(quarantine keeps freed memory); measured in the normal build";
#endif
  // An endless producer and a consumer that takes one event every 10 ms:
  // without back-pressure this would queue hundreds of MB per second.
  auto rss_kb = [] {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    }
    return 0L;
  };
  options_.queue_bytes = 1024 * 1024;
  auto execution = Execution::Start(Argv({"cat", "/dev/zero"}), options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  const long before = rss_kb();
  uint64_t received = 0;
  const absl::Time until = absl::Now() + absl::Seconds(1);
  while (absl::Now() < until) {
    ExecuteEvent ev;
    if ((*execution)->events().TryPop(&ev, nullptr) ==
        EventQueue::PopResult::kItem) {
      received += ev.output().data().size();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  const long grown_kb = rss_kb() - before;
  EXPECT_GT(received, 0u);
  EXPECT_LT(grown_kb, 16 * 1024) << "RSS grew by " << grown_kb << " KiB";
  (*execution)->Cancel();
  Drain(**execution, [](const ExecuteEvent&) {});
}

TEST_F(ExecutionTest, TimeoutFiresEvenWhileNobodyReads) {
  // The consumer reads nothing for two seconds: the supervisor is blocked on
  // back-pressure, yet the 300 ms timeout must still stop the command.
  options_.queue_bytes = 64 * 1024;
  CommandSpec spec = Argv({"yes"});
  SetDuration(absl::Milliseconds(300), spec.mutable_timeout());
  auto execution = Execution::Start(spec, options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  absl::SleepFor(absl::Seconds(2));
  std::optional<ExitStatus> exit;
  ASSERT_TRUE(Drain(**execution, [&](const ExecuteEvent& ev) {
    if (ev.has_exited()) exit = ev.exited();
  }));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->kind(), ExitStatus::KIND_TIMED_OUT);
  // The process ended long before the reader came back.
  EXPECT_LT(FromDuration(exit->duration()), absl::Milliseconds(1500));
}

TEST_F(ExecutionTest, CancelWorksWhileNobodyReads) {
  options_.queue_bytes = 64 * 1024;
  auto execution = Execution::Start(Argv({"yes"}), options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  absl::SleepFor(absl::Milliseconds(300));  // let the queue fill up
  (*execution)->Cancel();
  absl::SleepFor(absl::Seconds(1));
  std::optional<ExitStatus> exit;
  ASSERT_TRUE(Drain(**execution, [&](const ExecuteEvent& ev) {
    if (ev.has_exited()) exit = ev.exited();
  }));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->kind(), ExitStatus::KIND_CANCELED);
  EXPECT_LT(FromDuration(exit->duration()), absl::Milliseconds(1200));
}

TEST_F(ExecutionTest, HundredMegabytesArriveByteExact) {
  constexpr size_t kSize = 100 * 1024 * 1024;
  const std::string path = dir_ + "/big.bin";
  uint64_t want_hash = kFnvOffset;
  {
    // Deterministic pseudo-random content (splitmix64).
    std::ofstream out(path, std::ios::binary);
    std::vector<char> block(1024 * 1024);
    uint64_t state = 42;
    for (size_t written = 0; written < kSize; written += block.size()) {
      for (size_t i = 0; i < block.size(); i += 8) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (size_t b = 0; b < 8; ++b) {
          block[i + b] = static_cast<char>(z >> (8 * b));
        }
      }
      want_hash = Fnv1a(want_hash, block.data(), block.size());
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    ASSERT_TRUE(out.good());
  }

  absl::StatusOr<std::shared_ptr<Execution>> execution =
      Execution::Start(Argv({"cat", path}), options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  uint64_t got_hash = kFnvOffset;
  uint64_t got_size = 0;
  uint64_t next_sequence = 0;
  uint64_t sequence_errors = 0;
  std::optional<ExitStatus> exit;
  ASSERT_TRUE(Drain(**execution, [&](const ExecuteEvent& ev) {
    if (ev.has_output()) {
      ASSERT_EQ(ev.output().stream(), varan::v1::OUTPUT_STREAM_STDOUT);
      if (ev.output().sequence() != next_sequence) ++sequence_errors;
      ++next_sequence;
      const std::string& data = ev.output().data();
      ASSERT_LE(data.size(), options_.max_chunk_bytes);
      got_hash = Fnv1a(got_hash, data.data(), data.size());
      got_size += data.size();
    } else if (ev.has_exited()) {
      exit = ev.exited();
    }
  }));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(exit->code(), 0);
  EXPECT_EQ(got_size, kSize);
  EXPECT_EQ(got_hash, want_hash);
  EXPECT_EQ(sequence_errors, 0u);
  EXPECT_GE(next_sequence, kSize / options_.max_chunk_bytes);
}

TEST_F(ExecutionTest, NoDescriptorsLeakIntoTheCommand) {
  // A descriptor without O_CLOEXEC that a careless spawn would pass on.
  const int leak = open("/dev/null", O_RDONLY);
  ASSERT_GE(leak, 3);
  Result r = Run(Shell("ls /proc/self/fd"));
  close(leak);
  std::vector<std::string> fds = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  // 0-2 plus the directory ls itself opened.
  EXPECT_THAT(fds, UnorderedElementsAre("0", "1", "2", "3"));
}

TEST_F(ExecutionTest, ConsumerGoingAwayStopsTheCommand) {
  absl::StatusOr<std::shared_ptr<Execution>> execution =
      Execution::Start(Argv({"yes"}), options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  pid_t pid = 0;
  bool saw_output = false;
  // Take events until some output arrived, then walk away.
  ASSERT_TRUE(Drain(
      **execution,
      [&](const ExecuteEvent& ev) {
        if (ev.has_started()) pid = ev.started().pid();
        if (ev.has_output()) saw_output = true;
      },
      [&] { return saw_output; }));
  ASSERT_TRUE(saw_output);
  (*execution)->events().Abandon();
  // The execution reaps `yes` itself; reaping here would race with it.
  ExpectGroupGone(pid, /*reap_orphans=*/false);
}

TEST_F(ExecutionTest, InvalidSpecsAreRejectedBeforeStarting) {
  struct Case {
    std::string label;
    CommandSpec spec;
  };
  std::vector<Case> cases = {
      {"neither argv nor shell", CommandSpec()},
      {"both argv and shell", Argv({"true"})},
      {"empty argv[0]", Argv({""})},
      {"bad env name", Argv({"true"})},
      {"negative timeout", Argv({"true"})},
  };
  cases[1].spec.set_shell("true");
  (*cases[3].spec.mutable_env())["A=B"] = "x";
  cases[4].spec.mutable_timeout()->set_seconds(-1);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    absl::StatusOr<std::shared_ptr<Execution>> execution =
        Execution::Start(c.spec, options_);
    ASSERT_FALSE(execution.ok());
    EXPECT_EQ(execution.status().code(), absl::StatusCode::kInvalidArgument);
  }
  auto both = Execution::Start(cases[1].spec, options_);
  EXPECT_THAT(std::string(both.status().message()), HasSubstr("exactly one"));
}

}  // namespace
}  // namespace varan::periphery

namespace varan::periphery {
namespace {

TEST_F(ExecutionTest, OffsetsCountWhatIsKeptUnderTheOutputLimit) {
  CommandSpec spec = Shell(
      "head -c 300000 /dev/zero; head -c 5000 /dev/zero >&2; "
      "head -c 300000 /dev/zero");
  spec.set_output_limit_bytes(400000);
  // Run checks that every chunk's offset is the stream's bytes before it.
  Result r = Run(spec);
  EXPECT_EQ(r.out.size(), 400000u);
  EXPECT_EQ(r.err.size(), 5000u);
  EXPECT_EQ(r.exit.stdout_dropped_bytes(), 200000u);
}

TEST_F(ExecutionTest, AFastWriterIsReadInBigChunks) {
  constexpr size_t kSize = 8 * 1024 * 1024;
  options_.queue_bytes = 1024 * 1024;
  auto execution = Execution::Start(
      Shell("head -c " + std::to_string(kSize) + " /dev/zero"), options_);
  ASSERT_TRUE(execution.ok()) << execution.status();
  // Let the (enlarged) pipe and the queue fill before reading.
  absl::SleepFor(absl::Milliseconds(300));
  uint64_t total = 0, chunks = 0, largest = 0;
  ASSERT_TRUE(Drain(**execution, [&](const ExecuteEvent& ev) {
    if (!ev.has_output()) return;
    ++chunks;
    total += ev.output().data().size();
    largest = std::max<uint64_t>(largest, ev.output().data().size());
  }));
  EXPECT_EQ(total, kSize);
  // What had piled up is read in reads of the full chunk size, not 64 KiB
  // (how many chunks follow depends on how the reader and writer race).
  EXPECT_EQ(largest, options_.max_chunk_bytes)
      << chunks << " chunks of " << total / chunks << " bytes on average";
}

TEST_F(ExecutionTest, SlowOutputStreamsEachLineAtOnce) {
  std::vector<absl::Time> arrivals;
  std::vector<std::string> lines;
  Result r = Run(Shell("for i in 1 2 3; do echo line$i; sleep 0.4; done"),
                 [&](Execution&, const ExecuteEvent& ev) {
                   if (!ev.has_output()) return;
                   arrivals.push_back(absl::Now());
                   lines.push_back(ev.output().data());
                 });
  EXPECT_THAT(lines, ::testing::ElementsAre("line1\n", "line2\n", "line3\n"));
  ASSERT_EQ(arrivals.size(), 3u);
  // Each line came when printed, not once a big buffer filled.
  EXPECT_GE(arrivals[1] - arrivals[0], absl::Milliseconds(300));
  EXPECT_GE(arrivals[2] - arrivals[1], absl::Milliseconds(300));
}

TEST_F(ExecutionTest, OutputWindowStopsReadingUntilCredit) {
  constexpr uint64_t kWindow = 100000, kSize = 1000000;
  auto execution = Execution::Start(
      Shell("head -c " + std::to_string(kSize) + " /dev/zero"), options_,
      /*hold=*/false, kWindow);
  ASSERT_TRUE(execution.ok()) << execution.status();
  uint64_t received = 0;
  ASSERT_TRUE(Drain(
      **execution,
      [&](const ExecuteEvent& ev) {
        if (ev.has_output()) received += ev.output().data().size();
      },
      [&] { return received >= kWindow; }));
  EXPECT_EQ(received, kWindow);
  // Without credit nothing more is read, however long we wait.
  absl::SleepFor(absl::Milliseconds(300));
  ExecuteEvent ev;
  EXPECT_EQ((*execution)->events().TryPop(&ev, nullptr),
            EventQueue::PopResult::kEmpty);
  EXPECT_FALSE((*execution)->finished());
  (*execution)->AddCredit(kSize - kWindow);
  std::optional<ExitStatus> exit;
  ASSERT_TRUE(Drain(**execution, [&](const ExecuteEvent& e) {
    if (e.has_output()) received += e.output().data().size();
    if (e.has_exited()) exit = e.exited();
  }));
  EXPECT_EQ(received, kSize);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->kind(), ExitStatus::KIND_EXITED);
}

TEST_F(ExecutionTest, AHeldExecutionWhoseCallerWentIsNotHeldByItsWindow) {
  auto execution =
      Execution::Start(Shell("head -c 1000000 /dev/zero; echo end"), options_,
                       /*hold=*/true, /*output_window=*/1000);
  ASSERT_TRUE(execution.ok()) << execution.status();
  (*execution)->CallerGone();
  (*execution)->events().Abandon();
  const absl::Time deadline = absl::Now() + kMaxWait;
  while (!(*execution)->finished() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE((*execution)->finished());
  ExecutionOutcome outcome = (*execution)->outcome();
  EXPECT_EQ(outcome.exit.kind(), ExitStatus::KIND_EXITED);
  EXPECT_EQ(outcome.tail_offset[0] + outcome.tail[0].size(), 1000004u);
}

}  // namespace
}  // namespace varan::periphery
