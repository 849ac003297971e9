// Reads in SqliteStore (core/store/sqlite_store.h), on the reader
// connection under read_mu_, so they never wait for a commit in progress.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/store/output_plan.h"
#include "core/store/sqlite/db.h"
#include "core/store/sqlite/ops.h"
#include "core/store/sqlite_store.h"

namespace varan::core {
namespace {

using varan::v1::Job;
using varan::v1::JobEvent;

constexpr int64_t kRunning = varan::v1::JOB_STATE_RUNNING;

}  // namespace

absl::StatusOr<std::vector<StoredPeriphery>> SqliteStore::LoadPeripheries() {
  absl::MutexLock lock(&read_mu_);
  sqlite::Db& db = *reader_;
  VARAN_ASSIGN_OR_RETURN(
      sqlite::ScopedStmt stmt,
      db.Prepare("SELECT id, info, credential, label_overrides, confirmed "
                 "FROM peripheries ORDER BY id"));
  std::vector<StoredPeriphery> out;
  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    StoredPeriphery p;
    const absl::string_view info = stmt->ColumnBlob(1);
    const absl::string_view overrides = stmt->ColumnBlob(3);
    if (!p.info.ParseFromArray(info.data(), static_cast<int>(info.size())) ||
        !p.label_overrides.ParseFromArray(overrides.data(),
                                          static_cast<int>(overrides.size()))) {
      return absl::DataLossError(absl::StrCat(
          path_, ": stored periphery ", stmt->ColumnText(0), " is corrupt"));
    }
    p.credential = std::string(stmt->ColumnText(2));
    p.confirmed = stmt->ColumnInt(4) != 0;
    out.push_back(std::move(p));
  }
  if (rc != SQLITE_DONE) {
    return sqlite::WithPath(db.Error(rc, "load peripheries"), path_);
  }
  return out;
}

namespace {

// Every stored token of one kind (operator or join), ordered by id. `what`
// names the load in errors ("load tokens").
template <typename Stored>
absl::StatusOr<std::vector<Stored>> LoadTokensOfKind(sqlite::Db& db, int kind,
                                                     const std::string& path,
                                                     absl::string_view what) {
  VARAN_ASSIGN_OR_RETURN(
      sqlite::ScopedStmt stmt,
      db.Prepare(absl::StrCat("SELECT id, info, hash FROM tokens WHERE kind = ",
                              kind, " ORDER BY id")));
  std::vector<Stored> out;
  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    Stored t;
    const absl::string_view info = stmt->ColumnBlob(1);
    if (!t.info.ParseFromArray(info.data(), static_cast<int>(info.size()))) {
      return absl::DataLossError(absl::StrCat(
          path, ": stored token ", stmt->ColumnText(0), " is corrupt"));
    }
    t.hash = std::string(stmt->ColumnText(2));
    out.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return sqlite::WithPath(db.Error(rc, what), path);
  return out;
}

}  // namespace

absl::StatusOr<std::vector<StoredToken>> SqliteStore::LoadTokens() {
  absl::MutexLock lock(&read_mu_);
  return LoadTokensOfKind<StoredToken>(*reader_, sqlite::kOperatorTokenKind,
                                       path_, "load tokens");
}

absl::StatusOr<std::vector<StoredJoinToken>> SqliteStore::LoadJoinTokens() {
  absl::MutexLock lock(&read_mu_);
  return LoadTokensOfKind<StoredJoinToken>(*reader_, sqlite::kJoinTokenKind,
                                           path_, "load join tokens");
}

absl::StatusOr<StoredJob> SqliteStore::LoadJobLocked(const std::string& id,
                                                     std::string record) {
  sqlite::Db& db = *reader_;
  StoredJob job;
  if (!job.record.ParseFromString(record)) {
    return absl::DataLossError(
        absl::StrCat(path_, ": stored job ", id, " is corrupt"));
  }
  VARAN_ASSIGN_OR_RETURN(
      sqlite::ScopedStmt stmt,
      db.Prepare("SELECT event FROM job_events WHERE job_id = ? ORDER BY seq"));
  stmt->BindText(1, id);
  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    const absl::string_view blob = stmt->ColumnBlob(0);
    JobEvent& e = job.events.emplace_back();
    if (!e.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
      return absl::DataLossError(
          absl::StrCat(path_, ": a stored event of job ", id, " is corrupt"));
    }
  }
  if (rc != SQLITE_DONE) {
    return sqlite::WithPath(
        db.Error(rc, absl::StrCat("load events of job ", id)), path_);
  }
  return job;
}

absl::StatusOr<StoredJob> SqliteStore::LoadJob(const std::string& id) {
  absl::MutexLock lock(&read_mu_);
  sqlite::Db& db = *reader_;
  sqlite::ReadTransaction txn(db);
  VARAN_RETURN_IF_ERROR(sqlite::WithPath(txn.status(), path_));
  std::string record;
  {
    VARAN_ASSIGN_OR_RETURN(sqlite::ScopedStmt stmt,
                           db.Prepare("SELECT record FROM jobs WHERE id = ?"));
    stmt->BindText(1, id);
    const int rc = stmt->Step();
    if (rc == SQLITE_DONE) {
      return absl::NotFoundError(absl::StrCat("job \"", id, "\" not found"));
    }
    if (rc != SQLITE_ROW) {
      return sqlite::WithPath(db.Error(rc, absl::StrCat("load job ", id)),
                              path_);
    }
    record = std::string(stmt->ColumnBlob(0));
  }
  return LoadJobLocked(id, std::move(record));
}

absl::StatusOr<std::vector<StoredJob>> SqliteStore::LoadUnfinishedJobs() {
  absl::MutexLock lock(&read_mu_);
  sqlite::Db& db = *reader_;
  sqlite::ReadTransaction txn(db);
  VARAN_RETURN_IF_ERROR(sqlite::WithPath(txn.status(), path_));
  std::vector<std::pair<std::string, std::string>> rows;  // id, record
  {
    VARAN_ASSIGN_OR_RETURN(
        sqlite::ScopedStmt stmt,
        db.Prepare("SELECT id, record FROM jobs WHERE state = ? ORDER BY id"));
    stmt->BindInt(1, kRunning);
    int rc;
    while ((rc = stmt->Step()) == SQLITE_ROW) {
      rows.emplace_back(stmt->ColumnText(0), stmt->ColumnBlob(1));
    }
    if (rc != SQLITE_DONE) {
      return sqlite::WithPath(db.Error(rc, "load unfinished jobs"), path_);
    }
  }
  std::vector<StoredJob> out;
  out.reserve(rows.size());
  for (auto& [id, record] : rows) {
    VARAN_ASSIGN_OR_RETURN(StoredJob job, LoadJobLocked(id, std::move(record)));
    out.push_back(std::move(job));
  }
  return out;
}

absl::StatusOr<JobPage> SqliteStore::ListJobs(const JobQuery& query) {
  // Built from fixed fragments only; values are bound.
  std::string sql = "SELECT j.record FROM jobs AS j";
  if (!query.periphery.empty()) {
    sql += " JOIN job_targets AS t ON t.job_id = j.id AND t.name = ?";
  }
  sql += " WHERE 1";
  if (!query.before_id.empty()) sql += " AND j.id < ?";
  std::vector<int64_t> states;
  for (varan::v1::JobState s : query.states) states.push_back(s);
  std::sort(states.begin(), states.end());
  states.erase(std::unique(states.begin(), states.end()), states.end());
  if (!states.empty()) {
    sql += " AND j.state IN (?";
    for (size_t i = 1; i < states.size(); ++i) sql += ", ?";
    sql += ")";
  }
  if (!query.created_by.empty()) sql += " AND j.created_by = ?";
  if (query.created_after) sql += " AND j.create_time >= ?";
  if (query.created_before) sql += " AND j.create_time < ?";
  sql += " ORDER BY j.id DESC LIMIT ?";

  absl::MutexLock lock(&read_mu_);
  sqlite::Db& db = *reader_;
  VARAN_ASSIGN_OR_RETURN(sqlite::ScopedStmt stmt, db.Prepare(sql));
  int i = 1;
  if (!query.periphery.empty()) stmt->BindText(i++, query.periphery);
  if (!query.before_id.empty()) stmt->BindText(i++, query.before_id);
  for (int64_t s : states) stmt->BindInt(i++, s);
  if (!query.created_by.empty()) stmt->BindText(i++, query.created_by);
  if (query.created_after) {
    stmt->BindInt(i++, absl::ToUnixNanos(*query.created_after));
  }
  if (query.created_before) {
    stmt->BindInt(i++, absl::ToUnixNanos(*query.created_before));
  }
  // One more than asked, to know whether there are more.
  const size_t limit =
      std::min<size_t>(query.limit, std::numeric_limits<int32_t>::max());
  stmt->BindInt(i++, static_cast<int64_t>(limit) + 1);

  JobPage page;
  int rc;
  while ((rc = stmt->Step()) == SQLITE_ROW) {
    if (page.jobs.size() == limit) {
      page.more = true;
      break;
    }
    const absl::string_view blob = stmt->ColumnBlob(0);
    Job& job = page.jobs.emplace_back();
    if (!job.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
      return absl::DataLossError(
          absl::StrCat(path_, ": a stored job record is corrupt"));
    }
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    return sqlite::WithPath(db.Error(rc, "list jobs"), path_);
  }
  return page;
}

// --- Output ----------------------------------------------------------------

absl::StatusOr<StoredOutput> SqliteStore::ReadOutput(const OutputKey& key,
                                                     uint64_t offset,
                                                     uint64_t max_bytes) {
  VARAN_RETURN_IF_ERROR(output::CheckKey(key, "read output"));
  const std::string what =
      absl::StrCat("read output of job ", key.job_id, " target ", key.target);
  absl::MutexLock lock(&read_mu_);
  sqlite::Db& db = *reader_;
  sqlite::ReadTransaction txn(db);
  VARAN_RETURN_IF_ERROR(sqlite::WithPath(txn.status(), path_));
  StoredOutput result;
  absl::StatusOr<std::optional<sqlite::OutputStreamRow>> row =
      sqlite::FindOutputStream(db, key, what);
  if (!row.ok()) return sqlite::WithPath(row.status(), path_);
  if (!row->has_value()) {
    VARAN_ASSIGN_OR_RETURN(bool exists, sqlite::JobExists(db, key.job_id));
    if (!exists) {
      return absl::NotFoundError(absl::StrCat(what, ": no such job"));
    }
    return result;
  }
  const int64_t id = (*row)->id;
  result.extent = output::ExtentOf((*row)->state);
  if (max_bytes == 0) return result;
  // From the row holding `offset` (the last one starting at or before it).
  VARAN_ASSIGN_OR_RETURN(
      sqlite::ScopedStmt stmt,
      db.Prepare("SELECT pos, data FROM output_chunks WHERE stream_id = ?1 "
                 "AND pos >= coalesce((SELECT max(pos) FROM output_chunks "
                 "WHERE stream_id = ?1 AND pos <= ?2), 0) ORDER BY pos"));
  stmt->BindInt(1, id);
  stmt->BindInt(2, static_cast<int64_t>(std::min<uint64_t>(
                       offset, std::numeric_limits<int64_t>::max())));
  uint64_t budget = max_bytes;
  int rc = SQLITE_DONE;
  while (budget > 0 && (rc = stmt->Step()) == SQLITE_ROW) {
    output::AddPiece(result.extent, offset,
                     static_cast<uint64_t>(stmt->ColumnInt(0)),
                     stmt->ColumnBlob(1), &budget, &result.pieces);
  }
  if (budget > 0 && rc != SQLITE_DONE) {
    return sqlite::WithPath(db.Error(rc, what), path_);
  }
  return result;
}

absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>>
SqliteStore::OutputExtents(const std::string& job_id) {
  const std::string what = absl::StrCat("output extents of job ", job_id);
  absl::MutexLock lock(&read_mu_);
  sqlite::Db& db = *reader_;
  sqlite::ReadTransaction txn(db);
  VARAN_RETURN_IF_ERROR(sqlite::WithPath(txn.status(), path_));
  std::vector<std::pair<OutputKey, OutputExtent>> result;
  {
    VARAN_ASSIGN_OR_RETURN(
        sqlite::ScopedStmt stmt,
        db.Prepare("SELECT target, stream, end_offset, head_bytes, "
                   "tail_bytes, stored FROM output_streams WHERE job_id = ? "
                   "ORDER BY target, stream"));
    stmt->BindText(1, job_id);
    int rc;
    while ((rc = stmt->Step()) == SQLITE_ROW) {
      OutputKey key;
      key.job_id = job_id;
      key.target = std::string(stmt->ColumnText(0));
      key.stream = static_cast<varan::v1::OutputStream>(stmt->ColumnInt(1));
      result.emplace_back(std::move(key),
                          output::ExtentOf(sqlite::StreamStateAt(stmt, 2)));
    }
    if (rc != SQLITE_DONE) return sqlite::WithPath(db.Error(rc, what), path_);
  }
  if (result.empty()) {
    VARAN_ASSIGN_OR_RETURN(bool exists, sqlite::JobExists(db, job_id));
    if (!exists)
      return absl::NotFoundError(absl::StrCat(what, ": no such job"));
  }
  return result;
}

}  // namespace varan::core
