// Retention in SqliteStore (core/store/sqlite_store.h): finished jobs past
// the age or count limits deleted with their targets, events and output, at
// most `prune_batch_jobs` per transaction, on the writer thread between batches
// of queued writes.
#include <algorithm>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "core/store/sqlite/db.h"
#include "core/store/sqlite/ops.h"
#include "core/store/sqlite_store.h"

namespace varan::core {
namespace {

constexpr int64_t kRunning = varan::v1::JOB_STATE_RUNNING;

}  // namespace

absl::StatusOr<bool> SqliteStore::PruneStep(queued::PruneRun& run) {
  sqlite::Db& db = *writer_;
  const RetentionOptions& r = options_.retention;
  const size_t batch = std::max<size_t>(1, options_.prune_batch_jobs);
  bool finished = false;
  uint64_t deleted = 0;
  absl::Status status = [&]() -> absl::Status {
    VARAN_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    std::vector<std::string> ids;
    auto select = [&](sqlite::ScopedStmt& stmt) -> absl::Status {
      int rc;
      while ((rc = stmt->Step()) == SQLITE_ROW) {
        ids.emplace_back(stmt->ColumnText(0));
      }
      if (rc != SQLITE_DONE) return db.Error(rc, "select jobs to prune");
      return absl::OkStatus();
    };
    bool by_age = false;
    if (!run.age_done) {
      if (r.max_age > absl::ZeroDuration()) {
        VARAN_ASSIGN_OR_RETURN(
            sqlite::ScopedStmt stmt,
            db.Prepare("SELECT id FROM jobs WHERE create_time < ? AND "
                       "state != ? LIMIT ?"));
        stmt->BindInt(1, absl::ToUnixNanos(clock_->Now() - r.max_age));
        stmt->BindInt(2, kRunning);
        stmt->BindInt(3, static_cast<int64_t>(batch));
        VARAN_RETURN_IF_ERROR(select(stmt));
      }
      by_age = true;
      if (ids.size() < batch) run.age_done = true;
    } else if (r.max_jobs > 0) {
      if (!run.counted) {
        VARAN_ASSIGN_OR_RETURN(int64_t count,
                               db.QueryInt("SELECT COUNT(*) FROM jobs"));
        run.excess =
            count - static_cast<int64_t>(std::min<uint64_t>(
                        r.max_jobs, std::numeric_limits<int64_t>::max()));
        run.counted = true;
      }
      const int64_t want =
          std::min<int64_t>(static_cast<int64_t>(batch), run.excess);
      if (want > 0) {
        VARAN_ASSIGN_OR_RETURN(
            sqlite::ScopedStmt stmt,
            db.Prepare("SELECT id FROM jobs WHERE state != ? ORDER BY id "
                       "LIMIT ?"));
        stmt->BindInt(1, kRunning);
        stmt->BindInt(2, want);
        VARAN_RETURN_IF_ERROR(select(stmt));
      }
      run.excess -= static_cast<int64_t>(ids.size());
      finished = static_cast<int64_t>(ids.size()) < want || run.excess <= 0;
    } else {
      finished = true;
    }
    for (const std::string& id : ids) {
      for (const char* sql : {"DELETE FROM output_chunks WHERE stream_id IN "
                              "(SELECT id FROM output_streams WHERE "
                              "job_id = ?)",
                              "DELETE FROM output_streams WHERE job_id = ?",
                              "DELETE FROM job_events WHERE job_id = ?",
                              "DELETE FROM job_targets WHERE job_id = ?",
                              "DELETE FROM jobs WHERE id = ?"}) {
        VARAN_ASSIGN_OR_RETURN(sqlite::ScopedStmt stmt, db.Prepare(sql));
        stmt->BindText(1, id);
        if (int rc = stmt->Step(); rc != SQLITE_DONE) {
          return db.Error(rc, absl::StrCat("prune job ", id));
        }
      }
    }
    VARAN_RETURN_IF_ERROR(db.Exec("COMMIT"));
    deleted = ids.size();
    (by_age ? run.by_age : run.by_count) += deleted;
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    if (db.InTransaction()) (void)db.Exec("ROLLBACK");
    return status;
  }
  return finished;
}

}  // namespace varan::core
