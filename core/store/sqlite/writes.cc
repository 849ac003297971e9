// The writer's statements: one handler per write op (core/store/sqlite/ops.h).
#include <algorithm>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/store/output_plan.h"
#include "core/store/sqlite/ops.h"

namespace varan::core::sqlite {
namespace {

// Runs `body`, undoing its partial writes if it fails (a multi-row write is
// all or nothing, while the rest of the batch goes on).
absl::Status Atomically(Db& db, const std::function<absl::Status()>& body) {
  absl::Status s = [&]() -> absl::Status {
    VARAN_ASSIGN_OR_RETURN(ScopedStmt sp, db.Prepare("SAVEPOINT op"));
    if (int rc = sp->Step(); rc != SQLITE_DONE) {
      return db.Error(rc, "savepoint");
    }
    return absl::OkStatus();
  }();
  if (!s.ok()) return s;
  s = body();
  if (!db.InTransaction()) return s;
  if (!s.ok()) {
    auto undo = db.Prepare("ROLLBACK TO op");
    if (undo.ok()) (void)(*undo)->Step();
  }
  auto release = db.Prepare("RELEASE op");
  if (!release.ok()) return s.ok() ? release.status() : s;
  if (int rc = (*release)->Step(); rc != SQLITE_DONE && s.ok()) {
    return db.Error(rc, "release savepoint");
  }
  return s;
}

// One overload per op: a new op without one does not compile.
class Writer {
 public:
  explicit Writer(Db& db) : db_(db) {}

  absl::Status operator()(const PeripheryOp& p) {
    const std::string what = absl::StrCat("save periphery ", p.id);
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db_.Prepare("INSERT OR REPLACE INTO peripheries (id, name, state, "
                    "info, credential, label_overrides, confirmed) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)"));
    stmt->BindText(1, p.id);
    stmt->BindText(2, p.name);
    stmt->BindInt(3, p.state);
    stmt->BindBlob(4, p.info);
    stmt->BindText(5, p.credential);
    stmt->BindBlob(6, p.label_overrides);
    stmt->BindInt(7, p.confirmed ? 1 : 0);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db_.Error(rc, what);
    return absl::OkStatus();
  }

  absl::Status operator()(const TokenOp& t) {
    const std::string what = absl::StrCat("save token ", t.id);
    std::string info = t.info;
    if (t.kind == kJoinTokenKind) {
      // Its use count is UseJoinToken's: the stored one stays.
      VARAN_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                             StoredJoinInfo(t.id, what));
      if (stored) {
        VARAN_ASSIGN_OR_RETURN(info, queued::WithStoredUses(t, *stored));
      }
    }
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db_.Prepare("INSERT OR REPLACE INTO tokens (id, kind, name, hash, "
                    "info) VALUES (?, ?, ?, ?, ?)"));
    stmt->BindText(1, t.id);
    stmt->BindInt(2, t.kind);
    stmt->BindText(3, t.name);
    stmt->BindText(4, t.hash);
    stmt->BindBlob(5, info);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db_.Error(rc, what);
    return absl::OkStatus();
  }

  absl::Status operator()(const JoinUseOp& u) {
    const std::string what = absl::StrCat("count a use of join token ", u.id);
    VARAN_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                           StoredJoinInfo(u.id, what));
    if (!stored) return NoSuchJoinToken(u.id);
    VARAN_ASSIGN_OR_RETURN(std::optional<std::string> info,
                           queued::ApplyJoinUseOp(u, *stored));
    if (!info) return absl::OkStatus();
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db_.Prepare("UPDATE tokens SET info = ? WHERE id = ?"));
    stmt->BindBlob(1, *info);
    stmt->BindText(2, u.id);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db_.Error(rc, what);
    return absl::OkStatus();
  }

  absl::Status operator()(const CreateJobOp& c) {
    const std::string what = absl::StrCat("create job ", c.id);
    return Atomically(db_, [&]() -> absl::Status {
      {
        VARAN_ASSIGN_OR_RETURN(
            ScopedStmt stmt,
            db_.Prepare("INSERT INTO jobs (id, create_time, state, "
                        "created_by, record) VALUES (?, ?, ?, ?, ?)"));
        stmt->BindText(1, c.id);
        stmt->BindInt(2, c.create_time);
        stmt->BindInt(3, c.state);
        stmt->BindText(4, c.created_by);
        stmt->BindBlob(5, c.record);
        if (int rc = stmt->Step(); rc != SQLITE_DONE) {
          return db_.Error(rc, what);
        }
      }
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt target,
          db_.Prepare("INSERT OR IGNORE INTO job_targets (job_id, name) "
                      "VALUES (?, ?)"));
      for (const std::string& name : c.targets) {
        target->BindText(1, c.id);
        target->BindText(2, name);
        const int rc = target->Step();
        target->Reset();
        if (rc != SQLITE_DONE) return db_.Error(rc, what);
      }
      return absl::OkStatus();
    });
  }

  absl::Status operator()(const EventsOp& e) {
    const auto insert = [&]() -> absl::Status {
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt stmt,
          db_.Prepare(
              "INSERT INTO job_events (job_id, seq, event) VALUES (?, ?, ?)"));
      for (const auto& [seq, event] : e.events) {
        stmt->BindText(1, e.job_id);
        stmt->BindInt(2, seq);
        stmt->BindBlob(3, event);
        const int rc = stmt->Step();
        stmt->Reset();
        if (rc != SQLITE_DONE) {
          return db_.Error(
              rc, absl::StrCat("append event ", seq, " of job ", e.job_id));
        }
      }
      return absl::OkStatus();
    };
    return e.events.size() == 1 ? insert() : Atomically(db_, insert);
  }

  absl::Status operator()(const FinishJobOp& f) {
    const std::string what = absl::StrCat("finish job ", f.id);
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db_.Prepare("UPDATE jobs SET state = ?, record = ? WHERE id = ?"));
    stmt->BindInt(1, f.state);
    stmt->BindBlob(2, f.record);
    stmt->BindText(3, f.id);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db_.Error(rc, what);
    if (sqlite3_changes(db_.get()) == 0) {
      return absl::NotFoundError(absl::StrCat(what, ": no such job"));
    }
    return absl::OkStatus();
  }

  absl::Status operator()(const OutputOp& o) {
    VARAN_RETURN_IF_ERROR(output::CheckKey(o.key, "append output"));
    const std::string what = absl::StrCat("append output of job ", o.key.job_id,
                                          " target ", o.key.target);
    VARAN_ASSIGN_OR_RETURN(std::optional<OutputStreamRow> row,
                           FindOutputStream(db_, o.key, what));
    int64_t id = row ? row->id : 0;
    output::StreamState state = row ? row->state : output::StreamState{};
    if (id == 0) {
      VARAN_ASSIGN_OR_RETURN(bool exists, JobExists(db_, o.key.job_id));
      if (!exists)
        return absl::NotFoundError(absl::StrCat(what, ": no such job"));
      // SQL integers are signed.
      state.head_bytes = std::min<uint64_t>(o.retention.head_bytes, kMaxInt);
      state.tail_bytes = std::min<uint64_t>(o.retention.tail_bytes, kMaxInt);
    }
    VARAN_ASSIGN_OR_RETURN(
        output::AppendPlan plan,
        output::PlanAppend(o.key, state, o.offset, o.data.size()));
    if (plan.noop) return absl::OkStatus();
    return Atomically(db_, [&]() -> absl::Status {
      if (id == 0) {
        VARAN_ASSIGN_OR_RETURN(
            ScopedStmt stmt,
            db_.Prepare("INSERT INTO output_streams (job_id, target, stream, "
                        "end_offset, head_bytes, tail_bytes, stored) "
                        "VALUES (?, ?, ?, 0, ?, ?, 0)"));
        stmt->BindText(1, o.key.job_id);
        stmt->BindText(2, o.key.target);
        stmt->BindInt(3, o.key.stream);
        stmt->BindInt(4, static_cast<int64_t>(state.head_bytes));
        stmt->BindInt(5, static_cast<int64_t>(state.tail_bytes));
        if (int rc = stmt->Step(); rc != SQLITE_DONE) {
          return db_.Error(rc, what);
        }
        id = sqlite3_last_insert_rowid(db_.get());
      }
      if (!plan.dropped.empty()) {
        VARAN_RETURN_IF_ERROR(
            DropTail(id, state.head_bytes, plan.dropped, &state.stored, what));
      }
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt insert,
          db_.Prepare("INSERT INTO output_chunks (stream_id, pos, size, data) "
                      "VALUES (?, ?, ?, ?)"));
      for (const output::Range& r : {plan.head, plan.tail}) {
        if (r.empty()) continue;
        insert->BindInt(1, id);
        insert->BindInt(2, static_cast<int64_t>(r.begin));
        insert->BindInt(3, static_cast<int64_t>(r.size()));
        insert->BindBlob(
            4, absl::string_view(o.data).substr(r.begin - o.offset, r.size()));
        const int rc = insert->Step();
        insert->Reset();
        if (rc != SQLITE_DONE) return db_.Error(rc, what);
        state.stored += r.size();
      }
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt update,
          db_.Prepare("UPDATE output_streams SET end_offset = ?, stored = ? "
                      "WHERE id = ?"));
      update->BindInt(1, static_cast<int64_t>(plan.new_end));
      update->BindInt(2, static_cast<int64_t>(state.stored));
      update->BindInt(3, id);
      if (int rc = update->Step(); rc != SQLITE_DONE) {
        return db_.Error(rc, what);
      }
      return absl::OkStatus();
    });
  }

  absl::Status operator()(const SyncOp&) { return absl::OkStatus(); }
  absl::Status operator()(const PruneOp&) { return absl::OkStatus(); }

 private:
  static constexpr uint64_t kMaxInt = std::numeric_limits<int64_t>::max();

  // The info column of join token `id`, or none if there is no such token.
  absl::StatusOr<std::optional<std::string>> StoredJoinInfo(
      const std::string& id, const std::string& what) {
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db_.Prepare("SELECT info FROM tokens WHERE id = ? AND kind = ?"));
    stmt->BindText(1, id);
    stmt->BindInt(2, kJoinTokenKind);
    const int rc = stmt->Step();
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) return db_.Error(rc, what);
    return std::string(stmt->ColumnBlob(0));
  }

  // Deletes the tail rows of stream `id` that end at or before
  // dropped.end, and takes the bytes in `dropped` off `*stored` (a row
  // straddling dropped.end stays whole; reads clip it).
  absl::Status DropTail(int64_t id, uint64_t head_bytes, output::Range dropped,
                        uint64_t* stored, const std::string& what) {
    {
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt stmt,
          db_.Prepare("SELECT pos, size FROM output_chunks WHERE stream_id = ? "
                      "AND pos >= ? AND pos < ?"));
      stmt->BindInt(1, id);
      stmt->BindInt(2, static_cast<int64_t>(head_bytes));
      stmt->BindInt(3, static_cast<int64_t>(dropped.end));
      int rc;
      while ((rc = stmt->Step()) == SQLITE_ROW) {
        const auto pos = static_cast<uint64_t>(stmt->ColumnInt(0));
        const auto size = static_cast<uint64_t>(stmt->ColumnInt(1));
        *stored -= output::Overlap({pos, pos + size}, dropped);
      }
      if (rc != SQLITE_DONE) return db_.Error(rc, what);
    }
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt del,
        db_.Prepare("DELETE FROM output_chunks WHERE stream_id = ?1 AND "
                    "pos >= ?2 AND pos < ?3 AND pos + size <= ?3"));
    del->BindInt(1, id);
    del->BindInt(2, static_cast<int64_t>(head_bytes));
    del->BindInt(3, static_cast<int64_t>(dropped.end));
    if (int rc = del->Step(); rc != SQLITE_DONE) return db_.Error(rc, what);
    return absl::OkStatus();
  }

  Db& db_;
};

}  // namespace

output::StreamState StreamStateAt(ScopedStmt& stmt, int first) {
  output::StreamState state;
  state.end = static_cast<uint64_t>(stmt->ColumnInt(first));
  state.head_bytes = static_cast<uint64_t>(stmt->ColumnInt(first + 1));
  state.tail_bytes = static_cast<uint64_t>(stmt->ColumnInt(first + 2));
  state.stored = static_cast<uint64_t>(stmt->ColumnInt(first + 3));
  return state;
}

absl::StatusOr<std::optional<OutputStreamRow>> FindOutputStream(
    Db& db, const OutputKey& key, absl::string_view what) {
  VARAN_ASSIGN_OR_RETURN(
      ScopedStmt stmt,
      db.Prepare("SELECT id, end_offset, head_bytes, tail_bytes, stored "
                 "FROM output_streams WHERE job_id = ? AND target = ? AND "
                 "stream = ?"));
  stmt->BindText(1, key.job_id);
  stmt->BindText(2, key.target);
  stmt->BindInt(3, key.stream);
  const int rc = stmt->Step();
  if (rc == SQLITE_DONE) return std::nullopt;
  if (rc != SQLITE_ROW) return db.Error(rc, what);
  return OutputStreamRow{stmt->ColumnInt(0), StreamStateAt(stmt, 1)};
}

absl::StatusOr<bool> JobExists(Db& db, const std::string& id) {
  VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt,
                         db.Prepare("SELECT 1 FROM jobs WHERE id = ?"));
  stmt->BindText(1, id);
  const int rc = stmt->Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return db.Error(rc, absl::StrCat("look up job ", id));
}

absl::Status ExecuteWrite(Db& db, Op& op) { return std::visit(Writer(db), op); }

}  // namespace varan::core::sqlite
