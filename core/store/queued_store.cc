#include "core/store/queued_store.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/time_util.h"

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

// A token's op; its state is not stored (it is derived from the times).
template <typename Info>
queued::TokenOp TokenOpOf(int64_t kind, const Info& stored_info,
                          const std::string& hash, CommitCallback done) {
  queued::TokenOp op;
  op.kind = kind;
  op.id = stored_info.id();
  op.name = stored_info.name();
  op.hash = hash;
  Info info = stored_info;
  info.clear_state();
  op.info = info.SerializeAsString();
  op.done = std::move(done);
  return op;
}

bool Periodic(const RetentionOptions& r) {
  return (r.max_age > absl::ZeroDuration() || r.max_jobs > 0) &&
         r.interval > absl::ZeroDuration();
}

}  // namespace

namespace queued {

bool IsWrite(const Op& op) {
  return std::visit(Overloaded{
                        [](const PeripheryOp&) { return true; },
                        [](const TokenOp&) { return true; },
                        [](const JoinUseOp&) { return true; },
                        [](const CreateJobOp&) { return true; },
                        [](const EventsOp&) { return true; },
                        [](const FinishJobOp&) { return true; },
                        [](const OutputOp&) { return true; },
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
          [](JoinUseOp& u) -> CommitCallback* { return &u.done; },
          [](CreateJobOp& c) -> CommitCallback* { return &c.done; },
          [](EventsOp&) -> CommitCallback* { return nullptr; },
          [](FinishJobOp& f) -> CommitCallback* { return &f.done; },
          [](OutputOp& o) -> CommitCallback* { return &o.done; },
          [](SyncOp&) -> CommitCallback* { return nullptr; },
          [](PruneOp&) -> CommitCallback* { return nullptr; },
      },
      op);
}

absl::StatusOr<std::string> WithStoredUses(const TokenOp& op,
                                           const std::string& stored) {
  varan::v1::JoinToken now, before;
  if (!now.ParseFromString(op.info) || !before.ParseFromString(stored)) {
    return absl::InternalError(
        absl::StrCat("join token ", op.id, ": its stored record is corrupt"));
  }
  now.set_uses(before.uses());
  return now.SerializeAsString();
}

absl::StatusOr<std::optional<std::string>> ApplyJoinUseOp(
    const JoinUseOp& op, const std::string& stored) {
  JoinUses& result = *op.result;
  if (!result.token.ParseFromString(stored)) {
    return absl::InternalError(
        absl::StrCat("join token ", op.id, ": its stored record is corrupt"));
  }
  const uint32_t before = result.token.uses();
  result.taken = ApplyJoinUse(op.use, &result.token);
  if (result.token.uses() == before) return std::nullopt;
  return result.token.SerializeAsString();
}

}  // namespace queued

QueuedStore::QueuedStore(std::string name, QueuedStoreOptions options)
    : name_(std::move(name)), options_(std::move(options)) {}

QueuedStore::~QueuedStore() { StopThreads(); }

void QueuedStore::StartThreads() {
  // The first retention run right away: a core that restarts more often
  // than the interval still prunes.
  if (Periodic(options_.retention)) next_prune_ = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    closed_ = false;
  }
  completer_thread_ = std::thread([this] { CompleterLoop(); });
  writer_thread_ = std::thread([this] { WriterLoop(); });
}

void QueuedStore::StopThreads() {
  if (!writer_thread_.joinable()) return;
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

void QueuedStore::Complete(std::vector<std::function<void()>> work) {
  if (work.empty()) return;
  absl::MutexLock lock(&done_mu_);
  for (auto& w : work) done_queue_.push_back(std::move(w));
}

void QueuedStore::CompleterLoop() {
  std::vector<std::function<void()>> work;
  for (;;) {
    {
      absl::MutexLock lock(&done_mu_);
      done_mu_.Await(absl::Condition(this, &QueuedStore::CompletionReady));
      if (done_queue_.empty()) return;  // stopping, and nothing left
      work.swap(done_queue_);
    }
    for (auto& w : work) w();
    work.clear();
  }
}

// --- Writes ----------------------------------------------------------------

bool QueuedStore::Enqueue(queued::Op op) {
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
  if (CommitCallback* done = queued::DoneOf(op); done != nullptr && *done) {
    (*done)(closed);
  }
  return false;
}

void QueuedStore::SavePeriphery(const StoredPeriphery& p) {
  queued::PeripheryOp op;
  op.id = p.info.id();
  op.name = p.info.name();
  op.state = p.info.state();
  op.info = p.info.SerializeAsString();
  op.credential = p.credential;
  op.label_overrides = p.label_overrides.SerializeAsString();
  op.confirmed = p.confirmed;
  Enqueue(std::move(op));
}

void QueuedStore::SaveToken(const StoredToken& t, CommitCallback done) {
  Enqueue(
      TokenOpOf(queued::kOperatorTokenKind, t.info, t.hash, std::move(done)));
}

void QueuedStore::SaveJoinToken(const StoredJoinToken& t, CommitCallback done) {
  Enqueue(TokenOpOf(queued::kJoinTokenKind, t.info, t.hash, std::move(done)));
}

void QueuedStore::UseJoinToken(const std::string& id, JoinUse use,
                               JoinUsesCallback done) {
  queued::JoinUseOp op;
  op.id = id;
  op.use = use;
  // The writer fills it in each time it runs the op (a batch may run
  // again); the callback reads what the committed run left.
  op.result = std::make_shared<JoinUses>();
  op.done = [result = op.result,
             done = std::move(done)](const absl::Status& s) {
    if (!done) return;
    if (!s.ok()) return done(s);
    done(*result);
  };
  Enqueue(std::move(op));
}

void QueuedStore::CreateJob(const Job& record, CommitCallback done) {
  queued::CreateJobOp op;
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

void QueuedStore::AppendEvents(const std::string& job_id,
                               absl::Span<const JobEvent* const> events) {
  if (events.empty()) return;
  queued::EventsOp op;
  op.job_id = job_id;
  op.events.reserve(events.size());
  for (const JobEvent* e : events) {
    op.events.emplace_back(static_cast<int64_t>(e->sequence()),
                           e->SerializeAsString());
  }
  Enqueue(std::move(op));
}

void QueuedStore::FinishJob(const Job& record, CommitCallback done) {
  queued::FinishJobOp op;
  op.id = record.id();
  op.state = record.state();
  op.record = SerializeWithoutOutput(record);
  op.done = std::move(done);
  Enqueue(std::move(op));
}

void QueuedStore::AppendOutput(const OutputKey& key, uint64_t offset,
                               std::string_view data,
                               const OutputRetention& retention,
                               CommitCallback done) {
  queued::OutputOp op;
  op.key = key;
  op.offset = offset;
  op.data = std::string(data);
  op.retention = retention;
  op.done = std::move(done);
  Enqueue(std::move(op));
}

absl::Status QueuedStore::CheckBacklog() {
  size_t pending;
  {
    absl::MutexLock lock(&mu_);
    pending = pending_;
  }
  if (pending <= options_.max_pending_writes) return absl::OkStatus();
  return RetryAfterError(
      absl::StrCat("core's store is behind: ", pending,
                   " writes wait for the database (more than ",
                   options_.max_pending_writes,
                   "); new work is refused until they are written"),
      absl::Seconds(1));
}

bool QueuedStore::OnStoreThread() const {
  return std::this_thread::get_id() == writer_thread_.get_id() ||
         std::this_thread::get_id() == completer_thread_.get_id();
}

absl::Status QueuedStore::Sync() {
  if (OnStoreThread()) {
    return absl::FailedPreconditionError(
        "Store::Sync called from a commit callback");
  }
  queued::Waiter waiter;
  if (!Enqueue(queued::SyncOp{&waiter})) {
    return absl::FailedPreconditionError("the store is closed");
  }
  waiter.done.WaitForNotification();
  return waiter.status;
}

absl::StatusOr<uint64_t> QueuedStore::PruneNow() {
  if (OnStoreThread()) {
    return absl::FailedPreconditionError(
        "Store::PruneNow called from a commit callback");
  }
  queued::Waiter waiter;
  if (!Enqueue(queued::PruneOp{&waiter})) {
    return absl::FailedPreconditionError("the store is closed");
  }
  waiter.done.WaitForNotification();
  if (!waiter.status.ok()) return waiter.status;
  return waiter.pruned;
}

// --- The writer thread -----------------------------------------------------

bool QueuedStore::HasWorkLocked() const { return !queue_.empty() || stop_; }

void QueuedStore::WriterLoop() {
  std::vector<queued::Op> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (prune_ == nullptr) {
        mu_.AwaitWithDeadline(
            absl::Condition(this, &QueuedStore::HasWorkLocked), next_prune_);
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
    if (prune_ == nullptr && absl::Now() >= next_prune_) {
      const auto& due_here = options_.retention.due_here;
      if (!due_here || due_here()) {
        StartPrune(nullptr);
      } else {
        next_prune_ = absl::Now() + options_.retention.interval;
      }
    }
    // One small retention transaction, then the writes queued meanwhile.
    if (prune_ != nullptr) RunPruneStep();
  }
  if (prune_ != nullptr) {
    FinishPrune(absl::AbortedError("the store closed during retention"));
  }
}

void QueuedStore::ExecuteBatch(std::vector<queued::Op>& batch) {
  const bool writes = std::any_of(batch.begin(), batch.end(), queued::IsWrite);
  // Per write: its own failure; `commit` fails them all.
  std::vector<absl::Status> results(batch.size());
  absl::Status commit;
  if (writes) ExecuteWrites(batch, &results, &commit);

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
    std::visit(queued::Overloaded{
                   [&](queued::PeripheryOp&) { committed(nullptr); },
                   [&](queued::TokenOp& t) { committed(&t.done); },
                   [&](queued::JoinUseOp& u) { committed(&u.done); },
                   [&](queued::CreateJobOp& c) { committed(&c.done); },
                   [&](queued::EventsOp&) { committed(nullptr); },
                   [&](queued::FinishJobOp& f) { committed(&f.done); },
                   [&](queued::OutputOp& o) { committed(&o.done); },
                   [&](queued::SyncOp& sync) {
                     queued::Waiter* waiter = sync.waiter;
                     absl::Status first =
                         std::exchange(unsynced_error_, absl::OkStatus());
                     work.push_back([waiter, first] {
                       waiter->status = first;
                       waiter->done.Notify();
                     });
                   },
                   [&](queued::PruneOp& prune) { StartPrune(prune.waiter); },
               },
               batch[i]);
  }
  // Before the callbacks run: a Sync that returns sees the backlog gone.
  {
    absl::MutexLock lock(&mu_);
    pending_ -= batch.size();
  }
  Complete(std::move(work));
}

// --- Retention -------------------------------------------------------------

void QueuedStore::StartPrune(queued::Waiter* waiter) {
  if (prune_ == nullptr) {
    prune_ = std::make_unique<queued::PruneRun>();
  } else {
    // Joining a run under way: start its queries over, so that it covers
    // what was written up to now.
    prune_->age_done = false;
    prune_->counted = false;
  }
  if (waiter != nullptr) prune_->waiters.push_back(waiter);
}

void QueuedStore::RunPruneStep() {
  absl::StatusOr<bool> finished = PruneStep(*prune_);
  if (!finished.ok()) {
    FinishPrune(finished.status());
  } else if (*finished) {
    FinishPrune(absl::OkStatus());
  }
}

void QueuedStore::FinishPrune(const absl::Status& status) {
  queued::PruneRun& run = *prune_;
  const uint64_t total = run.by_age + run.by_count;
  if (!status.ok()) {
    spdlog::error("store: retention in {} failed after pruning {} jobs: {}",
                  name_, total, status.ToString());
  } else if (total > 0) {
    spdlog::info(
        "store: pruned {} finished jobs ({} older than {}, {} beyond the "
        "newest {})",
        total, run.by_age, absl::FormatDuration(options_.retention.max_age),
        run.by_count, options_.retention.max_jobs);
  }
  for (queued::Waiter* w : run.waiters) {
    w->status = status;
    w->pruned = total;
    w->done.Notify();
  }
  prune_.reset();
  next_prune_ = Periodic(options_.retention)
                    ? absl::Now() + options_.retention.interval
                    : absl::InfiniteFuture();
}

}  // namespace varan::core
