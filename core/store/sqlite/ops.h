// SqliteStore's writes (core/store/sqlite_store.h): the queued ops
// (core/store/write_ops.h) executed with SQLite statements, and the lookups
// the writes and the reads share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "core/store/output_plan.h"
#include "core/store/sqlite/db.h"
#include "core/store/store.h"
#include "core/store/write_ops.h"

namespace varan::core::sqlite {

// The ops are the queue's (core/store/write_ops.h), executed here with
// SQLite statements.
using queued::CreateJobOp;
using queued::EventsOp;
using queued::FinishJobOp;
using queued::JoinUseOp;
using queued::kJoinTokenKind;
using queued::kOperatorTokenKind;
using queued::Op;
using queued::OutputOp;
using queued::Overloaded;
using queued::PeripheryOp;
using queued::PruneOp;
using queued::PruneRun;
using queued::SyncOp;
using queued::TokenOp;

// Whether the job exists, on `db` (in its current transaction, if any).
absl::StatusOr<bool> JobExists(Db& db, const std::string& id);

// One stream's row of output_streams.
struct OutputStreamRow {
  int64_t id = 0;
  output::StreamState state;
};

// The columns end_offset, head_bytes, tail_bytes, stored of the current row
// of `stmt`, the first at column `first`.
output::StreamState StreamStateAt(ScopedStmt& stmt, int first);

// The row of the stream `key`, or none if the stream does not exist (then
// the job may not exist either), on `db`; errors name `what`.
absl::StatusOr<std::optional<OutputStreamRow>> FindOutputStream(
    Db& db, const OutputKey& key, absl::string_view what);

// Executes one write in the transaction open on `db`; a write of several
// rows is all or nothing (a savepoint), while the rest of the transaction
// goes on. Markers do nothing.
absl::Status ExecuteWrite(Db& db, Op& op);

}  // namespace varan::core::sqlite
