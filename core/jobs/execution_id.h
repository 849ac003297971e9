// ExecutionId: which target of which job an execution on a periphery is.
//
// Core names every command it sends a periphery "<job id>/<target name>"
// (ExecuteRequest.execution_id); peripheries echo it in their events and
// heartbeat reports (ExecutionReport.execution_id). This value type builds
// that wire form (ToString) and reads it back (Parse), so no other code
// splits or joins the string. Job ids never contain '/'; everything after
// the first '/' is the target name.
//
// A plain value: copyable, no shared state, safe to use from any thread.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace varan::core {

struct ExecutionId {
  std::string job_id;
  std::string target;

  // The wire form "<job_id>/<target>".
  std::string ToString() const;

  // Reads a wire form. INVALID_ARGUMENT (quoting `wire`) when it has no '/'
  // or an empty job id or target: not an id core made.
  static absl::StatusOr<ExecutionId> Parse(absl::string_view wire);

  friend bool operator==(const ExecutionId&, const ExecutionId&) = default;
};

}  // namespace varan::core
