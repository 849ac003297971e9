#include "core/store/sqlite/db.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace varan::core::sqlite {

absl::StatusCode CodeFor(int rc) {
  switch (rc) {
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
      return absl::StatusCode::kAlreadyExists;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      return absl::StatusCode::kNotFound;
    default:
      break;
  }
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_TOOBIG:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CANTOPEN:
    case SQLITE_CONSTRAINT:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::Status WithPath(const absl::Status& s, const std::string& path) {
  if (s.ok()) return s;
  if (s.code() == absl::StatusCode::kDataLoss) {
    return absl::DataLossError(
        absl::StrCat(path, " is not a valid database: ", s.message()));
  }
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

void Stmt::BindText(int i, absl::string_view v) {
  Check(sqlite3_bind_text64(stmt_, i, v.data() == nullptr ? "" : v.data(),
                            v.size(), SQLITE_STATIC, SQLITE_UTF8));
}

void Stmt::BindBlob(int i, absl::string_view v) {
  Check(sqlite3_bind_blob64(stmt_, i, v.data() == nullptr ? "" : v.data(),
                            v.size(), SQLITE_STATIC));
}

absl::string_view Stmt::ColumnBlob(int i) {
  const void* p = sqlite3_column_blob(stmt_, i);
  const int n = sqlite3_column_bytes(stmt_, i);
  if (p == nullptr) return absl::string_view();
  return absl::string_view(static_cast<const char*>(p), static_cast<size_t>(n));
}

absl::string_view Stmt::ColumnText(int i) {
  const unsigned char* p = sqlite3_column_text(stmt_, i);
  const int n = sqlite3_column_bytes(stmt_, i);
  if (p == nullptr) return absl::string_view();
  return absl::string_view(reinterpret_cast<const char*>(p),
                           static_cast<size_t>(n));
}

void Stmt::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  bind_rc_ = SQLITE_OK;
}

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  auto conn = std::unique_ptr<Db>(new Db(db));
  if (rc != SQLITE_OK) {
    return absl::Status(
        CodeFor(rc),
        absl::StrCat("cannot open ", path, ": ",
                     db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
  }
  sqlite3_extended_result_codes(db, 1);
  // SQLite quietly opens a file it may not write read-only; the store
  // must not run like that.
  if (sqlite3_db_readonly(db, "main") == 1) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is not writable (opened read-only)"));
  }
  return conn;
}

Db::~Db() {
  cache_.clear();  // statements before the connection
  sqlite3_close_v2(db_);
}

absl::Status Db::Error(int rc, absl::string_view what) const {
  std::string msg = sqlite3_errmsg(db_);
  // Bind errors do not set the connection's message.
  if (sqlite3_errcode(db_) != rc) msg = sqlite3_errstr(rc);
  absl::StatusCode code = CodeFor(rc);
  const int primary = rc & 0xff;
  if (primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR) {
    if (const int err = sqlite3_system_errno(db_); err != 0) {
      absl::StrAppend(&msg, " (", strerror(err), ")");
      if (err == EACCES || err == EPERM || err == EROFS) {
        code = absl::StatusCode::kPermissionDenied;
      }
    }
  }
  if (what.empty()) return absl::Status(code, msg);
  return absl::Status(code, absl::StrCat(what, ": ", msg));
}

absl::Status Db::Exec(const char* sql) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Error(rc, sql);
  return absl::OkStatus();
}

absl::StatusOr<ScopedStmt> Db::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    // Dynamic queries (ListJobs) have a bounded but growing set of forms.
    if (cache_.size() >= kMaxCached) cache_.clear();
    sqlite3_stmt* stmt = nullptr;
    const int rc =
        sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size() + 1),
                           SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return Error(rc, absl::StrCat("prepare \"", sql, "\""));
    }
    it = cache_.emplace(sql, std::make_unique<Stmt>(stmt)).first;
  }
  return ScopedStmt(it->second.get());
}

absl::StatusOr<int64_t> Db::QueryInt(const std::string& sql) {
  VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt, Prepare(sql));
  const int rc = stmt->Step();
  if (rc != SQLITE_ROW) return Error(rc, sql);
  return stmt->ColumnInt(0);
}

absl::StatusOr<std::string> Db::QueryText(const std::string& sql) {
  VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt, Prepare(sql));
  const int rc = stmt->Step();
  if (rc != SQLITE_ROW) return Error(rc, sql);
  return std::string(stmt->ColumnText(0));
}

}  // namespace varan::core::sqlite
