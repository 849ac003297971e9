// One command run under supervision on the periphery.
//
// Execution::Start validates the spec, spawns the process in its own process
// group and starts a supervisor thread that:
//  * feeds stdin (if any) and reads stdout/stderr without blocking on either,
//    turning what it reads into ExecuteEvents (started, output..., exited)
//    pushed into the execution's BoundedQueue, so a slow consumer stops the
//    reading and thus the process (back-pressure) instead of growing memory;
//    with an output window (core's tunnel, see AddCredit) it also reads no
//    more output than the credit it was granted;
//  * numbers each output chunk (sequence) and gives its stream offset (the
//    bytes of the stream before it, after the spec's output limit, which is
//    also how the held outcome's tail_offset counts);
//  * on timeout, Cancel(), a caller that went away (unless the spec says
//    survive_caller) or output past the limit (if the spec says
//    stop_at_output_limit), sends SIGTERM to the whole process group, then
//    SIGKILL after `kill_grace`;
//  * when the command's main process exits, kills what is left of its
//    process group (background children) so nothing is left running, drains
//    the pipes, reaps, and pushes the `exited` event.
//
// Ownership: Start returns a shared_ptr because the supervisor thread and
// the consumer (a gRPC reactor) both hold it and either may finish first.
// All public methods are thread-safe.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/bounded_queue.h"
#include "varan/v1/periphery.pb.h"

namespace varan::periphery {

struct ExecutionOptions {
  // SIGTERM-to-SIGKILL grace period for timeouts and cancellation.
  absl::Duration kill_grace = absl::Seconds(5);
  // Largest single output chunk: a read takes what the pipe holds, up to
  // this, so slow output still goes out at once, line by line.
  size_t max_chunk_bytes = 256 * 1024;
  // Capacity asked for each output pipe (F_SETPIPE_SZ; the kernel's default
  // stays if refused).
  size_t pipe_bytes = 1024 * 1024;
  // Output bytes queued for the consumer before reading pauses.
  size_t queue_bytes = 1024 * 1024;
  // Working directory when the spec gives none.
  std::string default_working_dir = "/";
  // Held execution (see Execution::Start): the last bytes of each output
  // stream kept for the report of a command whose caller went away.
  size_t tail_bytes = 64 * 1024;
};

// What a held execution's result looks like once its caller is gone: how it
// started, how it ended and the last bytes of its output.
struct ExecutionOutcome {
  bool started = false;
  varan::v1::ExecuteStarted started_event;
  bool finished = false;
  varan::v1::ExitStatus exit;
  absl::Time finish_time;
  // [0] stdout, [1] stderr: the last tail_bytes of what was read (after the
  // spec's output limit), and the stream offset of the tail's first byte.
  std::string tail[2];
  uint64_t tail_offset[2] = {0, 0};
};

using EventQueue = BoundedQueue<varan::v1::ExecuteEvent>;

class Execution {
 public:
  // Checks `spec` (INVALID_ARGUMENT names the problem) and starts the
  // supervisor. Failures to start the process itself (no such file, bad
  // working directory) are not errors here: they arrive as an `exited`
  // event with KIND_START_FAILED.
  // `hold`: the command survives its caller going away (as with
  // spec.survive_caller) and its outcome, with output tails, is kept for
  // outcome() — core's commands are held so a broken link loses nothing.
  // `output_window`: when not zero, at most that many output bytes are read
  // (both streams together) until AddCredit grants more.
  static absl::StatusOr<std::shared_ptr<Execution>> Start(
      const varan::v1::CommandSpec& spec, const ExecutionOptions& options,
      bool hold = false, uint64_t output_window = 0);

  ~Execution();

  // The events, ending with exactly one `exited`.
  EventQueue& events() { return queue_; }

  // Stops the command (SIGTERM to its group, SIGKILL after the grace). The
  // result reports KIND_CANCELED. Idempotent; no effect once it exited.
  void Cancel();

  // The consumer of the events went away: Cancel(), unless the spec asked
  // the command to survive its caller or it is held (then its output is
  // discarded, apart from a held execution's tails, and the output window
  // no longer applies).
  void CallerGone();

  // The consumer took `bytes` more output off the window: reading resumes.
  // No effect without a window.
  void AddCredit(uint64_t bytes);

  // Held executions: started/finished state, exit status and output tails.
  ExecutionOutcome outcome() const;

  // True once the command has been reaped and its `exited` event queued.
  bool finished() const { return finished_.load(); }

  Execution(const Execution&) = delete;
  Execution& operator=(const Execution&) = delete;

 private:
  Execution(const varan::v1::CommandSpec& spec, const ExecutionOptions& options,
            bool hold, uint64_t output_window);
  void Supervise();
  void Wake();
  // Output bytes the supervisor may read now (SIZE_MAX without a window).
  uint64_t Credit() const;
  void UseCredit(uint64_t bytes);
  void KeepTail(int stream, const char* data, size_t n);

  const varan::v1::CommandSpec spec_;
  const ExecutionOptions options_;
  const bool hold_;
  mutable absl::Mutex outcome_mu_;
  ExecutionOutcome outcome_ ABSL_GUARDED_BY(outcome_mu_);
  EventQueue queue_;
  // Written by Cancel(), read by the supervisor: wakes its poll().
  int cancel_fd_ = -1;
  std::atomic<bool> cancel_requested_{false};
  std::atomic<bool> finished_{false};
  std::atomic<bool> caller_gone_{false};
  const bool windowed_;
  mutable absl::Mutex credit_mu_;
  uint64_t credit_ ABSL_GUARDED_BY(credit_mu_);
};

}  // namespace varan::periphery
