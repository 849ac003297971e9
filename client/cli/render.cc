#include "client/cli/render.h"

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace varan::cli {

using varan::v1::ExitStatus;
using varan::v1::TargetFinished;

int TargetExitCode(const TargetFinished& f) {
  switch (f.state()) {
    case varan::v1::TARGET_STATE_EXITED:
      if (f.exit_status().kind() == ExitStatus::KIND_SIGNALED) {
        return 128 + f.exit_status().signal();
      }
      return f.exit_status().code();
    case varan::v1::TARGET_STATE_TIMED_OUT:
      return 124;
    case varan::v1::TARGET_STATE_CANCELED:
      return 130;
    case varan::v1::TARGET_STATE_FAILED:
      return f.exit_status().kind() == ExitStatus::KIND_START_FAILED ? 127 : 1;
    default:
      return 1;
  }
}

std::string DescribeResult(const TargetFinished& f) {
  switch (f.state()) {
    case varan::v1::TARGET_STATE_EXITED:
      if (f.exit_status().kind() == ExitStatus::KIND_SIGNALED) {
        return absl::StrCat("killed by signal ", f.exit_status().signal());
      }
      return absl::StrCat("exit ", f.exit_status().code());
    case varan::v1::TARGET_STATE_TIMED_OUT:
      return "timed out";
    case varan::v1::TARGET_STATE_CANCELED:
      return "canceled";
    case varan::v1::TARGET_STATE_FAILED:
      if (f.exit_status().kind() == ExitStatus::KIND_OUTPUT_LIMIT) {
        return "stopped: output passed the limit";
      }
      return absl::StrCat("failed: ", f.error());
    case varan::v1::TARGET_STATE_LOST:
      return absl::StrCat("lost: ", f.error());
    default:
      return "unknown";
  }
}

void JobPrinter::Flush(const std::string& target, int stream, bool all) {
  std::string& buf = pending_[{target, stream}];
  FILE* out = stream == 1 ? stderr : stdout;
  size_t start = 0;
  while (true) {
    size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    std::string line =
        absl::StrCat(target, std::string(width_ - target.size(), ' '), " | ",
                     buf.substr(start, nl - start + 1));
    fwrite(line.data(), 1, line.size(), out);
    start = nl + 1;
  }
  buf.erase(0, start);
  if (all && !buf.empty()) {
    std::string line = absl::StrCat(
        target, std::string(width_ - target.size(), ' '), " | ", buf, "\n");
    fwrite(line.data(), 1, line.size(), out);
    buf.clear();
  }
  fflush(out);
}

void JobPrinter::OnEvent(const varan::v1::JobEvent& event) {
  next_sequence_ = event.sequence() + 1;
  if (event.has_accepted()) {
    targets_.assign(event.accepted().targets().begin(),
                    event.accepted().targets().end());
    if (targets_.size() > 1) prefix_ = true;
    for (const auto& t : targets_) width_ = std::max(width_, t.size());
    return;
  }
  if (event.has_output()) {
    int stream = event.output().stream() == varan::v1::OUTPUT_STREAM_STDERR;
    if (!prefix_) {
      FILE* out = stream == 1 ? stderr : stdout;
      fwrite(event.output().data().data(), 1, event.output().data().size(),
             out);
      fflush(out);
      return;
    }
    pending_[{event.target(), stream}] += event.output().data();
    Flush(event.target(), stream, false);
    return;
  }
  if (event.has_finished()) {
    if (prefix_) {
      Flush(event.target(), 0, true);
      Flush(event.target(), 1, true);
    }
    results_[event.target()] = event.finished();
    return;
  }
  if (event.has_job_finished()) finished_ = true;
}

int JobPrinter::Summarize() const {
  if (targets_.size() == 1 && results_.size() == 1) {
    const TargetFinished& f = results_.begin()->second;
    if (f.state() != varan::v1::TARGET_STATE_EXITED) {
      std::cerr << "varanctl: " << results_.begin()->first << ": "
                << DescribeResult(f) << "\n";
    }
    return TargetExitCode(f);
  }
  std::vector<std::string> failures;
  size_t ok = 0;
  for (const auto& [name, f] : results_) {
    if (f.state() == varan::v1::TARGET_STATE_EXITED &&
        f.exit_status().kind() == ExitStatus::KIND_EXITED &&
        f.exit_status().code() == 0) {
      ++ok;
    } else {
      failures.push_back(absl::StrCat("  ", name, ": ", DescribeResult(f)));
    }
  }
  if (!targets_.empty()) {
    std::cerr << ok << " of " << targets_.size() << " succeeded";
    if (!failures.empty()) {
      std::cerr << "; " << failures.size() << " failed:\n"
                << absl::StrJoin(failures, "\n");
    }
    std::cerr << "\n";
  }
  return failures.empty() && results_.size() == targets_.size() ? 0 : 1;
}

}  // namespace varan::cli
