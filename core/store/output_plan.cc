#include "core/store/output_plan.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace varan::core::output {
namespace {

// SQL integers are signed 64-bit.
constexpr uint64_t kMaxEnd = std::numeric_limits<int64_t>::max();

}  // namespace

uint64_t Overlap(Range a, Range b) {
  return Range{std::max(a.begin, b.begin), std::min(a.end, b.end)}.size();
}

OutputExtent ExtentOf(const StreamState& s) {
  OutputExtent e;
  e.end = s.end;
  e.head_end = std::min(s.end, s.head_bytes);
  e.tail_start =
      std::max(s.end > s.tail_bytes ? s.end - s.tail_bytes : 0, e.head_end);
  e.stored = s.stored;
  return e;
}

absl::Status CheckKey(const OutputKey& key, absl::string_view what) {
  if (key.target.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " of job ", key.job_id, ": no target"));
  }
  switch (key.stream) {
    case varan::v1::OUTPUT_STREAM_STDOUT:
    case varan::v1::OUTPUT_STREAM_STDERR:
      return absl::OkStatus();
    case varan::v1::OUTPUT_STREAM_UNSPECIFIED:
    case varan::v1::OutputStream_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::OutputStream_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " of job ", key.job_id, " target ", key.target,
                   ": no valid stream (", static_cast<int>(key.stream), ")"));
}

absl::StatusOr<AppendPlan> PlanAppend(const OutputKey& key,
                                      const StreamState& s, uint64_t offset,
                                      uint64_t size) {
  if (offset > kMaxEnd || size > kMaxEnd - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "append output of job ", key.job_id, " target ", key.target, ": ", size,
        " bytes at offset ", offset, " bytes ends at or past 2^63"));
  }
  AppendPlan plan;
  plan.new_end = offset + size;
  if (plan.new_end <= s.end) return plan;  // delivered already
  plan.noop = false;
  // The bytes that are new.
  const Range fresh{std::max(offset, s.end), plan.new_end};
  const OutputExtent before = ExtentOf(s);
  StreamState after = s;
  after.end = plan.new_end;
  const OutputExtent extent = ExtentOf(after);
  plan.head = Range{fresh.begin, std::min(fresh.end, extent.head_end)};
  plan.tail = Range{std::max(fresh.begin, extent.tail_start), fresh.end};
  if (plan.head.empty()) plan.head = Range{};
  if (plan.tail.empty()) plan.tail = Range{};
  // Only tail rows (at or past head_bytes) ever leave.
  plan.dropped =
      Range{std::max(before.tail_start, s.head_bytes), extent.tail_start};
  if (plan.dropped.empty()) plan.dropped = Range{};
  return plan;
}

void AddPiece(const OutputExtent& extent, uint64_t from, uint64_t pos,
              absl::string_view data, uint64_t* budget,
              std::vector<OutputPiece>* out) {
  const Range row{pos, pos + data.size()};
  for (const Range kept :
       {Range{0, extent.head_end}, Range{extent.tail_start, extent.end}}) {
    Range r{std::max({row.begin, kept.begin, from}),
            std::min(row.end, kept.end)};
    if (r.empty() || *budget == 0) continue;
    if (r.size() > *budget) r.end = r.begin + *budget;
    *budget -= r.size();
    const absl::string_view bytes = data.substr(r.begin - pos, r.size());
    if (!out->empty() &&
        out->back().offset + out->back().data.size() == r.begin) {
      out->back().data.append(bytes.data(), bytes.size());
    } else {
      out->push_back(OutputPiece{r.begin, std::string(bytes)});
    }
  }
}

}  // namespace varan::core::output
