// What PostgresStore's writes and reads share (core/store/postgres_store.h):
// executing one queued op (core/store/write_ops.h) in the open transaction,
// and the lookups of jobs and output streams.
//
// Not thread-safe: each call uses one Conn, owned by its caller.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/store/output_plan.h"
#include "core/store/postgres/conn.h"
#include "core/store/store.h"
#include "core/store/write_ops.h"

namespace varan::core::postgres {

// Executes one write in the transaction open on `db` (an output append
// reads the stream's state first). On an error the transaction is aborted;
// markers do nothing.
absl::Status ExecuteWrite(Conn& db, const queued::Op& op);

// How a statement's result becomes its op's status.
enum class Check {
  kPlain,       // the statement's own error
  kNewJob,      // a job id that exists: ALREADY_EXISTS naming it
  kEvent,       // an unknown job NOT_FOUND, a stored sequence ALREADY_EXISTS
  kUpdatedJob,  // no row updated: NOT_FOUND
  // A stream's first append (PlanWrite): an unknown job NOT_FOUND; no row
  // inserted (the stream exists) is for the caller to see (FirstAppendMissed)
  kFirstOutput,
};

// One statement of a write: the SQL (static), its parameters (pointing into
// the op, which must outlive it), what it does (for errors), its check.
struct Statement {
  const std::string* sql;
  Params params;
  std::string what;
  Check check = Check::kPlain;
};

// The statements of `op`, independent of each other's results, so that a
// batch of them can run in one pipeline; none for a marker. nullopt for a
// write that reads before it writes (ExecuteWrite runs it): an output
// append, a join token's save (its stored use count stays) or use. The
// first append to a stream from its start and within its head (most
// commands' whole output) is one statement that creates the stream with
// it, and does nothing if the stream exists (FirstAppendMissed).
std::optional<std::vector<Statement>> PlanWrite(const queued::Op& op);

// The op's status from one of its statements' result.
absl::Status Outcome(const Statement& s, const absl::StatusOr<Result>& r);

// Whether `s`, a stream's first append, found the stream created already
// and did nothing: its op is then to run with ExecuteWrite, in the same
// transaction, before any later write to that stream.
bool FirstAppendMissed(const Statement& s, const absl::StatusOr<Result>& r);

// Whether the job exists, on `db`.
absl::StatusOr<bool> JobExists(Conn& db, const std::string& id);

// One stream's row of output_streams.
struct OutputStreamRow {
  int64_t id = 0;
  output::StreamState state;
};

// The columns end_offset, head_bytes, tail_bytes, stored of row `row` of
// `r`, the first at column `first`.
output::StreamState StreamStateAt(const Result& r, int row, int first);

// The row of the stream `key` (locked for the transaction when
// `for_update`), or none if the stream does not exist; errors name `what`.
absl::StatusOr<std::optional<OutputStreamRow>> FindOutputStream(
    Conn& db, const OutputKey& key, absl::string_view what, bool for_update);

}  // namespace varan::core::postgres
