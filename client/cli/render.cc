#include "client/cli/render.h"

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace varan::cli {

using varan::v1::ExitStatus;
using varan::v1::TargetFinished;

Outcome TargetOutcome(varan::v1::TargetState state,
                      const ExitStatus& exit_status) {
  switch (state) {
    case varan::v1::TARGET_STATE_UNSPECIFIED:
    case varan::v1::TARGET_STATE_QUEUED:
    case varan::v1::TARGET_STATE_DISPATCHED:
    case varan::v1::TARGET_STATE_RUNNING:
      return Outcome::kPending;
    case varan::v1::TARGET_STATE_EXITED:
      return exit_status.kind() == ExitStatus::KIND_EXITED &&
                     exit_status.code() == 0
                 ? Outcome::kSucceeded
                 : Outcome::kFailed;
    case varan::v1::TARGET_STATE_CANCELED:
      return Outcome::kCanceled;
    case varan::v1::TARGET_STATE_SKIPPED:
      return Outcome::kSkipped;
    default:
      return Outcome::kFailed;
  }
}

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

int JobExitCode(varan::v1::JobState state) {
  return state == varan::v1::JOB_STATE_SUCCEEDED ? 0 : 1;
}

std::string DescribeResult(const TargetFinished& f) {
  // "what" alone, or "what: why" when core said why.
  auto with_error = [&f](const char* what) {
    return f.error().empty() ? std::string(what)
                             : absl::StrCat(what, ": ", f.error());
  };
  switch (f.state()) {
    case varan::v1::TARGET_STATE_QUEUED:
      return "queued";
    case varan::v1::TARGET_STATE_DISPATCHED:
      return "dispatched";
    case varan::v1::TARGET_STATE_RUNNING:
      return "running";
    case varan::v1::TARGET_STATE_EXITED:
      if (f.exit_status().kind() == ExitStatus::KIND_SIGNALED) {
        return absl::StrCat("killed by signal ", f.exit_status().signal());
      }
      return absl::StrCat("exit ", f.exit_status().code());
    case varan::v1::TARGET_STATE_TIMED_OUT:
      return "timed out";
    case varan::v1::TARGET_STATE_CANCELED:
      return with_error("canceled");
    case varan::v1::TARGET_STATE_FAILED:
      if (f.exit_status().kind() == ExitStatus::KIND_OUTPUT_LIMIT) {
        return "stopped: output passed the limit";
      }
      if (f.error().empty() && !f.exit_status().error().empty()) {
        return absl::StrCat("failed: ", f.exit_status().error());
      }
      return with_error("failed");
    case varan::v1::TARGET_STATE_LOST:
      return with_error("lost");
    case varan::v1::TARGET_STATE_SKIPPED:
      return with_error("skipped");
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
    accepted_ = true;
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
  if (event.has_cancel_requested()) {
    const std::string& by = event.cancel_requested().by();
    std::cerr << "varanctl: job canceled"
              << (by.empty() ? std::string() : absl::StrCat(" by ", by))
              << "\n";
    return;
  }
  if (event.has_job_finished()) {
    job_finished_ = event.job_finished();
    finished_ = true;
  }
  // `dispatched`, `started` and arms newer than this varanctl: nothing to
  // show.
}

int JobPrinter::Summarize() const {
  // Output core did not keep is not streamed either: say so, or the
  // truncation would pass for the command's whole output.
  for (const auto& [name, f] : results_) {
    std::vector<std::string> lost;
    if (f.stdout_uncaptured_bytes() > 0) {
      lost.push_back(absl::StrCat(f.stdout_uncaptured_bytes(), " B of stdout"));
    }
    if (f.stderr_uncaptured_bytes() > 0) {
      lost.push_back(absl::StrCat(f.stderr_uncaptured_bytes(), " B of stderr"));
    }
    if (!lost.empty()) {
      std::cerr << "varanctl: " << name << ": " << absl::StrJoin(lost, " and ")
                << " past core's capture limit not shown\n";
    }
  }
  const int job_code = JobExitCode(job_finished_.state());
  if (accepted_ && targets_.empty()) {
    std::cerr << "varanctl: no periphery matched; nothing ran\n";
    return job_code;
  }
  // A watch from a later sequence missed `accepted`: the targets that
  // finished meanwhile are all it knows.
  const size_t total = accepted_ ? targets_.size() : results_.size();
  if (total == 0) return job_code;
  if (total == 1 && results_.size() == 1) {
    const auto& [name, f] = *results_.begin();
    if (f.state() != varan::v1::TARGET_STATE_EXITED) {
      std::cerr << "varanctl: " << name << ": " << DescribeResult(f) << "\n";
    }
    // A skipped target has no exit code of its own; whether skipping it
    // fails the job (stop_after_failures, core restarts) or not
    // (skip_offline) is core's call.
    if (f.state() == varan::v1::TARGET_STATE_SKIPPED) return job_code;
    return TargetExitCode(f);
  }
  std::vector<std::string> details;
  size_t succeeded = 0, failed = 0, canceled = 0, skipped = 0;
  for (const auto& [name, f] : results_) {
    switch (TargetOutcome(f.state(), f.exit_status())) {
      case Outcome::kSucceeded:
        ++succeeded;
        continue;
      case Outcome::kCanceled:
        ++canceled;
        break;
      case Outcome::kSkipped:
        ++skipped;
        break;
      default:
        ++failed;
        break;
    }
    details.push_back(absl::StrCat("  ", name, ": ", DescribeResult(f)));
  }
  std::string summary = absl::StrCat(succeeded, " of ", total, " succeeded");
  if (failed > 0) absl::StrAppend(&summary, "; ", failed, " failed");
  if (canceled > 0) absl::StrAppend(&summary, "; ", canceled, " canceled");
  if (skipped > 0) absl::StrAppend(&summary, "; ", skipped, " skipped");
  if (results_.size() < total) {
    absl::StrAppend(&summary, "; ", total - results_.size(),
                    " without a result");
  }
  if (!details.empty()) {
    absl::StrAppend(&summary, ":\n", absl::StrJoin(details, "\n"));
  }
  std::cerr << summary << "\n";
  return job_code;
}

}  // namespace varan::cli
