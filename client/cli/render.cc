#include "client/cli/render.h"

#include <algorithm>
#include <iterator>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
    case varan::v1::TARGET_STATE_FAILED:
    case varan::v1::TARGET_STATE_TIMED_OUT:
    case varan::v1::TARGET_STATE_LOST:
    case varan::v1::TargetState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TargetState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Failed, timed out, lost, or a final state newer than this varanctl.
  return Outcome::kFailed;
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
    case varan::v1::TARGET_STATE_LOST:
    case varan::v1::TARGET_STATE_SKIPPED:
    case varan::v1::TARGET_STATE_UNSPECIFIED:
    case varan::v1::TARGET_STATE_QUEUED:
    case varan::v1::TARGET_STATE_DISPATCHED:
    case varan::v1::TARGET_STATE_RUNNING:
    case varan::v1::TargetState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TargetState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Lost, skipped, not final (cannot be in a TargetFinished), or a state
  // newer than this varanctl.
  return 1;
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
    case varan::v1::TARGET_STATE_UNSPECIFIED:
    case varan::v1::TargetState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TargetState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Unspecified, or a state newer than this varanctl.
  return "unknown";
}

std::string GroupedNumber(uint64_t n) {
  std::string digits = absl::StrCat(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string ByteCount(uint64_t n) {
  return absl::StrCat(GroupedNumber(n), n == 1 ? " byte" : " bytes");
}

std::string HumanSize(uint64_t n) {
  for (auto [shift, unit] :
       {std::pair{30, "GiB"}, std::pair{20, "MiB"}, std::pair{10, "KiB"}}) {
    const uint64_t size = uint64_t{1} << shift;
    if (n >= size && n % size == 0) return absl::StrCat(n / size, " ", unit);
  }
  return absl::StrCat(GroupedNumber(n), " B");
}

std::string BytesNote(const std::string& what, uint64_t from, uint64_t bytes,
                      const std::string& how) {
  return absl::StrCat("varanctl: ", what, ": ... ", ByteCount(bytes), " ", how,
                      " (bytes ", GroupedNumber(from), " to ",
                      GroupedNumber(from + bytes - 1), ") ...");
}

std::string LogsCommand(const std::string& job_id, const std::string& target,
                        bool stderr_stream) {
  return absl::StrCat("varanctl jobs logs ", job_id, " -t ", target,
                      stderr_stream ? " --stderr" : "");
}

JobPrinter::JobPrinter(PrinterOptions options)
    : options_(options),
      prefix_(options.prefix == PrinterOptions::Prefix::kAlways),
      start_(options.clock->Now()) {}

std::string JobPrinter::Prefix(const std::string& target, int stream) const {
  if (options_.prefix == PrinterOptions::Prefix::kNever) return "";
  const std::string pad(width_ - std::min(width_, target.size()), ' ');
  const bool color =
      stream == 1 ? options_.color_stderr : options_.color_stdout;
  if (!color) return absl::StrCat(target, pad, " | ");
  // A colour per target, stable for the job: its place in the target list.
  static constexpr int kColors[] = {36, 33, 32, 35, 34, 31};
  auto it = std::find(targets_.begin(), targets_.end(), target);
  const size_t index = static_cast<size_t>(it - targets_.begin());
  return absl::StrCat("\033[", kColors[index % std::size(kColors)], "m", target,
                      "\033[0m", pad, " | ");
}

void JobPrinter::DrawProgress() const {
  if (!options_.progress || !accepted_ || finished_) return;
  if (targets_.size() < 2 && !options_.group) return;
  size_t failed = 0;
  for (const auto& [name, f] : results_) {
    Outcome o = TargetOutcome(f.state(), f.exit_status());
    if (o == Outcome::kFailed || o == Outcome::kCanceled) ++failed;
  }
  std::string line =
      absl::StrFormat("\r\033[K[%d/%d] failed %d, running %d, %.1fs",
                      results_.size(), targets_.size(), failed, running_.size(),
                      absl::ToDoubleSeconds(options_.clock->Now() - start_));
  *options_.err << line << std::flush;
  progress_shown_ = true;
}

void JobPrinter::ClearProgress() const {
  if (!progress_shown_) return;
  *options_.err << "\r\033[K" << std::flush;
  progress_shown_ = false;
}

void JobPrinter::Flush(const std::string& target, int stream, bool all) {
  std::string& buf = pending_[{target, stream}];
  std::ostream& out = stream == 1 ? *options_.err : *options_.out;
  const std::string prefix = Prefix(target, stream);
  size_t start = 0;
  std::string text;
  while (true) {
    size_t nl = buf.find('\n', start);
    if (nl == std::string::npos) break;
    absl::StrAppend(&text, prefix, buf.substr(start, nl - start + 1));
    start = nl + 1;
  }
  buf.erase(0, start);
  if (all && !buf.empty()) {
    absl::StrAppend(&text, prefix, buf, "\n");
    buf.clear();
  }
  if (text.empty()) return;
  ClearProgress();
  out << text << std::flush;
}

void JobPrinter::OnEvent(const varan::v1::JobEvent& event) {
  next_sequence_ = event.sequence() + 1;
  if (job_id_.empty()) job_id_ = event.job_id();
  if (event.has_accepted()) {
    accepted_ = true;
    targets_.assign(event.accepted().targets().begin(),
                    event.accepted().targets().end());
    if (targets_.size() > 1) prefix_ = true;
    for (const auto& t : targets_) width_ = std::max(width_, t.size());
  } else if (event.has_output()) {
    int stream = event.output().stream() == varan::v1::OUTPUT_STREAM_STDERR;
    if (options_.group) {
      auto& [out, err] = captured_[event.target()];
      (stream == 1 ? err : out) += event.output().data();
    } else if (!prefix_) {
      ClearProgress();
      std::ostream& out = stream == 1 ? *options_.err : *options_.out;
      out << event.output().data() << std::flush;
    } else {
      pending_[{event.target(), stream}] += event.output().data();
      Flush(event.target(), stream, false);
    }
  } else if (event.has_started()) {
    running_.insert(event.target());
  } else if (event.has_finished()) {
    if (prefix_ && !options_.group) {
      Flush(event.target(), 0, true);
      Flush(event.target(), 1, true);
    }
    running_.erase(event.target());
    results_[event.target()] = event.finished();
  } else if (event.has_cancel_requested()) {
    const std::string& by = event.cancel_requested().by();
    ClearProgress();
    *options_.err << "varanctl: job canceled"
                  << (by.empty() ? std::string() : absl::StrCat(" by ", by))
                  << "\n";
  } else if (event.has_output_gap()) {
    OnGap(event);
  } else if (event.has_job_finished()) {
    job_finished_ = event.job_finished();
    finished_ = true;
    ClearProgress();
  }
  // `dispatched` and arms newer than this varanctl: nothing to show.
  DrawProgress();
}

void JobPrinter::OnGap(const varan::v1::JobEvent& event) {
  // The bytes missed per target and stream, from the first one: a gap may
  // list one stream in several runs.
  std::map<std::pair<std::string, int>, std::pair<uint64_t, uint64_t>> missed;
  for (const auto& m : event.output_gap().missed()) {
    if (m.bytes() == 0) continue;
    const int stream = m.stream() == varan::v1::OUTPUT_STREAM_STDERR;
    auto [it, added] = missed.try_emplace({m.target(), stream}, m.offset(),
                                          m.offset() + m.bytes());
    if (!added) {
      it->second.first = std::min(it->second.first, m.offset());
      it->second.second = std::max(it->second.second, m.offset() + m.bytes());
    }
  }
  for (const auto& [key, range] : missed) {
    const auto& [target, stream] = key;
    // What follows the gap is not the rest of the line before it.
    if (prefix_ && !options_.group) Flush(target, stream, true);
    ClearProgress();
    *options_.err << BytesNote(
                         absl::StrCat(target, stream ? " stderr" : " stdout"),
                         range.first, range.second - range.first, "not shown")
                  << "; what core stored: "
                  << LogsCommand(event.job_id(), target, stream == 1) << "\n"
                  << std::flush;
  }
}

void JobPrinter::PrintGroups() const {
  // Targets by what they printed and how they ended, like dshbak -c.
  using Key = std::tuple<std::string, std::string, std::string>;
  std::map<Key, std::vector<std::string>> groups;
  std::set<std::string> names;
  for (const auto& [name, unused] : captured_) names.insert(name);
  for (const auto& [name, unused] : results_) names.insert(name);
  for (const auto& name : names) {
    auto c = captured_.find(name);
    auto r = results_.find(name);
    Key key{c == captured_.end() ? "" : c->second.first,
            c == captured_.end() ? "" : c->second.second,
            r == results_.end() ? "no result" : DescribeResult(r->second)};
    groups[key].push_back(name);  // `names` is sorted, so each group is too
  }
  std::vector<std::pair<const Key*, const std::vector<std::string>*>> order;
  for (const auto& [key, members] : groups) order.push_back({&key, &members});
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->front() < b.second->front();
  });
  std::string text;
  for (const auto& [key, members] : order) {
    const auto& [out, err, result] = *key;
    absl::StrAppend(&text, "==== ", absl::StrJoin(*members, ", "), " (",
                    members->size(), ") ====\n", out);
    if (!out.empty() && out.back() != '\n') text += "\n";
    if (!err.empty()) {
      absl::StrAppend(&text, "---- stderr ----\n", err);
      if (err.back() != '\n') text += "\n";
    }
    if (result != "exit 0") absl::StrAppend(&text, "---- ", result, " ----\n");
  }
  *options_.out << text << std::flush;
}

int JobPrinter::Summarize() const {
  ClearProgress();
  if (options_.group) PrintGroups();
  // Output core did not store was shown live but will be missing from
  // `jobs logs` and `jobs get`: say so once.
  for (const auto& [name, f] : results_) {
    std::vector<std::string> lost;
    if (f.stdout_uncaptured_bytes() > 0) {
      lost.push_back(
          absl::StrCat(ByteCount(f.stdout_uncaptured_bytes()), " of stdout"));
    }
    if (f.stderr_uncaptured_bytes() > 0) {
      lost.push_back(
          absl::StrCat(ByteCount(f.stderr_uncaptured_bytes()), " of stderr"));
    }
    if (!lost.empty()) {
      *options_.err << "varanctl: " << name << ": "
                    << absl::StrJoin(lost, " and ")
                    << " not stored by core (it keeps the head and tail of "
                       "each stream)\n";
    }
  }
  const int job_code = JobExitCode(job_finished_.state());
  if (accepted_ && targets_.empty()) {
    *options_.err << "varanctl: no periphery matched; nothing ran\n";
    return job_code;
  }
  // A watch from a later sequence missed `accepted`: the targets that
  // finished meanwhile are all it knows.
  const size_t total = accepted_ ? targets_.size() : results_.size();
  if (total == 0) return job_code;
  if (total == 1 && results_.size() == 1) {
    const auto& [name, f] = *results_.begin();
    if (f.state() != varan::v1::TARGET_STATE_EXITED) {
      *options_.err << "varanctl: " << name << ": " << DescribeResult(f)
                    << "\n";
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
      case Outcome::kFailed:
      case Outcome::kPending:  // a result is always final; counted as failed
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
  *options_.err << summary << "\n";
  return job_code;
}

}  // namespace varan::cli
