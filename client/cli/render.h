// Rendering a job's event stream on a terminal or into a pipe, and the
// descriptions and exit codes of target results shared by the subcommands.
//
// With one target (and no --prefix), output is written raw and byte-exact:
// the remote stdout to stdout, stderr to stderr. With several, each line is
// prefixed with the periphery's name, aligned (coloured on a terminal), or
// not (--no-prefix); partial lines are held until their newline or the
// target's end. Grouped (--group), nothing is printed live: at the end each
// distinct (stdout, stderr, result) is printed once under the names of the
// targets that produced it. On a terminal stderr, a progress line
// "[done/total] failed F, running R, 3.2s" is kept up to date in place and
// cleared before anything else is printed. Notes about the job (a cancel,
// output this watcher missed (an output_gap event), output core did not
// store, the summary) go to stderr, never into the output. "stdout" and
// "stderr" are the streams PrinterOptions names (std::cout and std::cerr
// unless a test passes its own). Not thread-safe (one stream, one thread).
#pragma once

#include <iostream>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"
#include "varan/v1/core.pb.h"

namespace varan::cli {

struct PrinterOptions {
  enum class Prefix { kAuto, kAlways, kNever };
  // kAuto: prefix lines with the target's name when there are several.
  Prefix prefix = Prefix::kAuto;
  bool group = false;
  // ANSI colours for name prefixes on stdout / stderr lines.
  bool color_stdout = false;
  bool color_stderr = false;
  // The progress line on stderr (only when it is a terminal).
  bool progress = false;
  // Where the remote stdout and stderr, notes and the summary go. Not
  // owned; they must outlive the printer.
  std::ostream* out = &std::cout;
  std::ostream* err = &std::cerr;
  // The time shown on the progress line. Not owned.
  const Clock* clock = RealClock::Get();
};

class JobPrinter {
 public:
  explicit JobPrinter(PrinterOptions options);

  // Feeds one event; prints what it carries. `dispatched` and `started`
  // print nothing; `cancel_requested` prints "varanctl: job canceled by
  // NAME" on stderr; `output_gap` prints, per target and stream it covers,
  // "varanctl: web-1 stdout: ... 12,345 bytes not shown (bytes 100 to
  // 12,444) ...; what core stored: varanctl jobs logs JOB -t web-1" on
  // stderr (after ending the target's partial line) and changes no exit
  // code.
  void OnEvent(const varan::v1::JobEvent& event);

  // Next sequence number expected (for resuming a watch).
  uint64_t next_sequence() const { return next_sequence_; }
  // The job's id, once an event has arrived.
  const std::string& job_id() const { return job_id_; }
  bool finished() const { return finished_; }

  // After the job finished: notes and a summary on stderr (for several
  // targets, or an unusual end of one), and the exit code varanctl should
  // return. With one target that ran (or should have), the target's own code
  // (TargetExitCode); otherwise JobExitCode of the job's final state, so
  // targets skipped by skip_offline do not fail the command.
  int Summarize() const;

 private:
  void Flush(const std::string& target, int stream, bool all);
  std::string Prefix(const std::string& target, int stream) const;
  void DrawProgress() const;
  void ClearProgress() const;
  void PrintGroups() const;
  void OnGap(const varan::v1::JobEvent& event);

  PrinterOptions options_;
  bool prefix_;
  absl::Time start_;
  mutable bool progress_shown_ = false;
  size_t width_ = 0;
  uint64_t next_sequence_ = 0;
  std::string job_id_;
  bool finished_ = false;
  // Whether `accepted` (and so the list of targets) was seen.
  bool accepted_ = false;
  varan::v1::JobFinished job_finished_;
  std::vector<std::string> targets_;
  std::map<std::string, varan::v1::TargetFinished> results_;
  std::set<std::string> running_;
  // With `group`: each target's whole stdout and stderr.
  std::map<std::string, std::pair<std::string, std::string>> captured_;
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

// "12,345,678" (thousands grouped).
std::string GroupedNumber(uint64_t n);
// "1 byte", "12,345 bytes".
std::string ByteCount(uint64_t n);
// "3 MiB", "64 KiB", "1 GiB" when exact, else "1,000 B".
std::string HumanSize(uint64_t n);

// "varanctl: web-1 stdout: ... 12 bytes not stored (bytes 5 to 16) ..."
// for the run of `bytes` bytes from `from` of a stream (`what` names it),
// with `how` ("not stored", "not shown") saying what befell them. Without a
// newline.
std::string BytesNote(const std::string& what, uint64_t from, uint64_t bytes,
                      const std::string& how);

// The `varanctl jobs logs` command line that reads one target's stream.
std::string LogsCommand(const std::string& job_id, const std::string& target,
                        bool stderr_stream);

// "exit 0", "exit 3", "killed by signal 9", "timed out", "canceled",
// "failed: ...", "lost: ...", "skipped: ...".
std::string DescribeResult(const varan::v1::TargetFinished& finished);

}  // namespace varan::cli
