// The SQLite wrapper under SqliteStore (core/store/sqlite_store.h): one
// connection with its cache of prepared statements (Db), a statement (Stmt)
// and a borrowed cached statement that resets itself (ScopedStmt), a read
// transaction, and the mapping of SQLite's result codes to absl codes.
//
// Nothing here is thread-safe: each Db belongs to one user at a time (the
// writer thread, or readers under SqliteStore's read mutex).
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace varan::core::sqlite {

// The absl code for a SQLite (extended) result code.
absl::StatusCode CodeFor(int rc);

// `s` with the database path in its message; DATA_LOSS says the file is not
// a valid database.
absl::Status WithPath(const absl::Status& s, const std::string& path);

// One prepared statement. Bind* errors (SQLITE_TOOBIG, ...) are kept and
// returned by the next Step().
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Parameters are 1-based. Text and blobs are not copied: they must stay
  // valid until the statement is reset.
  void BindText(int i, absl::string_view v);
  void BindBlob(int i, absl::string_view v);
  void BindInt(int i, int64_t v) { Check(sqlite3_bind_int64(stmt_, i, v)); }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() {
    if (bind_rc_ != SQLITE_OK) return bind_rc_;
    return sqlite3_step(stmt_);
  }
  int64_t ColumnInt(int i) { return sqlite3_column_int64(stmt_, i); }
  // Valid until the next Step() or Reset().
  absl::string_view ColumnBlob(int i);
  absl::string_view ColumnText(int i);

  // Ends the statement's read (a statement left mid-result would keep its
  // snapshot open) and clears the bindings.
  void Reset();

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3_stmt* const stmt_;
  int bind_rc_ = SQLITE_OK;
};

// A cached statement borrowed for one use; resets it when done.
class ScopedStmt {
 public:
  explicit ScopedStmt(Stmt* stmt) : stmt_(stmt) {}
  ScopedStmt(ScopedStmt&& other) noexcept
      : stmt_(std::exchange(other.stmt_, nullptr)) {}
  ScopedStmt& operator=(ScopedStmt&&) = delete;
  ~ScopedStmt() {
    if (stmt_ != nullptr) stmt_->Reset();
  }
  Stmt* operator->() const { return stmt_; }

 private:
  Stmt* stmt_;
};

// One connection and its statement cache.
class Db {
 public:
  // Opens `path` read-write (never read-only: PERMISSION_DENIED if SQLite
  // could only open it so).
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path);

  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() const { return db_; }
  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

  // The error of the last call on this connection, after `what`.
  absl::Status Error(int rc, absl::string_view what) const;

  // Runs statements that return no rows.
  absl::Status Exec(const char* sql);

  // A statement from the cache, prepared on first use.
  absl::StatusOr<ScopedStmt> Prepare(const std::string& sql);

  // Runs `sql` and returns its single integer result.
  absl::StatusOr<int64_t> QueryInt(const std::string& sql);

  // Runs a PRAGMA that answers with one text row and returns it.
  absl::StatusOr<std::string> QueryText(const std::string& sql);

 private:
  static constexpr size_t kMaxCached = 128;

  explicit Db(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  std::map<std::string, std::unique_ptr<Stmt>, std::less<>> cache_;
};

// One read transaction: the queries made while it lives see one snapshot.
class ReadTransaction {
 public:
  explicit ReadTransaction(Db& db) : db_(db), status_(db.Exec("BEGIN")) {}
  ~ReadTransaction() {
    if (status_.ok()) (void)db_.Exec("COMMIT");
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  Db& db_;
  const absl::Status status_;
};

}  // namespace varan::core::sqlite
