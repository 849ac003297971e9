#include "core/jobs/execution_id.h"

#include "absl/strings/str_cat.h"

namespace varan::core {

std::string ExecutionId::ToString() const {
  return absl::StrCat(job_id, "/", target);
}

absl::StatusOr<ExecutionId> ExecutionId::Parse(absl::string_view wire) {
  const size_t slash = wire.find('/');
  const auto bad = [wire](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed execution id \"", wire, "\": ", why,
                     " (expected \"<job id>/<target>\")"));
  };
  if (slash == absl::string_view::npos) return bad("no '/'");
  if (slash == 0) return bad("empty job id");
  if (slash + 1 == wire.size()) return bad("empty target");
  return ExecutionId{std::string(wire.substr(0, slash)),
                     std::string(wire.substr(slash + 1))};
}

}  // namespace varan::core
