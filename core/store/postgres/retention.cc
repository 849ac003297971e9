// Retention in PostgresStore (core/store/postgres_store.h): finished jobs
// past the age or count limits deleted with their targets, events and
// output (ON DELETE CASCADE), at most `prune_batch_jobs` per transaction, on
// the writer thread between batches of queued writes.
#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/store/postgres/conn.h"
#include "core/store/postgres_store.h"

namespace varan::core {
namespace {

using postgres::Params;
using postgres::Result;

constexpr int64_t kRunning = varan::v1::JOB_STATE_RUNNING;

}  // namespace

absl::StatusOr<bool> PostgresStore::PruneStep(queued::PruneRun& run) {
  postgres::Conn& db = *writer_;
  if (db.Broken()) VARAN_RETURN_IF_ERROR(ReconnectWriter());
  const RetentionOptions& r = options_.retention;
  const auto batch =
      static_cast<int64_t>(std::max<size_t>(1, options_.prune_batch_jobs));
  postgres::Transaction txn(db, /*read_only=*/false);
  VARAN_RETURN_IF_ERROR(txn.status());
  std::vector<std::string> ids;
  const auto collect = [&ids](const Result& rows) {
    for (int i = 0; i < rows.rows(); ++i) ids.emplace_back(rows.Bytes(i, 0));
  };
  bool finished = false;
  bool by_age = false;
  if (!run.age_done) {
    if (r.max_age > absl::ZeroDuration()) {
      VARAN_ASSIGN_OR_RETURN(
          Result rows,
          db.Run("SELECT id FROM jobs WHERE create_time < $1 AND state != $2 "
                 "LIMIT $3",
                 Params()
                     .Int(absl::ToUnixNanos(clock_->Now() - r.max_age))
                     .Int(kRunning)
                     .Int(batch),
                 "select jobs to prune"));
      collect(rows);
    }
    by_age = true;
    if (static_cast<int64_t>(ids.size()) < batch) run.age_done = true;
  } else if (r.max_jobs > 0) {
    if (!run.counted) {
      VARAN_ASSIGN_OR_RETURN(Result count,
                             db.Run("SELECT count(*) FROM jobs", "count jobs"));
      run.excess = count.Int(0, 0) -
                   static_cast<int64_t>(std::min<uint64_t>(
                       r.max_jobs, std::numeric_limits<int64_t>::max()));
      run.counted = true;
    }
    const int64_t want = std::min<int64_t>(batch, run.excess);
    if (want > 0) {
      VARAN_ASSIGN_OR_RETURN(
          Result rows,
          db.Run("SELECT id FROM jobs WHERE state != $1 ORDER BY id LIMIT $2",
                 Params().Int(kRunning).Int(want), "select jobs to prune"));
      collect(rows);
    }
    run.excess -= static_cast<int64_t>(ids.size());
    finished = static_cast<int64_t>(ids.size()) < want || run.excess <= 0;
  } else {
    finished = true;
  }
  for (const std::string& id : ids) {
    // Never a running job, whatever was selected.
    VARAN_RETURN_IF_ERROR(
        db.Run("DELETE FROM jobs WHERE id = $1 AND state != $2",
               Params().Text(id).Int(kRunning), absl::StrCat("prune job ", id))
            .status());
  }
  VARAN_RETURN_IF_ERROR(txn.Commit());
  (by_age ? run.by_age : run.by_count) += ids.size();
  return finished;
}

}  // namespace varan::core
