#include "client/cli/output.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli/render.h"

namespace varan::cli {
namespace {

// At most this many target names in the error of a logs without -t.
constexpr int kNamesListed = 10;

// The one target `varanctl jobs logs` reads when -t is not given.
absl::StatusOr<std::string> OnlyTarget(client::CoreClient& client,
                                       const std::string& job_id) {
  varan::v1::GetJobRequest req;
  req.set_job_id(job_id);
  auto job = client.GetJobPage(req);
  if (!job.ok()) return job.status();
  const uint32_t count = std::max<uint32_t>(
      job->target_count(), static_cast<uint32_t>(job->targets_size()));
  if (count == 1 && job->targets_size() == 1) return job->targets(0).name();
  if (count == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("job ", job_id, " has no targets, so no output"));
  }
  std::vector<std::string> names;
  for (const auto& t : job->targets()) {
    if (names.size() == kNamesListed) break;
    names.push_back(t.name());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "job ", job_id, " has ", count, " targets; choose one with -t: ",
      absl::StrJoin(names, ", "), count > names.size() ? ", ..." : ""));
}

void NoteNotStored(std::ostream& err, const std::string& what, uint64_t from,
                   uint64_t bytes, bool yet) {
  err << BytesNote(what, from, bytes, yet ? "not stored (yet)" : "not stored")
      << "\n"
      << std::flush;
}

const char* StreamName(bool stderr_stream) {
  return stderr_stream ? "stderr" : "stdout";
}

}  // namespace

absl::Status WriteLogs(client::CoreClient& client, const LogsOptions& options,
                       std::ostream& out, std::ostream& err) {
  std::string target = options.target;
  if (target.empty()) {
    auto only = OnlyTarget(client, options.job_id);
    if (!only.ok()) return only.status();
    target = *std::move(only);
  }
  const std::string what =
      absl::StrCat(target, " ", StreamName(options.stderr_stream));
  varan::v1::ReadOutputRequest req;
  req.set_job_id(options.job_id);
  req.set_target(target);
  req.set_stream(options.stderr_stream ? varan::v1::OUTPUT_STREAM_STDERR
                                       : varan::v1::OUTPUT_STREAM_STDOUT);
  req.set_follow(options.follow);
  // The stream position after the last byte written, and its size as far as
  // core knew at the last piece.
  uint64_t position = 0;
  uint64_t total = 0;
  absl::Status s =
      client.ReadOutput(req, [&](const varan::v1::OutputPiece& piece) {
        if (piece.skipped_bytes() > 0) {
          out << std::flush;
          NoteNotStored(err, what, piece.offset() - piece.skipped_bytes(),
                        piece.skipped_bytes(), /*yet=*/false);
        }
        out << piece.data() << std::flush;
        position = piece.offset() + piece.data().size();
        total = std::max(total, piece.total_bytes());
      });
  if (!s.ok()) return s;
  // Bytes past the last stored one: core has not stored them (yet, while
  // the target runs: -f waits for them) or never received them.
  if (total > position) {
    NoteNotStored(err, what, position, total - position, !options.follow);
  }
  return absl::OkStatus();
}

std::string OutputSizeCell(const varan::v1::OutputInfo& info, bool present) {
  if (!present) return "-";
  std::string cell = absl::StrCat(GroupedNumber(info.total_bytes()), " B");
  if (info.omitted_bytes() > 0) {
    absl::StrAppend(&cell, " (", GroupedNumber(info.omitted_bytes()),
                    " not stored)");
  }
  return cell;
}

std::string StoredOutputText(const varan::v1::Job& job) {
  if (job.output_head_bytes() > 0 || job.output_tail_bytes() > 0) {
    return absl::StrCat("first ", HumanSize(job.output_head_bytes()),
                        " + last ", HumanSize(job.output_tail_bytes()),
                        " per stream");
  }
  if (job.capture_limit_bytes() > 0) {
    return absl::StrCat(HumanSize(job.capture_limit_bytes()), " per stream");
  }
  return "";
}

void PrintPreviews(const varan::v1::Job& job, std::ostream& out) {
  for (const auto& t : job.targets()) {
    for (bool err : {false, true}) {
      if (!(err ? t.has_stderr_info() : t.has_stdout_info())) continue;
      const varan::v1::OutputInfo& info =
          err ? t.stderr_info() : t.stdout_info();
      if (info.total_bytes() == 0 ||
          (info.head().empty() && info.tail().empty())) {
        continue;
      }
      out << "==== " << t.name() << " " << StreamName(err) << ": "
          << ByteCount(info.total_bytes());
      if (info.omitted_bytes() > 0) {
        out << ", " << GroupedNumber(info.omitted_bytes()) << " not stored";
      }
      out << " ====\n" << info.head();
      if (!info.head().empty() && info.head().back() != '\n') out << "\n";
      // Whatever lies between the head preview and the tail preview (or
      // the end, when there is no tail preview).
      const uint64_t head_end = info.head().size();
      const uint64_t next =
          info.tail().empty() ? info.total_bytes() : info.tail_preview_offset();
      if (next > head_end) {
        out << "---- " << ByteCount(next - head_end) << " not shown";
        if (info.omitted_bytes() > 0) {
          out << " (" << GroupedNumber(info.omitted_bytes()) << " not stored)";
        }
        out << "; read what is stored: " << LogsCommand(job.id(), t.name(), err)
            << " ----\n";
      }
      out << info.tail();
      if (!info.tail().empty() && info.tail().back() != '\n') out << "\n";
    }
  }
}

}  // namespace varan::cli
