#include "core/store/postgres_store.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "core/store/postgres/conn.h"
#include "core/store/postgres/ops.h"
#include "core/store/postgres/schema.h"

namespace varan::core {
namespace {

// Tries of a batch whose ops abort the transaction for a reason of the
// moment (a deadlock with another replica, a serialization failure) before
// the op fails.
constexpr int kMaxAbortRetries = 5;

// The session advisory lock ("varan-co" in ASCII, as a bigint): held
// exclusively by a core alone, shared by replicas.
constexpr char kExclusiveLock[] =
    "SELECT pg_try_advisory_lock(8530224932002292591)";
constexpr char kSharedLock[] =
    "SELECT pg_try_advisory_lock_shared(8530224932002292591)";

// Takes `lock` on `db`; FAILED_PRECONDITION when another session holds it
// in a way that excludes this one.
absl::Status LockDatabase(postgres::Conn& db, DatabaseLock lock) {
  const char* sql = nullptr;
  switch (lock) {
    case DatabaseLock::kNone:
      return absl::OkStatus();
    case DatabaseLock::kExclusive:
      sql = kExclusiveLock;
      break;
    case DatabaseLock::kShared:
      sql = kSharedLock;
      break;
  }
  VARAN_ASSIGN_OR_RETURN(postgres::Result r, db.Run(sql, "lock the database"));
  if (r.rows() == 1 && r.Int(0, 0) != 0) return absl::OkStatus();
  if (lock == DatabaseLock::kShared) {
    return absl::FailedPreconditionError(absl::StrCat(
        db.description(),
        " is in use by a varan-core running alone (without "
        "--replica-address); stop it, or restart it as a replica"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      db.description(),
      " is in use by another varan-core; several cores on one database run "
      "as replicas (--replica-address on every one), or give this one a "
      "database of its own"));
}

}  // namespace

const int PostgresStore::kSchemaVersion = postgres::kSchemaVersion;

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::Open(
    const std::string& url, PostgresStoreOptions options) {
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<postgres::Conn> writer,
                         postgres::Conn::Connect(url, options.connect_timeout));
  VARAN_RETURN_IF_ERROR(LockDatabase(*writer, options.lock));
  VARAN_RETURN_IF_ERROR(postgres::Migrate(*writer));
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<postgres::Conn> reader,
                         postgres::Conn::Connect(url, options.connect_timeout));
  spdlog::info("store: {} (schema version {})", writer->description(),
               postgres::kSchemaVersion);
  return std::unique_ptr<PostgresStore>(new PostgresStore(
      std::move(options), std::move(writer), std::move(reader)));
}

PostgresStore::PostgresStore(PostgresStoreOptions options,
                             std::unique_ptr<postgres::Conn> writer,
                             std::unique_ptr<postgres::Conn> reader)
    : QueuedStore(writer->description(), QueueOptionsOf(options)),
      options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()),
      writer_(std::move(writer)),
      reader_(std::move(reader)) {
  StartThreads();
}

PostgresStore::~PostgresStore() {
  {
    absl::MutexLock lock(&stop_mu_);
    give_up_ = absl::Now() + options_.shutdown_grace;
  }
  StopThreads();
}

absl::Status PostgresStore::CheckBacklog() {
  absl::Status outage;
  {
    absl::MutexLock lock(&stop_mu_);
    outage = outage_;
  }
  if (outage.ok()) return QueuedStore::CheckBacklog();
  // UNAVAILABLE: callers retry (a periphery tries another core), as for
  // any core that cannot serve.
  return absl::UnavailableError(
      absl::StrCat("core's database is unreachable (", outage.message(),
                   "); new work is refused until it is back"));
}

// --- The writer ------------------------------------------------------------

absl::Status PostgresStore::ReconnectWriter() {
  VARAN_RETURN_IF_ERROR(writer_->Reconnect());
  return LockDatabase(*writer_, options_.lock);
}

void PostgresStore::ExecuteWrites(std::vector<queued::Op>& batch,
                                  std::vector<absl::Status>* results,
                                  absl::Status* commit) {
  absl::Duration backoff = absl::Milliseconds(100);
  bool reported = false;
  for (;;) {
    absl::Status connected = absl::OkStatus();
    if (writer_->Broken()) connected = ReconnectWriter();
    if (absl::IsFailedPrecondition(connected)) {
      // Another core took the database while this one was cut off: its
      // writes must not mix with that core's.
      *commit = connected;
      spdlog::error("store: {}; {} writes lost", connected.ToString(),
                    batch.size());
      return;
    }
    if (connected.ok() && TryBatch(batch, results, commit)) {
      if (reported) {
        {
          absl::MutexLock lock(&stop_mu_);
          outage_ = absl::OkStatus();
        }
        spdlog::info("store: {} is reachable again{}", name(),
                     commit->ok() ? "; the waiting writes are committed" : "");
      }
      return;
    }
    if (connected.ok())
      connected = absl::UnavailableError(
          absl::StrCat("lost the connection to ", name()));
    absl::Time give_up;
    {
      absl::MutexLock lock(&stop_mu_);
      give_up = give_up_;
      outage_ = connected;
    }
    if (absl::Now() >= give_up) {
      *commit = absl::UnavailableError(
          absl::StrCat("the store closed while ", name(),
                       " was unreachable: ", connected.message()));
      spdlog::error("store: {}; {} writes lost", commit->ToString(),
                    batch.size());
      return;
    }
    if (!reported) {
      spdlog::warn("store: {}; writes wait and are retried",
                   connected.message());
      reported = true;
    }
    absl::SleepFor(std::min(backoff, give_up - absl::Now()));
    backoff = std::min(backoff * 2, absl::Seconds(2));
  }
}

bool PostgresStore::TryBatch(std::vector<queued::Op>& batch,
                             std::vector<absl::Status>* results,
                             absl::Status* commit) {
  postgres::Conn& db = *writer_;
  // Ops that failed on their own (their status not OK): the batch runs
  // again without them, so each op is all or nothing.
  std::vector<absl::Status>& own = *results;
  std::fill(own.begin(), own.end(), absl::OkStatus());
  int aborts = 0;
  for (;;) {
    absl::Status begin = db.Exec("BEGIN", "begin a transaction");
    absl::StatusOr<postgres::Result> xid =
        begin.ok() ? db.Run("SELECT txid_current()", "begin a transaction")
                   : absl::StatusOr<postgres::Result>(begin);
    if (!xid.ok()) {
      if (db.Broken()) return false;
      if (db.InTransaction()) (void)db.Exec("ROLLBACK", "roll back");
      *commit = xid.status();
      return true;
    }
    // A fenced replica's writes are refused (its jobs were taken over).
    if (absl::Status fence =
            options_.fence_tag.empty()
                ? absl::OkStatus()
                : postgres::CheckNotFenced(db, options_.fence_tag);
        !fence.ok()) {
      if (db.Broken()) return false;
      if (db.InTransaction()) (void)db.Exec("ROLLBACK", "roll back");
      *commit = fence;
      spdlog::error("store: {}; {} writes refused", fence.message(),
                    batch.size());
      return true;
    }
    const int64_t txid = xid->Int(0, 0);
    bool again = false;
    // A failed op: the transaction is undone and the batch runs again,
    // without the op — or with it, a few times, after a deadlock or
    // serialization failure with another replica.
    const auto fail = [&](size_t op, absl::Status s) {
      (void)db.Exec("ROLLBACK", "roll back");
      again = true;
      if (absl::IsAborted(s) && ++aborts <= kMaxAbortRetries) return;
      spdlog::error("store: write failed: {}", s.ToString());
      own[op] = std::move(s);
    };
    size_t i = 0;
    while (i < batch.size() && !again) {
      // A run of ops that plan into statements goes in one pipeline (a few
      // round trips for the whole run); a write that reads before it
      // writes runs on its own.
      std::vector<postgres::Statement> statements;
      std::vector<size_t> owner;  // statement -> op
      size_t j = i;
      for (; j < batch.size(); ++j) {
        if (!own[j].ok()) continue;
        std::optional<std::vector<postgres::Statement>> plan =
            postgres::PlanWrite(batch[j]);
        if (!plan) break;
        for (postgres::Statement& st : *plan) {
          statements.push_back(std::move(st));
          owner.push_back(j);
        }
      }
      if (!statements.empty()) {
        std::vector<postgres::Conn::Piped> piped;
        piped.reserve(statements.size());
        for (const postgres::Statement& st : statements) {
          piped.push_back({st.sql, &st.params});
        }
        auto ran = db.RunPipelined(piped, "write a batch");
        if (!ran.ok()) {
          // The connection broke, or is in a state not worth trusting:
          // a new one, and the batch again (nothing was committed).
          if (!db.Broken()) (void)ReconnectWriter();
          return false;
        }
        // First appends to streams that exist run again, reading first.
        std::vector<size_t> missed;
        for (size_t k = 0; k < statements.size(); ++k) {
          if (postgres::FirstAppendMissed(statements[k], (*ran)[k])) {
            missed.push_back(owner[k]);
            continue;
          }
          absl::Status st = postgres::Outcome(statements[k], (*ran)[k]);
          if (st.ok()) continue;
          fail(owner[k], std::move(st));
          break;
        }
        for (size_t k = 0; k < missed.size() && !again; ++k) {
          absl::Status st = postgres::ExecuteWrite(db, batch[missed[k]]);
          if (st.ok()) continue;
          if (db.Broken()) return false;
          fail(missed[k], std::move(st));
        }
      }
      if (again || j == batch.size()) break;
      absl::Status st = postgres::ExecuteWrite(db, batch[j]);
      if (!st.ok()) {
        if (db.Broken()) return false;
        fail(j, std::move(st));
      }
      i = j + 1;
    }
    if (again) continue;
    absl::Status done = db.Exec("COMMIT", "commit");
    if (done.ok()) return true;
    if (!db.Broken()) {
      *commit = done;
      return true;
    }
    // The connection broke with the COMMIT sent: whether it committed is
    // for the server to say (txid_status), once it answers again.
    if (!ReconnectWriter().ok()) return false;
    absl::StatusOr<postgres::Result> outcome =
        db.Run("SELECT txid_status($1)::TEXT", postgres::Params().Int(txid),
               "look up the outcome of a commit");
    return outcome.ok() && outcome->rows() == 1 &&
           outcome->Bytes(0, 0) == "committed";
  }
}

}  // namespace varan::core
