// Rendering a job's event stream on a terminal or into a pipe.
//
// With one target (and no --prefix), output is written raw and byte-exact:
// the remote stdout to stdout, stderr to stderr. With several, each line is
// prefixed with the periphery's name, aligned; partial lines are held until
// their newline or the target's end. Not thread-safe (one stream, one
// thread).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "varan/v1/core.pb.h"

namespace varan::cli {

class JobPrinter {
 public:
  explicit JobPrinter(bool prefix) : prefix_(prefix) {}

  // Feeds one event; prints what it carries.
  void OnEvent(const varan::v1::JobEvent& event);

  // Next sequence number expected (for resuming a watch).
  uint64_t next_sequence() const { return next_sequence_; }
  bool finished() const { return finished_; }

  // After the job finished: a summary on stderr (for several targets, or a
  // failure of one), and the exit code varanctl should return.
  int Summarize() const;

 private:
  void Flush(const std::string& target, int stream, bool all);

  bool prefix_;
  size_t width_ = 0;
  uint64_t next_sequence_ = 0;
  bool finished_ = false;
  std::vector<std::string> targets_;
  std::map<std::string, varan::v1::TargetFinished> results_;
  // Partial lines by (target, stream).
  std::map<std::pair<std::string, int>, std::string> pending_;
};

// The exit code a single target's result maps to: its own exit code; 128+N
// when killed by signal N; 124 timed out; 127 could not start; 130 canceled;
// 1 failed or lost.
int TargetExitCode(const varan::v1::TargetFinished& finished);

// "exit 0", "exit 3", "signal 9", "timed out", "failed: ...", ...
std::string DescribeResult(const varan::v1::TargetFinished& finished);

}  // namespace varan::cli
