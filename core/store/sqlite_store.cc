#include "core/store/sqlite_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_util.h"
#include "core/store/sqlite/db.h"
#include "core/store/sqlite/ops.h"
#include "core/store/sqlite/schema.h"

namespace varan::core {
namespace {

using varan::v1::Job;
using varan::v1::JobEvent;

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

}  // namespace

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
    : path_(std::move(path)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()),
      lock_(std::move(lock)),
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

bool SqliteStore::Enqueue(sqlite::Op op) {
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      queue_.push_back(std::move(op));
      ++pending_;
      return true;
    }
  }
  spdlog::error("store: write after the store was closed; dropped");
  const absl::Status closed =
      absl::FailedPreconditionError("the store is closed");
  if (CommitCallback* done = sqlite::DoneOf(op); done != nullptr && *done) {
    (*done)(closed);
  }
  return false;
}

void SqliteStore::SavePeriphery(const StoredPeriphery& p) {
  sqlite::PeripheryOp op;
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
  sqlite::TokenOp op;
  op.kind = sqlite::kOperatorTokenKind;
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
  sqlite::TokenOp op;
  op.kind = sqlite::kJoinTokenKind;
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
  sqlite::CreateJobOp op;
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
  sqlite::EventsOp op;
  op.job_id = job_id;
  op.events.reserve(events.size());
  for (const JobEvent* e : events) {
    op.events.emplace_back(static_cast<int64_t>(e->sequence()),
                           e->SerializeAsString());
  }
  Enqueue(std::move(op));
}

void SqliteStore::FinishJob(const Job& record, CommitCallback done) {
  sqlite::FinishJobOp op;
  op.id = record.id();
  op.state = record.state();
  op.record = SerializeWithoutOutput(record);
  op.done = std::move(done);
  Enqueue(std::move(op));
}

void SqliteStore::AppendOutput(const OutputKey& key, uint64_t offset,
                               std::string_view data,
                               const OutputRetention& retention,
                               CommitCallback done) {
  sqlite::OutputOp op;
  op.key = key;
  op.offset = offset;
  op.data = std::string(data);
  op.retention = retention;
  op.done = std::move(done);
  Enqueue(std::move(op));
}

absl::Status SqliteStore::CheckBacklog() {
  size_t pending;
  {
    absl::MutexLock lock(&mu_);
    pending = pending_;
  }
  if (pending <= options_.max_pending_writes) return absl::OkStatus();
  return RetryAfterError(
      absl::StrCat("core's store is behind: ", pending,
                   " writes wait for the disk (more than ",
                   options_.max_pending_writes,
                   "); new work is refused until they are written"),
      absl::Seconds(1));
}

absl::Status SqliteStore::Sync() {
  if (std::this_thread::get_id() == writer_thread_.get_id() ||
      std::this_thread::get_id() == completer_thread_.get_id()) {
    return absl::FailedPreconditionError(
        "Store::Sync called from a commit callback");
  }
  sqlite::Waiter waiter;
  if (!Enqueue(sqlite::SyncOp{&waiter})) {
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
  sqlite::Waiter waiter;
  if (!Enqueue(sqlite::PruneOp{&waiter})) {
    return absl::FailedPreconditionError("the store is closed");
  }
  waiter.done.WaitForNotification();
  if (!waiter.status.ok()) return waiter.status;
  return waiter.pruned;
}

// --- The writer thread -----------------------------------------------------

bool SqliteStore::HasWorkLocked() const { return !queue_.empty() || stop_; }

void SqliteStore::WriterLoop() {
  std::vector<sqlite::Op> batch;
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
      {
        absl::MutexLock lock(&mu_);
        pending_ -= batch.size();
      }
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

void SqliteStore::ExecuteBatch(std::vector<sqlite::Op>& batch) {
  size_t writes = 0;
  for (const sqlite::Op& op : batch) {
    if (sqlite::IsWrite(op)) ++writes;
  }
  // Per write: its own failure; `commit` fails them all.
  std::vector<absl::Status> results(batch.size());
  absl::Status commit;
  if (writes > 0) {
    commit = writer_->Exec("BEGIN IMMEDIATE");
    for (size_t i = 0; commit.ok() && i < batch.size(); ++i) {
      results[i] = sqlite::ExecuteWrite(*writer_, batch[i]);
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
    const absl::Status status = commit.ok() ? results[i] : commit;
    const auto committed = [&](CommitCallback* done) {
      if (!status.ok() && unsynced_error_.ok()) unsynced_error_ = status;
      if (done != nullptr && *done) {
        work.push_back([cb = std::move(*done), status] { cb(status); });
      }
    };
    std::visit(sqlite::Overloaded{
                   [&](sqlite::PeripheryOp&) { committed(nullptr); },
                   [&](sqlite::TokenOp& t) { committed(&t.done); },
                   [&](sqlite::CreateJobOp& c) { committed(&c.done); },
                   [&](sqlite::EventsOp&) { committed(nullptr); },
                   [&](sqlite::FinishJobOp& f) { committed(&f.done); },
                   [&](sqlite::OutputOp& o) { committed(&o.done); },
                   [&](sqlite::SyncOp& sync) {
                     sqlite::Waiter* waiter = sync.waiter;
                     absl::Status first =
                         std::exchange(unsynced_error_, absl::OkStatus());
                     work.push_back([waiter, first] {
                       waiter->status = first;
                       waiter->done.Notify();
                     });
                   },
                   [&](sqlite::PruneOp& prune) { StartPrune(prune.waiter); },
               },
               batch[i]);
  }
  Complete(std::move(work));
}

}  // namespace varan::core
