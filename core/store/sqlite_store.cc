#include "core/store/sqlite_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "core/store/sqlite/db.h"
#include "core/store/sqlite/ops.h"
#include "core/store/sqlite/schema.h"

namespace varan::core {
const int SqliteStore::kSchemaVersion = sqlite::kSchemaVersion;

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const std::string& path, SqliteStoreOptions options) {
  // Before the database is touched: a second core would otherwise migrate
  // it, prune it and time out on its writes while the first one runs.
  pid_t holder = 0;
  auto lock = FileLock::Acquire(path + ".lock", &holder);
  if (absl::IsFailedPrecondition(lock.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, " is in use by another varan-core (",
        holder > 0 ? absl::StrCat("process ", holder) : "another process",
        "): one SQLite database serves one core at a time; stop that core, "
        "or give this one a data directory of its own"));
  }
  if (!lock.ok()) return lock.status();
  VARAN_ASSIGN_OR_RETURN(
      sqlite::Connections conns,
      sqlite::OpenDatabase(path, options.busy_timeout, options.max_size_bytes));
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(path, std::move(options), *std::move(lock),
                      std::move(conns.writer), std::move(conns.reader)));
}

SqliteStore::SqliteStore(std::string path, SqliteStoreOptions options,
                         std::unique_ptr<FileLock> lock,
                         std::unique_ptr<sqlite::Db> writer,
                         std::unique_ptr<sqlite::Db> reader)
    : QueuedStore(path, QueueOptionsOf(options)),
      path_(std::move(path)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()),
      lock_(std::move(lock)),
      writer_(std::move(writer)),
      reader_(std::move(reader)) {
  StartThreads();
}

SqliteStore::~SqliteStore() { StopThreads(); }

void SqliteStore::ExecuteWrites(std::vector<queued::Op>& batch,
                                std::vector<absl::Status>* results,
                                absl::Status* commit) {
  const auto writes =
      std::count_if(batch.begin(), batch.end(), queued::IsWrite);
  absl::Status status = writer_->Exec("BEGIN IMMEDIATE");
  for (size_t i = 0; status.ok() && i < batch.size(); ++i) {
    absl::Status& result = (*results)[i];
    result = sqlite::ExecuteWrite(*writer_, batch[i]);
    if (result.ok()) continue;
    if (!writer_->InTransaction()) {
      // SQLite rolled the whole transaction back (I/O error, disk full in
      // some places): everything before is lost too.
      status = result;
    } else {
      spdlog::error("store: write failed: {}", result.ToString());
    }
  }
  if (status.ok()) {
    status = writer_->Exec("COMMIT");
    if (!status.ok() && writer_->InTransaction()) {
      (void)writer_->Exec("ROLLBACK");
    }
  } else if (writer_->InTransaction()) {
    (void)writer_->Exec("ROLLBACK");
  }
  if (!status.ok()) {
    status = absl::Status(
        status.code(),
        absl::StrCat("commit to ", path_, " failed: ", status.message()));
    spdlog::error("store: {}; {} writes lost", status.ToString(), writes);
  }
  *commit = status;
}

}  // namespace varan::core
