// The writer's statements: one handler per write op (core/store/sqlite/ops.h).
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
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
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db_.Prepare("INSERT OR REPLACE INTO tokens (id, kind, name, hash, "
                    "info) VALUES (?, ?, ?, ?, ?)"));
    stmt->BindText(1, t.id);
    stmt->BindInt(2, t.kind);
    stmt->BindText(3, t.name);
    stmt->BindText(4, t.hash);
    stmt->BindBlob(5, t.info);
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

  absl::Status operator()(const SyncOp&) { return absl::OkStatus(); }
  absl::Status operator()(const PruneOp&) { return absl::OkStatus(); }

 private:
  Db& db_;
};

}  // namespace

bool IsWrite(const Op& op) {
  return std::visit(Overloaded{
                        [](const PeripheryOp&) { return true; },
                        [](const TokenOp&) { return true; },
                        [](const CreateJobOp&) { return true; },
                        [](const EventsOp&) { return true; },
                        [](const FinishJobOp&) { return true; },
                        [](const SyncOp&) { return false; },
                        [](const PruneOp&) { return false; },
                    },
                    op);
}

CommitCallback* DoneOf(Op& op) {
  return std::visit(
      Overloaded{
          [](PeripheryOp&) -> CommitCallback* { return nullptr; },
          [](TokenOp& t) -> CommitCallback* { return &t.done; },
          [](CreateJobOp& c) -> CommitCallback* { return &c.done; },
          [](EventsOp&) -> CommitCallback* { return nullptr; },
          [](FinishJobOp& f) -> CommitCallback* { return &f.done; },
          [](SyncOp&) -> CommitCallback* { return nullptr; },
          [](PruneOp&) -> CommitCallback* { return nullptr; },
      },
      op);
}

absl::Status ExecuteWrite(Db& db, Op& op) { return std::visit(Writer(db), op); }

}  // namespace varan::core::sqlite
