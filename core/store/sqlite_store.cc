#include "core/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_util.h"

namespace varan::core {
namespace {

using varan::v1::Job;
using varan::v1::JobEvent;

// Numbered schema steps: kMigrations[i] takes user_version i to i + 1.
// Append only; never edit a step that has shipped.
//
// Times are unix nanoseconds. Blobs are serialized varan.v1 messages: the
// columns beside them are copies of the fields that queries filter on.
constexpr const char* kMigrations[] = {
    // 1: peripheries and jobs.
    R"sql(
CREATE TABLE peripheries (
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  state INTEGER NOT NULL,          -- varan.v1.PeripheryState
  info BLOB NOT NULL,              -- varan.v1.Periphery
  credential TEXT NOT NULL,
  label_overrides BLOB NOT NULL,   -- varan.v1.UpdateLabelsRequest
  confirmed INTEGER NOT NULL
);
CREATE TABLE jobs (
  id TEXT PRIMARY KEY NOT NULL,    -- time-ordered: ORDER BY id is by age
  create_time INTEGER NOT NULL,
  state INTEGER NOT NULL,          -- varan.v1.JobState
  created_by TEXT NOT NULL,
  record BLOB NOT NULL             -- varan.v1.Job, without output
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_creator ON jobs (created_by, id);
CREATE INDEX jobs_by_create_time ON jobs (create_time);
CREATE TABLE job_targets (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  name TEXT NOT NULL,              -- periphery name
  PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
CREATE INDEX job_targets_by_name ON job_targets (name, job_id);
CREATE TABLE job_events (
  job_id TEXT NOT NULL REFERENCES jobs (id),
  seq INTEGER NOT NULL,
  event BLOB NOT NULL,             -- varan.v1.JobEvent
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
)sql",
    // 2: operator tokens and join tokens, as hashes of their secrets.
    R"sql(
CREATE TABLE tokens (
  id TEXT PRIMARY KEY NOT NULL,
  kind INTEGER NOT NULL,           -- 1: operator token, 2: join token
  name TEXT NOT NULL,
  hash TEXT NOT NULL,              -- SHA-256 of the secret, hex
  info BLOB NOT NULL               -- varan.v1.Token or varan.v1.JoinToken
);
)sql",
};

constexpr int64_t kOperatorTokenKind = 1;
constexpr int64_t kJoinTokenKind = 2;

constexpr int64_t kRunning = varan::v1::JOB_STATE_RUNNING;

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

int64_t UnixNanos(const google::protobuf::Timestamp& t) {
  return absl::ToUnixNanos(FromTimestamp(t));
}

// `record` serialized, without the targets' captured output (which the
// store never keeps in a record).
std::string SerializeWithoutOutput(const Job& record) {
  const bool has_output =
      std::any_of(record.targets().begin(), record.targets().end(),
                  [](const varan::v1::JobTarget& t) {
                    return !t.stdout().empty() || !t.stderr().empty();
                  });
  if (!has_output) return record.SerializeAsString();
  Job copy = record;
  for (varan::v1::JobTarget& t : *copy.mutable_targets()) {
    t.clear_stdout();
    t.clear_stderr();
  }
  return copy.SerializeAsString();
}

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
  void BindText(int i, absl::string_view v) {
    Check(sqlite3_bind_text64(stmt_, i, v.data() == nullptr ? "" : v.data(),
                              v.size(), SQLITE_STATIC, SQLITE_UTF8));
  }
  void BindBlob(int i, absl::string_view v) {
    Check(sqlite3_bind_blob64(stmt_, i, v.data() == nullptr ? "" : v.data(),
                              v.size(), SQLITE_STATIC));
  }
  void BindInt(int i, int64_t v) { Check(sqlite3_bind_int64(stmt_, i, v)); }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() {
    if (bind_rc_ != SQLITE_OK) return bind_rc_;
    return sqlite3_step(stmt_);
  }
  int64_t ColumnInt(int i) { return sqlite3_column_int64(stmt_, i); }
  // Valid until the next Step() or Reset().
  absl::string_view ColumnBlob(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    const int n = sqlite3_column_bytes(stmt_, i);
    if (p == nullptr) return absl::string_view();
    return absl::string_view(static_cast<const char*>(p),
                             static_cast<size_t>(n));
  }
  absl::string_view ColumnText(int i) {
    const unsigned char* p = sqlite3_column_text(stmt_, i);
    const int n = sqlite3_column_bytes(stmt_, i);
    if (p == nullptr) return absl::string_view();
    return absl::string_view(reinterpret_cast<const char*>(p),
                             static_cast<size_t>(n));
  }

  // Ends the statement's read (a statement left mid-result would keep its
  // snapshot open) and clears the bindings.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    bind_rc_ = SQLITE_OK;
  }

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

}  // namespace

// One connection and its statement cache. Not thread-safe: the owner
// serializes use.
class SqliteStore::Db {
 public:
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path) {
    sqlite3* db = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    auto conn = std::unique_ptr<Db>(new Db(db));
    if (rc != SQLITE_OK) {
      return absl::Status(CodeFor(rc),
                          absl::StrCat("cannot open ", path, ": ",
                                       db != nullptr ? sqlite3_errmsg(db)
                                                     : sqlite3_errstr(rc)));
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

  ~Db() {
    cache_.clear();  // statements before the connection
    sqlite3_close_v2(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() const { return db_; }
  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

  // The error of the last call on this connection, after `what`.
  absl::Status Error(int rc, absl::string_view what) const {
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

  // Runs statements that return no rows.
  absl::Status Exec(const char* sql) {
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return Error(rc, sql);
    return absl::OkStatus();
  }

  // A statement from the cache, prepared on first use.
  absl::StatusOr<ScopedStmt> Prepare(const std::string& sql) {
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

  // Runs `sql` and returns its single integer result.
  absl::StatusOr<int64_t> QueryInt(const std::string& sql) {
    VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt, Prepare(sql));
    const int rc = stmt->Step();
    if (rc != SQLITE_ROW) return Error(rc, sql);
    return stmt->ColumnInt(0);
  }

  // Runs a PRAGMA that answers with one text row and returns it.
  absl::StatusOr<std::string> QueryText(const std::string& sql) {
    VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt, Prepare(sql));
    const int rc = stmt->Step();
    if (rc != SQLITE_ROW) return Error(rc, sql);
    return std::string(stmt->ColumnText(0));
  }

 private:
  static constexpr size_t kMaxCached = 128;

  explicit Db(sqlite3* db) : db_(db) {}

  sqlite3* const db_;
  std::map<std::string, std::unique_ptr<Stmt>, std::less<>> cache_;
};

// --- Operations queued for the writer --------------------------------------

struct SqliteStore::Waiter {
  absl::Notification done;
  absl::Status status;
  uint64_t pruned = 0;
};

struct SqliteStore::PeripheryOp {
  std::string id;
  std::string name;
  int64_t state = 0;
  std::string info;
  std::string credential;
  std::string label_overrides;
  bool confirmed = false;
};

struct SqliteStore::TokenOp {
  int64_t kind = 0;
  std::string id;
  std::string name;
  std::string hash;
  std::string info;
  CommitCallback done;
};

struct SqliteStore::CreateJobOp {
  std::string id;
  int64_t create_time = 0;
  int64_t state = 0;
  std::string created_by;
  std::string record;
  std::vector<std::string> targets;
  CommitCallback done;
};

struct SqliteStore::EventsOp {
  std::string job_id;
  std::vector<std::pair<int64_t, std::string>> events;  // sequence, event
};

struct SqliteStore::FinishJobOp {
  std::string id;
  int64_t state = 0;
  std::string record;
  CommitCallback done;
};

struct SqliteStore::SyncOp {
  Waiter* waiter;
};

struct SqliteStore::PruneOp {
  Waiter* waiter;
};

struct SqliteStore::PruneRun {
  // Deletes by age first, then by count.
  bool age_done = false;
  bool counted = false;
  int64_t excess = 0;
  uint64_t by_age = 0;
  uint64_t by_count = 0;
  std::vector<Waiter*> waiters;
};

const int SqliteStore::kSchemaVersion =
    static_cast<int>(sizeof(kMigrations) / sizeof(kMigrations[0]));

// --- Opening ---------------------------------------------------------------

namespace {

// Creates the file private if it is missing, and makes an existing one (and
// its WAL companions) private, before SQLite opens it: SQLite creates the
// -wal and -shm files with the database file's mode.
absl::Status PrepareFile(const std::string& path) {
  // SQLite creates (and deletes) <path>-wal and <path>-shm beside the file.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (access(dir.c_str(), W_OK | X_OK) != 0 && errno != ENOENT) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot open ", path, " for writing: its directory ", dir,
        " is not writable (the database keeps -wal and -shm files beside it): ",
        strerror(errno)));
  }
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open ", path, " for writing: ", strerror(err));
    switch (err) {
      case EACCES:
      case EPERM:
      case EROFS:
        return absl::PermissionDeniedError(msg);
      case ENOENT:
        return absl::NotFoundError(msg);  // e.g. no parent directory
      case EISDIR:
        return absl::InvalidArgumentError(msg);
      default:
        return absl::FailedPreconditionError(msg);
    }
  }
  struct stat st {};
  absl::Status status;
  if (fstat(fd, &st) != 0) {
    status = absl::FailedPreconditionError(
        absl::StrCat("cannot stat ", path, ": ", strerror(errno)));
  } else if (!S_ISREG(st.st_mode)) {
    status = absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  } else if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
    status = absl::PermissionDeniedError(
        absl::StrCat("cannot make ", path, " private: ", strerror(errno)));
  }
  close(fd);
  if (!status.ok()) return status;
  for (const char* suffix : {"-wal", "-shm"}) {
    const std::string companion = path + suffix;
    struct stat cst {};
    if (stat(companion.c_str(), &cst) == 0 && (cst.st_mode & 07777) != 0600 &&
        chmod(companion.c_str(), 0600) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "cannot make ", companion, " private: ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status WithPath(const absl::Status& s, const std::string& path) {
  if (s.ok()) return s;
  if (s.code() == absl::StatusCode::kDataLoss) {
    return absl::DataLossError(
        absl::StrCat(path, " is not a valid database: ", s.message()));
  }
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, SqliteStoreOptions options) {
  VARAN_RETURN_IF_ERROR(PrepareFile(path));
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<Db> writer, Db::Open(path));
  Db& db = *writer;
  const std::string busy_timeout = absl::StrCat(
      "PRAGMA busy_timeout = ",
      std::max<int64_t>(0, absl::ToInt64Milliseconds(options.busy_timeout)));
  VARAN_RETURN_IF_ERROR(WithPath(db.Exec(busy_timeout.c_str()), path));

  // Check before anything could write to the file. quick_check reads every
  // page (O(size), without checking index contents against tables).
  {
    // The first statement to read the file: a file that is no database
    // fails in prepare already.
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db.get(), "PRAGMA quick_check(4)", -1, &raw,
                                nullptr);
    Stmt stmt(raw);
    if (rc != SQLITE_OK) return WithPath(db.Error(rc, ""), path);
    std::vector<std::string> problems;
    while ((rc = stmt.Step()) == SQLITE_ROW) {
      absl::string_view row = stmt.ColumnText(0);
      if (row == "ok") continue;
      // The first row starts with a "*** in database main ***" line.
      if (absl::StartsWith(row, "*** ")) {
        const size_t eol = row.find('\n');
        row.remove_prefix(eol == row.npos ? row.size() : eol + 1);
      }
      if (!row.empty()) {
        problems.push_back(absl::StrReplaceAll(row, {{"\n", "; "}}));
      }
    }
    if (rc != SQLITE_DONE) return WithPath(db.Error(rc, ""), path);
    if (!problems.empty()) {
      return absl::DataLossError(
          absl::StrCat(path, " is not a valid database: integrity check: ",
                       absl::StrJoin(problems, "; ")));
    }
  }

  // A process kill loses nothing committed with WAL + synchronous=NORMAL;
  // a power loss may lose the last transactions.
  auto mode = db.QueryText("PRAGMA journal_mode = WAL");
  if (!mode.ok()) return WithPath(mode.status(), path);
  if (*mode != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": cannot use write-ahead logging (journal mode is ",
                     *mode, ")"));
  }
  VARAN_RETURN_IF_ERROR(
      WithPath(db.Exec("PRAGMA synchronous = NORMAL;"
                       "PRAGMA foreign_keys = ON;"
                       "PRAGMA cache_size = -16384;"
                       "PRAGMA journal_size_limit = 67108864;"),
               path));
  if (options.max_size_bytes > 0) {
    auto page_size = db.QueryInt("PRAGMA page_size");
    if (!page_size.ok()) return WithPath(page_size.status(), path);
    const uint64_t pages = std::max<uint64_t>(
        1, options.max_size_bytes / static_cast<uint64_t>(*page_size));
    auto set = db.QueryInt(absl::StrCat("PRAGMA max_page_count = ", pages));
    if (!set.ok()) return WithPath(set.status(), path);
  }

  // Migrations. Each step is a transaction of its own; the IMMEDIATE
  // transaction taken even when nothing is to do proves the file writable
  // now rather than at the first job.
  for (;;) {
    absl::Status begin = db.Exec("BEGIN IMMEDIATE");
    if (!begin.ok()) {
      return absl::Status(begin.code(), absl::StrCat("cannot write ", path,
                                                     ": ", begin.message()));
    }
    auto version = db.QueryInt("PRAGMA user_version");
    if (!version.ok() || *version < 0 || *version > kSchemaVersion) {
      (void)db.Exec("ROLLBACK");
      if (!version.ok()) return WithPath(version.status(), path);
      if (*version < 0) {
        return absl::DataLossError(absl::StrCat(
            path, " is not a valid database: schema version ", *version));
      }
      return absl::FailedPreconditionError(
          absl::StrCat(path, " has schema version ", *version,
                       ", newer than this binary supports (", kSchemaVersion,
                       "); run a newer varan-core"));
    }
    if (*version == kSchemaVersion) {
      VARAN_RETURN_IF_ERROR(WithPath(db.Exec("COMMIT"), path));
      break;
    }
    const int64_t next = *version + 1;
    absl::Status step = db.Exec(kMigrations[*version]);
    if (step.ok()) {
      step = db.Exec(absl::StrCat("PRAGMA user_version = ", next).c_str());
    }
    if (step.ok()) step = db.Exec("COMMIT");
    if (!step.ok()) {
      if (db.InTransaction()) (void)db.Exec("ROLLBACK");
      return absl::Status(step.code(),
                          absl::StrCat(path, ": migration to schema version ",
                                       next, " failed: ", step.message()));
    }
    spdlog::info("store: {} migrated to schema version {}", path, next);
  }

  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<Db> reader, Db::Open(path));
  VARAN_RETURN_IF_ERROR(WithPath(reader->Exec(busy_timeout.c_str()), path));
  VARAN_RETURN_IF_ERROR(WithPath(reader->Exec("PRAGMA query_only = ON;"
                                              "PRAGMA cache_size = -16384;"),
                                 path));

  return std::unique_ptr<SqliteStore>(new SqliteStore(
      path, std::move(options), std::move(writer), std::move(reader)));
}

SqliteStore::SqliteStore(std::string path, SqliteStoreOptions options,
                         std::unique_ptr<Db> writer, std::unique_ptr<Db> reader)
    : path_(std::move(path)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()),
      writer_(std::move(writer)),
      reader_(std::move(reader)) {
  const RetentionOptions& r = options_.retention;
  const bool periodic = (r.max_age > absl::ZeroDuration() || r.max_jobs > 0) &&
                        r.interval > absl::ZeroDuration();
  // The first run right away: a core that restarts more often than the
  // interval still prunes.
  if (periodic) next_prune_ = absl::Now();
  completer_thread_ = std::thread([this] { CompleterLoop(); });
  writer_thread_ = std::thread([this] { WriterLoop(); });
}

SqliteStore::~SqliteStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  writer_thread_.join();
  {
    absl::MutexLock lock(&done_mu_);
    done_stop_ = true;
  }
  completer_thread_.join();
}

void SqliteStore::Complete(std::vector<std::function<void()>> work) {
  if (work.empty()) return;
  absl::MutexLock lock(&done_mu_);
  for (auto& w : work) done_queue_.push_back(std::move(w));
}

void SqliteStore::CompleterLoop() {
  std::vector<std::function<void()>> work;
  for (;;) {
    {
      absl::MutexLock lock(&done_mu_);
      done_mu_.Await(absl::Condition(this, &SqliteStore::CompletionReady));
      if (done_queue_.empty()) return;  // stopping, and nothing left
      work.swap(done_queue_);
    }
    for (auto& w : work) w();
    work.clear();
  }
}

// --- Writes ----------------------------------------------------------------

bool SqliteStore::Enqueue(Op op) {
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      queue_.push_back(std::move(op));
      return true;
    }
  }
  spdlog::error("store: write after the store was closed; dropped");
  const absl::Status closed =
      absl::FailedPreconditionError("the store is closed");
  if (auto* c = std::get_if<CreateJobOp>(&op); c != nullptr && c->done) {
    c->done(closed);
  } else if (auto* t = std::get_if<TokenOp>(&op); t != nullptr && t->done) {
    t->done(closed);
  } else if (auto* f = std::get_if<FinishJobOp>(&op); f != nullptr && f->done) {
    f->done(closed);
  }
  return false;
}

void SqliteStore::SavePeriphery(const StoredPeriphery& p) {
  PeripheryOp op;
  op.id = p.info.id();
  op.name = p.info.name();
  op.state = p.info.state();
  op.info = p.info.SerializeAsString();
  op.credential = p.credential;
  op.label_overrides = p.label_overrides.SerializeAsString();
  op.confirmed = p.confirmed;
  Enqueue(std::move(op));
}

void SqliteStore::SaveToken(const StoredToken& t, CommitCallback done) {
  TokenOp op;
  op.kind = kOperatorTokenKind;
  op.id = t.info.id();
  op.name = t.info.name();
  op.hash = t.hash;
  varan::v1::Token info = t.info;
  info.clear_state();
  op.info = info.SerializeAsString();
  op.done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::SaveJoinToken(const StoredJoinToken& t, CommitCallback done) {
  TokenOp op;
  op.kind = kJoinTokenKind;
  op.id = t.info.id();
  op.name = t.info.name();
  op.hash = t.hash;
  varan::v1::JoinToken info = t.info;
  info.clear_state();
  op.info = info.SerializeAsString();
  op.done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::CreateJob(const Job& record, CommitCallback done) {
  CreateJobOp op;
  op.id = record.id();
  op.create_time = UnixNanos(record.create_time());
  op.state = record.state();
  op.created_by = record.created_by();
  op.record = SerializeWithoutOutput(record);
  op.targets.reserve(static_cast<size_t>(record.targets_size()));
  for (const varan::v1::JobTarget& t : record.targets()) {
    op.targets.push_back(t.name());
  }
  op.done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::AppendEvents(const std::string& job_id,
                               absl::Span<const JobEvent* const> events) {
  if (events.empty()) return;
  EventsOp op;
  op.job_id = job_id;
  op.events.reserve(events.size());
  for (const JobEvent* e : events) {
    op.events.emplace_back(static_cast<int64_t>(e->sequence()),
                           e->SerializeAsString());
  }
  Enqueue(std::move(op));
}

void SqliteStore::FinishJob(const Job& record, CommitCallback done) {
  FinishJobOp op;
  op.id = record.id();
  op.state = record.state();
  op.record = SerializeWithoutOutput(record);
  op.done = std::move(done);
  Enqueue(std::move(op));
}

absl::Status SqliteStore::Sync() {
  if (std::this_thread::get_id() == writer_thread_.get_id() ||
      std::this_thread::get_id() == completer_thread_.get_id()) {
    return absl::FailedPreconditionError(
        "Store::Sync called from a commit callback");
  }
  Waiter waiter;
  if (!Enqueue(SyncOp{&waiter})) {
    return absl::FailedPreconditionError("the store is closed");
  }
  waiter.done.WaitForNotification();
  return waiter.status;
}

absl::StatusOr<uint64_t> SqliteStore::PruneNow() {
  if (std::this_thread::get_id() == writer_thread_.get_id() ||
      std::this_thread::get_id() == completer_thread_.get_id()) {
    return absl::FailedPreconditionError(
        "SqliteStore::PruneNow called from a commit callback");
  }
  Waiter waiter;
  if (!Enqueue(PruneOp{&waiter})) {
    return absl::FailedPreconditionError("the store is closed");
  }
  waiter.done.WaitForNotification();
  if (!waiter.status.ok()) return waiter.status;
  return waiter.pruned;
}

// --- The writer thread -----------------------------------------------------

bool SqliteStore::HasWorkLocked() const { return !queue_.empty() || stop_; }

void SqliteStore::WriterLoop() {
  std::vector<Op> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (prune_ == nullptr) {
        mu_.AwaitWithDeadline(
            absl::Condition(this, &SqliteStore::HasWorkLocked), next_prune_);
      }
      const size_t cap = std::max<size_t>(1, options_.max_batch_ops);
      if (queue_.size() <= cap) {
        batch.swap(queue_);
      } else {
        const auto end = queue_.begin() + static_cast<std::ptrdiff_t>(cap);
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(end));
        queue_.erase(queue_.begin(), end);
      }
      if (batch.empty() && stop_) {
        closed_ = true;
        break;
      }
    }
    if (!batch.empty()) {
      ExecuteBatch(batch);
      batch.clear();
    }
    if (prune_ == nullptr && absl::Now() >= next_prune_) StartPrune(nullptr);
    // One small retention transaction, then the writes queued meanwhile.
    if (prune_ != nullptr) PruneStep();
  }
  if (prune_ != nullptr) {
    FinishPrune(absl::AbortedError("the store closed during retention"));
  }
}

void SqliteStore::ExecuteBatch(std::vector<Op>& batch) {
  size_t writes = 0;
  for (const Op& op : batch) {
    if (!std::holds_alternative<SyncOp>(op) &&
        !std::holds_alternative<PruneOp>(op)) {
      ++writes;
    }
  }
  // Per write: its own failure; `commit` fails them all.
  std::vector<absl::Status> results(batch.size());
  absl::Status commit;
  if (writes > 0) {
    commit = writer_->Exec("BEGIN IMMEDIATE");
    for (size_t i = 0; commit.ok() && i < batch.size(); ++i) {
      results[i] = ExecuteOp(batch[i]);
      if (!results[i].ok()) {
        if (!writer_->InTransaction()) {
          // SQLite rolled the whole transaction back (I/O error, disk
          // full in some places): everything before is lost too.
          commit = results[i];
        } else {
          spdlog::error("store: write failed: {}", results[i].ToString());
        }
      }
    }
    if (commit.ok()) {
      commit = writer_->Exec("COMMIT");
      if (!commit.ok() && writer_->InTransaction()) {
        (void)writer_->Exec("ROLLBACK");
      }
    } else if (writer_->InTransaction()) {
      (void)writer_->Exec("ROLLBACK");
    }
    if (!commit.ok()) {
      commit = absl::Status(
          commit.code(),
          absl::StrCat("commit to ", path_, " failed: ", commit.message()));
      spdlog::error("store: {}; {} writes lost", commit.ToString(), writes);
    }
  }

  // Callbacks and markers, in queue order, handed to the completer thread.
  std::vector<std::function<void()>> work;
  for (size_t i = 0; i < batch.size(); ++i) {
    Op& op = batch[i];
    if (auto* sync = std::get_if<SyncOp>(&op)) {
      Waiter* waiter = sync->waiter;
      absl::Status status = std::exchange(unsynced_error_, absl::OkStatus());
      work.push_back([waiter, status] {
        waiter->status = status;
        waiter->done.Notify();
      });
      continue;
    }
    if (auto* prune = std::get_if<PruneOp>(&op)) {
      StartPrune(prune->waiter);
      continue;
    }
    const absl::Status status = commit.ok() ? results[i] : commit;
    if (!status.ok() && unsynced_error_.ok()) unsynced_error_ = status;
    if (auto* c = std::get_if<CreateJobOp>(&op); c != nullptr && c->done) {
      work.push_back([done = std::move(c->done), status] { done(status); });
    } else if (auto* t = std::get_if<TokenOp>(&op); t != nullptr && t->done) {
      work.push_back([done = std::move(t->done), status] { done(status); });
    } else if (auto* f = std::get_if<FinishJobOp>(&op);
               f != nullptr && f->done) {
      work.push_back([done = std::move(f->done), status] { done(status); });
    }
  }
  Complete(std::move(work));
}

absl::Status SqliteStore::ExecuteOp(Op& op) {
  Db& db = *writer_;
  // Runs `body`, undoing its partial writes if it fails (a multi-row write
  // is all or nothing, while the rest of the batch goes on).
  auto atomically = [&db](const std::function<absl::Status()>& body) {
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
  };

  if (auto* p = std::get_if<PeripheryOp>(&op)) {
    const std::string what = absl::StrCat("save periphery ", p->id);
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db.Prepare("INSERT OR REPLACE INTO peripheries (id, name, state, info, "
                   "credential, label_overrides, confirmed) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)"));
    stmt->BindText(1, p->id);
    stmt->BindText(2, p->name);
    stmt->BindInt(3, p->state);
    stmt->BindBlob(4, p->info);
    stmt->BindText(5, p->credential);
    stmt->BindBlob(6, p->label_overrides);
    stmt->BindInt(7, p->confirmed ? 1 : 0);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db.Error(rc, what);
    return absl::OkStatus();
  }

  if (auto* t = std::get_if<TokenOp>(&op)) {
    const std::string what = absl::StrCat("save token ", t->id);
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db.Prepare("INSERT OR REPLACE INTO tokens (id, kind, name, hash, info) "
                   "VALUES (?, ?, ?, ?, ?)"));
    stmt->BindText(1, t->id);
    stmt->BindInt(2, t->kind);
    stmt->BindText(3, t->name);
    stmt->BindText(4, t->hash);
    stmt->BindBlob(5, t->info);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db.Error(rc, what);
    return absl::OkStatus();
  }

  if (auto* c = std::get_if<CreateJobOp>(&op)) {
    const std::string what = absl::StrCat("create job ", c->id);
    return atomically([&]() -> absl::Status {
      {
        VARAN_ASSIGN_OR_RETURN(
            ScopedStmt stmt,
            db.Prepare("INSERT INTO jobs (id, create_time, state, created_by, "
                       "record) VALUES (?, ?, ?, ?, ?)"));
        stmt->BindText(1, c->id);
        stmt->BindInt(2, c->create_time);
        stmt->BindInt(3, c->state);
        stmt->BindText(4, c->created_by);
        stmt->BindBlob(5, c->record);
        if (int rc = stmt->Step(); rc != SQLITE_DONE) return db.Error(rc, what);
      }
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt target,
          db.Prepare("INSERT OR IGNORE INTO job_targets (job_id, name) "
                     "VALUES (?, ?)"));
      for (const std::string& name : c->targets) {
        target->BindText(1, c->id);
        target->BindText(2, name);
        const int rc = target->Step();
        target->Reset();
        if (rc != SQLITE_DONE) return db.Error(rc, what);
      }
      return absl::OkStatus();
    });
  }

  if (auto* e = std::get_if<EventsOp>(&op)) {
    const auto insert = [&]() -> absl::Status {
      VARAN_ASSIGN_OR_RETURN(
          ScopedStmt stmt,
          db.Prepare(
              "INSERT INTO job_events (job_id, seq, event) VALUES (?, ?, ?)"));
      for (const auto& [seq, event] : e->events) {
        stmt->BindText(1, e->job_id);
        stmt->BindInt(2, seq);
        stmt->BindBlob(3, event);
        const int rc = stmt->Step();
        stmt->Reset();
        if (rc != SQLITE_DONE) {
          return db.Error(
              rc, absl::StrCat("append event ", seq, " of job ", e->job_id));
        }
      }
      return absl::OkStatus();
    };
    return e->events.size() == 1 ? insert() : atomically(insert);
  }

  if (auto* f = std::get_if<FinishJobOp>(&op)) {
    const std::string what = absl::StrCat("finish job ", f->id);
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db.Prepare("UPDATE jobs SET state = ?, record = ? WHERE id = ?"));
    stmt->BindInt(1, f->state);
    stmt->BindBlob(2, f->record);
    stmt->BindText(3, f->id);
    if (int rc = stmt->Step(); rc != SQLITE_DONE) return db.Error(rc, what);
    if (sqlite3_changes(db.get()) == 0) {
      return absl::NotFoundError(absl::StrCat(what, ": no such job"));
    }
    return absl::OkStatus();
  }
  return absl::OkStatus();  // markers
}

// --- Retention (writer thread) ----------------------------------------------

void SqliteStore::StartPrune(Waiter* waiter) {
  if (prune_ == nullptr) {
    prune_ = std::make_unique<PruneRun>();
  } else {
    // Joining a run under way: start its queries over, so that it covers
    // what was written up to now.
    prune_->age_done = false;
    prune_->counted = false;
  }
  if (waiter != nullptr) prune_->waiters.push_back(waiter);
}

void SqliteStore::PruneStep() {
  Db& db = *writer_;
  PruneRun& run = *prune_;
  const RetentionOptions& r = options_.retention;
  const size_t batch = std::max<size_t>(1, options_.prune_batch_jobs);
  bool finished = false;
  uint64_t deleted = 0;
  absl::Status status = [&]() -> absl::Status {
    VARAN_RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    std::vector<std::string> ids;
    auto select = [&](ScopedStmt& stmt) -> absl::Status {
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
            ScopedStmt stmt,
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
            ScopedStmt stmt,
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
      for (const char* sql : {"DELETE FROM job_events WHERE job_id = ?",
                              "DELETE FROM job_targets WHERE job_id = ?",
                              "DELETE FROM jobs WHERE id = ?"}) {
        VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt, db.Prepare(sql));
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
    FinishPrune(status);
  } else if (finished) {
    FinishPrune(absl::OkStatus());
  }
}

void SqliteStore::FinishPrune(const absl::Status& status) {
  PruneRun& run = *prune_;
  const uint64_t total = run.by_age + run.by_count;
  if (!status.ok()) {
    spdlog::error("store: retention in {} failed after pruning {} jobs: {}",
                  path_, total, status.ToString());
  } else if (total > 0) {
    spdlog::info(
        "store: pruned {} finished jobs ({} older than {}, {} beyond the "
        "newest {})",
        total, run.by_age, absl::FormatDuration(options_.retention.max_age),
        run.by_count, options_.retention.max_jobs);
  }
  for (Waiter* w : run.waiters) {
    w->status = status;
    w->pruned = total;
    w->done.Notify();
  }
  prune_.reset();
  const RetentionOptions& r = options_.retention;
  const bool periodic = (r.max_age > absl::ZeroDuration() || r.max_jobs > 0) &&
                        r.interval > absl::ZeroDuration();
  next_prune_ = periodic ? absl::Now() + r.interval : absl::InfiniteFuture();
}

// --- Reads -----------------------------------------------------------------

namespace {

// One read transaction: the queries made while it lives see one snapshot.
template <typename Conn>
class ReadTransaction {
 public:
  explicit ReadTransaction(Conn& db) : db_(db), status_(db.Exec("BEGIN")) {}
  ~ReadTransaction() {
    if (status_.ok()) (void)db_.Exec("COMMIT");
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;
  const absl::Status& status() const { return status_; }

 private:
  Conn& db_;
  const absl::Status status_;
};

}  // namespace

absl::StatusOr<std::vector<StoredPeriphery>> SqliteStore::LoadPeripheries() {
  absl::MutexLock lock(&read_mu_);
  Db& db = *reader_;
  VARAN_ASSIGN_OR_RETURN(
      ScopedStmt stmt,
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
    return WithPath(db.Error(rc, "load peripheries"), path_);
  }
  return out;
}

namespace {

template <typename Stored>
absl::StatusOr<std::vector<Stored>> LoadTokenRows(ScopedStmt& stmt,
                                                  const std::string& path,
                                                  int* rc) {
  std::vector<Stored> out;
  while ((*rc = stmt->Step()) == SQLITE_ROW) {
    Stored t;
    const absl::string_view info = stmt->ColumnBlob(1);
    if (!t.info.ParseFromArray(info.data(), static_cast<int>(info.size()))) {
      return absl::DataLossError(absl::StrCat(
          path, ": stored token ", stmt->ColumnText(0), " is corrupt"));
    }
    t.hash = std::string(stmt->ColumnText(2));
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<StoredToken>> SqliteStore::LoadTokens() {
  absl::MutexLock lock(&read_mu_);
  Db& db = *reader_;
  VARAN_ASSIGN_OR_RETURN(
      ScopedStmt stmt,
      db.Prepare(absl::StrCat("SELECT id, info, hash FROM tokens WHERE kind = ",
                              kOperatorTokenKind, " ORDER BY id")));
  int rc = SQLITE_DONE;
  auto out = LoadTokenRows<StoredToken>(stmt, path_, &rc);
  if (!out.ok()) return out.status();
  if (rc != SQLITE_DONE) return WithPath(db.Error(rc, "load tokens"), path_);
  return out;
}

absl::StatusOr<std::vector<StoredJoinToken>> SqliteStore::LoadJoinTokens() {
  absl::MutexLock lock(&read_mu_);
  Db& db = *reader_;
  VARAN_ASSIGN_OR_RETURN(
      ScopedStmt stmt,
      db.Prepare(absl::StrCat("SELECT id, info, hash FROM tokens WHERE kind = ",
                              kJoinTokenKind, " ORDER BY id")));
  int rc = SQLITE_DONE;
  auto out = LoadTokenRows<StoredJoinToken>(stmt, path_, &rc);
  if (!out.ok()) return out.status();
  if (rc != SQLITE_DONE) {
    return WithPath(db.Error(rc, "load join tokens"), path_);
  }
  return out;
}

absl::StatusOr<StoredJob> SqliteStore::LoadJobLocked(const std::string& id,
                                                     std::string record) {
  Db& db = *reader_;
  StoredJob job;
  if (!job.record.ParseFromString(record)) {
    return absl::DataLossError(
        absl::StrCat(path_, ": stored job ", id, " is corrupt"));
  }
  VARAN_ASSIGN_OR_RETURN(
      ScopedStmt stmt,
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
    return WithPath(db.Error(rc, absl::StrCat("load events of job ", id)),
                    path_);
  }
  return job;
}

absl::StatusOr<StoredJob> SqliteStore::LoadJob(const std::string& id) {
  absl::MutexLock lock(&read_mu_);
  Db& db = *reader_;
  ReadTransaction txn(db);
  VARAN_RETURN_IF_ERROR(WithPath(txn.status(), path_));
  std::string record;
  {
    VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt,
                           db.Prepare("SELECT record FROM jobs WHERE id = ?"));
    stmt->BindText(1, id);
    const int rc = stmt->Step();
    if (rc == SQLITE_DONE) {
      return absl::NotFoundError(absl::StrCat("job \"", id, "\" not found"));
    }
    if (rc != SQLITE_ROW) {
      return WithPath(db.Error(rc, absl::StrCat("load job ", id)), path_);
    }
    record = std::string(stmt->ColumnBlob(0));
  }
  return LoadJobLocked(id, std::move(record));
}

absl::StatusOr<std::vector<StoredJob>> SqliteStore::LoadUnfinishedJobs() {
  absl::MutexLock lock(&read_mu_);
  Db& db = *reader_;
  ReadTransaction txn(db);
  VARAN_RETURN_IF_ERROR(WithPath(txn.status(), path_));
  std::vector<std::pair<std::string, std::string>> rows;  // id, record
  {
    VARAN_ASSIGN_OR_RETURN(
        ScopedStmt stmt,
        db.Prepare("SELECT id, record FROM jobs WHERE state = ? ORDER BY id"));
    stmt->BindInt(1, kRunning);
    int rc;
    while ((rc = stmt->Step()) == SQLITE_ROW) {
      rows.emplace_back(stmt->ColumnText(0), stmt->ColumnBlob(1));
    }
    if (rc != SQLITE_DONE) {
      return WithPath(db.Error(rc, "load unfinished jobs"), path_);
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
  Db& db = *reader_;
  VARAN_ASSIGN_OR_RETURN(ScopedStmt stmt, db.Prepare(sql));
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
    return WithPath(db.Error(rc, "list jobs"), path_);
  }
  return page;
}

}  // namespace varan::core
