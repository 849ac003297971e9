// varanctl's view of a job's stored output: `jobs logs` (one target's
// stream, byte-exact), and the sizes and previews `jobs get` shows.
//
// What core stores of each target's stream is its head and its tail
// (DispatchOptions.output_head_bytes / output_tail_bytes); the bytes between
// are counted, not stored. varanctl never writes a note about them into the
// output itself: notes go to the `err` stream, the data alone to `out`.
// Functions here keep no state; they are safe to call from any thread with
// streams that thread owns.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/core_client.h"
#include "varan/v1/core.pb.h"

namespace varan::cli {

// What `varanctl jobs logs` reads.
struct LogsOptions {
  std::string job_id;
  // The target's periphery name; empty: the job's only target.
  std::string target;
  // stderr instead of stdout.
  bool stderr_stream = false;
  // Keep reading as more output is stored, until the target is final.
  bool follow = false;
};

// Writes the stored output of the chosen target's stream to `out`, exactly
// as the command wrote it, and on `err` one line per run of bytes core does
// not store ("varanctl: web-1 stdout: ... 12,345,678 bytes not stored
// (bytes 1,048,576 to 13,394,253) ..."), also for bytes after the last
// stored one. Without a target, the job must have exactly one; with several
// it fails naming them (a byte-exact stream has no room for prefixes).
// OK once everything stored (with `follow`: until the target is final) was
// written. Errors: NOT_FOUND (job or target), INVALID_ARGUMENT (no target
// chosen among several, or a job without targets), and those of
// CoreClient::ReadOutput.
absl::Status WriteLogs(client::CoreClient& client, const LogsOptions& options,
                       std::ostream& out, std::ostream& err);

// A stream's size for a table cell: "12,345 B", or "12,345,678 B
// (8,000,000 not stored)"; "-" when core sent no OutputInfo.
std::string OutputSizeCell(const varan::v1::OutputInfo& info, bool present);

// The job's stored-output setting: "first 1 MiB + last 3 MiB per stream";
// an older core's capture limit ("4 MiB per stream"); empty when neither
// is known.
std::string StoredOutputText(const varan::v1::Job& job);

// For each target's stream that produced output and has a preview (GetJob
// with preview_bytes): a header line, the head preview, a line saying how
// many bytes lie between it and the tail preview (and how many of them are
// not stored, with the `varanctl jobs logs` command that reads what is
// stored), then the tail preview.
void PrintPreviews(const varan::v1::Job& job, std::ostream& out);

}  // namespace varan::cli
