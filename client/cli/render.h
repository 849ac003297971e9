// Rendering a job's event stream on a terminal or into a pipe, and the
// descriptions and exit codes of target results shared by the subcommands.
//
// With one target (and no --prefix), output is written raw and byte-exact:
// the remote stdout to stdout, stderr to stderr. With several, each line is
// prefixed with the periphery's name, aligned; partial lines are held until
// their newline or the target's end. Notes about the job (a cancel, output
// past the capture limit, the summary) go to stderr. Not thread-safe (one
// stream, one thread).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "varan/v1/core.pb.h"

namespace varan::cli {

class JobPrinter {
 public:
  explicit JobPrinter(bool prefix) : prefix_(prefix) {}

  // Feeds one event; prints what it carries. `dispatched` and `started`
  // print nothing; `cancel_requested` prints "varanctl: job canceled by
  // NAME" on stderr.
  void OnEvent(const varan::v1::JobEvent& event);

  // Next sequence number expected (for resuming a watch).
  uint64_t next_sequence() const { return next_sequence_; }
  bool finished() const { return finished_; }

  // After the job finished: notes and a summary on stderr (for several
  // targets, or an unusual end of one), and the exit code varanctl should
  // return. With one target that ran (or should have), the target's own code
  // (TargetExitCode); otherwise JobExitCode of the job's final state, so
  // targets skipped by skip_offline do not fail the command.
  int Summarize() const;

 private:
  void Flush(const std::string& target, int stream, bool all);

  bool prefix_;
  size_t width_ = 0;
  uint64_t next_sequence_ = 0;
  bool finished_ = false;
  // Whether `accepted` (and so the list of targets) was seen.
  bool accepted_ = false;
  varan::v1::JobFinished job_finished_;
  std::vector<std::string> targets_;
  std::map<std::string, varan::v1::TargetFinished> results_;
  // Partial lines by (target, stream).
  std::map<std::pair<std::string, int>, std::string> pending_;
};

// How a target ended, for counting and summaries.
enum class Outcome {
  kPending,    // not final yet
  kSucceeded,  // exited with code 0
  kFailed,     // any other final state but the two below
  kCanceled,
  kSkipped,
};
Outcome TargetOutcome(varan::v1::TargetState state,
                      const varan::v1::ExitStatus& exit_status);

// The exit code a single target's result maps to: its own exit code; 128+N
// when killed by signal N; 124 timed out; 127 could not start; 130 canceled;
// 1 failed, lost or skipped.
int TargetExitCode(const varan::v1::TargetFinished& finished);

// The exit code a job's final state maps to: 0 SUCCEEDED, else 1 (FAILED,
// CANCELED, or a state this varanctl does not know).
int JobExitCode(varan::v1::JobState state);

// "exit 0", "exit 3", "killed by signal 9", "timed out", "canceled",
// "failed: ...", "lost: ...", "skipped: ...".
std::string DescribeResult(const varan::v1::TargetFinished& finished);

}  // namespace varan::cli
