// Reads in PostgresStore (core/store/postgres_store.h), on the reader
// connection under read_mu_; reads of several statements in one REPEATABLE
// READ transaction, so they see one snapshot.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/store/output_plan.h"
#include "core/store/postgres/conn.h"
#include "core/store/postgres/ops.h"
#include "core/store/postgres_store.h"

namespace varan::core {
namespace {

using postgres::Conn;
using postgres::Params;
using postgres::Result;
using varan::v1::Job;
using varan::v1::JobEvent;

constexpr int64_t kRunning = varan::v1::JOB_STATE_RUNNING;

template <typename Message>
bool ParseBytes(Message& m, absl::string_view bytes) {
  return m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// Every stored token of one kind (operator or join), ordered by id.
template <typename Stored>
absl::StatusOr<std::vector<Stored>> LoadTokensOfKind(Conn& db, int64_t kind,
                                                     absl::string_view what) {
  VARAN_ASSIGN_OR_RETURN(
      Result r, db.Run("SELECT id, info, hash FROM tokens WHERE kind = $1 "
                       "ORDER BY id",
                       Params().Int(kind), what));
  std::vector<Stored> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    Stored& t = out.emplace_back();
    if (!ParseBytes(t.info, r.Bytes(i, 1))) {
      return absl::DataLossError(absl::StrCat(
          db.description(), ": stored token ", r.Bytes(i, 0), " is corrupt"));
    }
    t.hash = std::string(r.Bytes(i, 2));
  }
  return out;
}

}  // namespace

absl::StatusOr<Conn*> PostgresStore::Reader() {
  if (reader_->Broken()) VARAN_RETURN_IF_ERROR(reader_->Reconnect());
  return reader_.get();
}

// The rows of a SELECT id, info, credential, label_overrides, confirmed.
static absl::StatusOr<std::vector<StoredPeriphery>> ReadPeripheries(Conn& db,
                                                                    Result& r) {
  std::vector<StoredPeriphery> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    StoredPeriphery& p = out.emplace_back();
    if (!ParseBytes(p.info, r.Bytes(i, 1)) ||
        !ParseBytes(p.label_overrides, r.Bytes(i, 3))) {
      return absl::DataLossError(absl::StrCat(db.description(),
                                              ": stored periphery ",
                                              r.Bytes(i, 0), " is corrupt"));
    }
    p.credential = std::string(r.Bytes(i, 2));
    p.confirmed = r.Int(i, 4) != 0;
  }
  return out;
}

absl::StatusOr<std::vector<StoredPeriphery>> PostgresStore::LoadPeripheries() {
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  VARAN_ASSIGN_OR_RETURN(
      Result r, db->Run("SELECT id, info, credential, label_overrides, "
                        "confirmed FROM peripheries ORDER BY id",
                        "load peripheries"));
  return ReadPeripheries(*db, r);
}

absl::StatusOr<std::vector<StoredPeriphery>>
PostgresStore::LoadChangedPeripheries(uint64_t* cursor) {
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  // First the oldest transaction running now: whatever the read below does
  // not see was written by it or a later one, so the next read (from it)
  // sees it. Rows it does see again are merely read twice.
  VARAN_ASSIGN_OR_RETURN(
      Result now,
      db->Run("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::BIGINT",
              "read the oldest running transaction"));
  const int64_t next = now.Int(0, 0);
  VARAN_ASSIGN_OR_RETURN(
      Result r,
      db->Run("SELECT id, info, credential, label_overrides, confirmed FROM "
              "peripheries WHERE saved_by >= $1::TEXT::XID8 ORDER BY id",
              Params().Int(static_cast<int64_t>(*cursor)),
              "load changed peripheries"));
  auto out = ReadPeripheries(*db, r);
  if (out.ok()) *cursor = static_cast<uint64_t>(next);
  return out;
}

absl::StatusOr<std::vector<StoredToken>> PostgresStore::LoadTokens() {
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  return LoadTokensOfKind<StoredToken>(*db, queued::kOperatorTokenKind,
                                       "load tokens");
}

absl::StatusOr<std::vector<StoredJoinToken>> PostgresStore::LoadJoinTokens() {
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  return LoadTokensOfKind<StoredJoinToken>(*db, queued::kJoinTokenKind,
                                           "load join tokens");
}

absl::StatusOr<StoredJob> PostgresStore::LoadJobLocked(Conn& db,
                                                       const std::string& id,
                                                       std::string record) {
  StoredJob job;
  if (!job.record.ParseFromString(record)) {
    return absl::DataLossError(
        absl::StrCat(db.description(), ": stored job ", id, " is corrupt"));
  }
  VARAN_ASSIGN_OR_RETURN(
      Result r,
      db.Run("SELECT event FROM job_events WHERE job_id = $1 ORDER BY seq",
             Params().Text(id), absl::StrCat("load events of job ", id)));
  job.events.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    if (!ParseBytes(job.events.emplace_back(), r.Bytes(i, 0))) {
      return absl::DataLossError(absl::StrCat(
          db.description(), ": a stored event of job ", id, " is corrupt"));
    }
  }
  return job;
}

absl::StatusOr<StoredJob> PostgresStore::LoadJob(const std::string& id) {
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  postgres::Transaction txn(*db, /*read_only=*/true);
  VARAN_RETURN_IF_ERROR(txn.status());
  VARAN_ASSIGN_OR_RETURN(
      Result r, db->Run("SELECT record FROM jobs WHERE id = $1",
                        Params().Text(id), absl::StrCat("load job ", id)));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("job \"", id, "\" not found"));
  }
  return LoadJobLocked(*db, id, std::string(r.Bytes(0, 0)));
}

absl::StatusOr<std::vector<StoredJob>> PostgresStore::LoadUnfinishedJobs() {
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  postgres::Transaction txn(*db, /*read_only=*/true);
  VARAN_RETURN_IF_ERROR(txn.status());
  VARAN_ASSIGN_OR_RETURN(
      Result r,
      db->Run("SELECT id, record FROM jobs WHERE state = $1 ORDER BY id",
              Params().Int(kRunning), "load unfinished jobs"));
  std::vector<StoredJob> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) {
    VARAN_ASSIGN_OR_RETURN(StoredJob job,
                           LoadJobLocked(*db, std::string(r.Bytes(i, 0)),
                                         std::string(r.Bytes(i, 1))));
    out.push_back(std::move(job));
  }
  return out;
}

absl::StatusOr<JobPage> PostgresStore::ListJobs(const JobQuery& query) {
  // Built from fixed fragments only; values are parameters.
  Params params;
  int n = 0;
  const auto next = [&n] { return absl::StrCat("$", ++n); };
  std::string sql = "SELECT j.record FROM jobs AS j";
  if (!query.periphery.empty()) {
    sql += absl::StrCat(
        " JOIN job_targets AS t ON t.job_id = j.id AND t.name = ", next());
    params.Text(query.periphery);
  }
  sql += " WHERE TRUE";
  if (!query.before_id.empty()) {
    sql += absl::StrCat(" AND j.id < ", next());
    params.Text(query.before_id);
  }
  std::vector<int64_t> states;
  for (varan::v1::JobState s : query.states) states.push_back(s);
  std::sort(states.begin(), states.end());
  states.erase(std::unique(states.begin(), states.end()), states.end());
  if (!states.empty()) {
    sql += " AND j.state IN (";
    for (size_t i = 0; i < states.size(); ++i) {
      sql += absl::StrCat(i == 0 ? "" : ", ", next());
      params.Int(states[i]);
    }
    sql += ")";
  }
  if (!query.created_by.empty()) {
    sql += absl::StrCat(" AND j.created_by = ", next());
    params.Text(query.created_by);
  }
  if (query.created_after) {
    sql += absl::StrCat(" AND j.create_time >= ", next());
    params.Int(absl::ToUnixNanos(*query.created_after));
  }
  if (query.created_before) {
    sql += absl::StrCat(" AND j.create_time < ", next());
    params.Int(absl::ToUnixNanos(*query.created_before));
  }
  // One more than asked, to know whether there are more.
  const size_t limit =
      std::min<size_t>(query.limit, std::numeric_limits<int32_t>::max());
  sql += absl::StrCat(" ORDER BY j.id DESC LIMIT ", next());
  params.Int(static_cast<int64_t>(limit) + 1);

  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  VARAN_ASSIGN_OR_RETURN(Result r, db->Run(sql, params, "list jobs"));
  JobPage page;
  for (int i = 0; i < r.rows(); ++i) {
    if (page.jobs.size() == limit) {
      page.more = true;
      break;
    }
    if (!ParseBytes(page.jobs.emplace_back(), r.Bytes(i, 0))) {
      return absl::DataLossError(
          absl::StrCat(db->description(), ": a stored job record is corrupt"));
    }
  }
  return page;
}

// --- Output ----------------------------------------------------------------

absl::StatusOr<StoredOutput> PostgresStore::ReadOutput(const OutputKey& key,
                                                       uint64_t offset,
                                                       uint64_t max_bytes) {
  VARAN_RETURN_IF_ERROR(output::CheckKey(key, "read output"));
  const std::string what =
      absl::StrCat("read output of job ", key.job_id, " target ", key.target);
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  postgres::Transaction txn(*db, /*read_only=*/true);
  VARAN_RETURN_IF_ERROR(txn.status());
  StoredOutput result;
  VARAN_ASSIGN_OR_RETURN(std::optional<postgres::OutputStreamRow> row,
                         postgres::FindOutputStream(*db, key, what, false));
  if (!row.has_value()) {
    VARAN_ASSIGN_OR_RETURN(bool exists, postgres::JobExists(*db, key.job_id));
    if (!exists) {
      return absl::NotFoundError(absl::StrCat(what, ": no such job"));
    }
    return result;
  }
  result.extent = output::ExtentOf(row->state);
  if (max_bytes == 0) return result;
  // From the row holding `offset` (the last one starting at or before it),
  // a few rows at a time: rows are up to one append (a few hundred KiB).
  int64_t from = static_cast<int64_t>(
      std::min<uint64_t>(offset, std::numeric_limits<int64_t>::max()));
  {
    VARAN_ASSIGN_OR_RETURN(
        Result start,
        db->Run("SELECT coalesce(max(pos), 0) FROM output_chunks WHERE "
                "stream_id = $1 AND pos <= $2",
                Params().Int(row->id).Int(from), what));
    from = start.Int(0, 0);
  }
  uint64_t budget = max_bytes;
  while (budget > 0) {
    VARAN_ASSIGN_OR_RETURN(
        Result r, db->Run("SELECT pos, data FROM output_chunks WHERE "
                          "stream_id = $1 AND pos >= $2 ORDER BY pos LIMIT 8",
                          Params().Int(row->id).Int(from), what));
    for (int i = 0; i < r.rows() && budget > 0; ++i) {
      output::AddPiece(result.extent, offset,
                       static_cast<uint64_t>(r.Int(i, 0)), r.Bytes(i, 1),
                       &budget, &result.pieces);
      from = r.Int(i, 0) + 1;
    }
    if (r.rows() < 8) break;
  }
  return result;
}

absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>>
PostgresStore::OutputExtents(const std::string& job_id) {
  const std::string what = absl::StrCat("output extents of job ", job_id);
  absl::MutexLock lock(&read_mu_);
  VARAN_ASSIGN_OR_RETURN(Conn * db, Reader());
  postgres::Transaction txn(*db, /*read_only=*/true);
  VARAN_RETURN_IF_ERROR(txn.status());
  VARAN_ASSIGN_OR_RETURN(
      Result r, db->Run("SELECT target, stream, end_offset, head_bytes, "
                        "tail_bytes, stored FROM output_streams WHERE job_id "
                        "= $1 ORDER BY target, stream",
                        Params().Text(job_id), what));
  std::vector<std::pair<OutputKey, OutputExtent>> result;
  for (int i = 0; i < r.rows(); ++i) {
    OutputKey key;
    key.job_id = job_id;
    key.target = std::string(r.Bytes(i, 0));
    key.stream = static_cast<varan::v1::OutputStream>(r.Int(i, 1));
    result.emplace_back(std::move(key),
                        output::ExtentOf(postgres::StreamStateAt(r, i, 2)));
  }
  if (result.empty()) {
    VARAN_ASSIGN_OR_RETURN(bool exists, postgres::JobExists(*db, job_id));
    if (!exists) {
      return absl::NotFoundError(absl::StrCat(what, ": no such job"));
    }
  }
  return result;
}

}  // namespace varan::core
