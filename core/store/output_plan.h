// The arithmetic of stored output (the "Output" rules of core/store/store.h)
// that every backend shares: the state a backend keeps per stream, the
// extent it implies, what one append writes and drops, and how stored rows
// are clipped into the pieces a read returns. A backend keeps its rows as
// it likes; these functions only decide which byte ranges.
//
// Pure functions on values; safe from any thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/store/store.h"

namespace varan::core::output {

// What a backend keeps per stream besides its bytes.
struct StreamState {
  uint64_t end = 0;
  uint64_t head_bytes = 0;
  uint64_t tail_bytes = 0;
  uint64_t stored = 0;
};

// A byte range [begin, end) of a stream.
struct Range {
  uint64_t begin = 0;
  uint64_t end = 0;
  bool empty() const { return end <= begin; }
  uint64_t size() const { return empty() ? 0 : end - begin; }
};

// The bytes of `a` that are also in `b`.
uint64_t Overlap(Range a, Range b);

// The extent `s` implies.
OutputExtent ExtentOf(const StreamState& s);

// INVALID_ARGUMENT for an empty target or an unspecified stream; `what`
// starts the message ("append output").
absl::Status CheckKey(const OutputKey& key, absl::string_view what);

// What one append does to a stream.
struct AppendPlan {
  // Nothing changes (all bytes before the stream's end, or none).
  bool noop = true;
  // The stream's end afterwards.
  uint64_t new_end = 0;
  // The parts of the append to store, each as rows of its own (a head row
  // is never deleted; a tail row is deleted once it ends at or before the
  // tail's start). Either may be empty. Offsets are stream offsets: the
  // bytes are data[r.begin - offset, r.end - offset).
  Range head;
  Range tail;
  // The tail's start moves from dropped.begin to dropped.end: stored bytes
  // of tail rows in this range are no longer kept (subtract them from
  // `stored`), and tail rows (at or past head_bytes) ending at or before
  // dropped.end are deleted. A tail row straddling dropped.end may stay
  // whole: reads clip it to the extent.
  Range dropped;
};

// The plan for appending `size` bytes at `offset` to the stream `key` in
// state `s`
// (for a new stream: end 0 and the append's retention). INVALID_ARGUMENT if
// the end would reach 2^63 (SQL integers are signed 64-bit).
absl::StatusOr<AppendPlan> PlanAppend(const OutputKey& key,
                                      const StreamState& s, uint64_t offset,
                                      uint64_t size);

// Adds to `out` the kept part of a stored row (`data` at stream offset
// `pos`) at or after `from`, merged with the last piece when contiguous,
// taking at most `*budget` bytes (and reducing it). Rows must come in
// order of `pos`.
void AddPiece(const OutputExtent& extent, uint64_t from, uint64_t pos,
              absl::string_view data, uint64_t* budget,
              std::vector<OutputPiece>* out);

}  // namespace varan::core::output
