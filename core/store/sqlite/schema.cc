#include "core/store/sqlite/schema.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace varan::core::sqlite {
namespace {

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
    // 3: stored output, the head and the tail of each job's streams. One
    // row of output_chunks per append (two when it straddles head_bytes),
    // so that a large append is one blob written, and a tail row is
    // deleted whole once it is wholly out of the tail.
    R"sql(
CREATE TABLE output_streams (
  id INTEGER PRIMARY KEY,
  job_id TEXT NOT NULL REFERENCES jobs (id),
  target TEXT NOT NULL,            -- periphery name
  stream INTEGER NOT NULL,         -- varan.v1.OutputStream
  end_offset INTEGER NOT NULL,     -- the stream's length so far
  head_bytes INTEGER NOT NULL,     -- its retention
  tail_bytes INTEGER NOT NULL,
  stored INTEGER NOT NULL,         -- bytes kept
  UNIQUE (job_id, target, stream)
);
CREATE TABLE output_chunks (
  stream_id INTEGER NOT NULL REFERENCES output_streams (id),
  pos INTEGER NOT NULL,            -- stream offset of the first byte
  size INTEGER NOT NULL,           -- length(data)
  data BLOB NOT NULL,
  PRIMARY KEY (stream_id, pos)
);
)sql",
};

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

}  // namespace

const int kSchemaVersion = static_cast<int>(std::size(kMigrations));

absl::StatusOr<Connections> OpenDatabase(const std::string& path,
                                         absl::Duration busy_timeout,
                                         uint64_t max_size_bytes) {
  VARAN_RETURN_IF_ERROR(PrepareFile(path));
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<Db> writer, Db::Open(path));
  Db& db = *writer;
  const std::string busy_pragma = absl::StrCat(
      "PRAGMA busy_timeout = ",
      std::max<int64_t>(0, absl::ToInt64Milliseconds(busy_timeout)));
  VARAN_RETURN_IF_ERROR(WithPath(db.Exec(busy_pragma.c_str()), path));

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
  // a power loss may lose the last transactions. Checkpoints every 64 MiB
  // of WAL rather than 4 MiB: stored output rewrites the same pages (the
  // tail of each stream) at up to hundreds of MB/s, and a checkpoint costs
  // two fsyncs on the writer thread (store_bench, 1 GiB in 256 KiB appends on a
  // loaded machine: 62 MB/s at 1000 pages, 79-120 MB/s at 16384).
  auto mode = db.QueryText("PRAGMA journal_mode = WAL");
  if (!mode.ok()) return WithPath(mode.status(), path);
  if (*mode != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": cannot use write-ahead logging (journal mode is ",
                     *mode, ")"));
  }
  VARAN_RETURN_IF_ERROR(WithPath(db.Exec("PRAGMA synchronous = NORMAL;"
                                         "PRAGMA foreign_keys = ON;"
                                         "PRAGMA cache_size = -16384;"
                                         "PRAGMA journal_size_limit = 67108864;"
                                         "PRAGMA wal_autocheckpoint = 16384;"),
                                 path));
  if (max_size_bytes > 0) {
    auto page_size = db.QueryInt("PRAGMA page_size");
    if (!page_size.ok()) return WithPath(page_size.status(), path);
    const uint64_t pages = std::max<uint64_t>(
        1, max_size_bytes / static_cast<uint64_t>(*page_size));
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
  VARAN_RETURN_IF_ERROR(WithPath(reader->Exec(busy_pragma.c_str()), path));
  VARAN_RETURN_IF_ERROR(WithPath(reader->Exec("PRAGMA query_only = ON;"
                                              "PRAGMA cache_size = -16384;"),
                                 path));

  return Connections{std::move(writer), std::move(reader)};
}

}  // namespace varan::core::sqlite
