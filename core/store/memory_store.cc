#include "core/store/memory_store.h"

#include <algorithm>
#include <iterator>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/time_util.h"

namespace varan::core {
namespace {

using varan::v1::Job;
using varan::v1::JobEvent;

Job WithoutOutput(const Job& record) {
  Job copy = record;
  for (varan::v1::JobTarget& t : *copy.mutable_targets()) {
    t.clear_stdout();
    t.clear_stderr();
  }
  return copy;
}

}  // namespace

MemoryStore::MemoryStore(MemoryStoreOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? options_.clock : RealClock::Get()) {
  {
    absl::MutexLock lock(&mu_);
    // The first run right away, as SqliteStore does.
    if (PeriodicRetention()) next_prune_ = absl::Now();
  }
  thread_ = std::thread([this] { Loop(); });
}

MemoryStore::~MemoryStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

bool MemoryStore::PeriodicRetention() const {
  const RetentionOptions& r = options_.retention;
  return (r.max_age > absl::ZeroDuration() || r.max_jobs > 0) &&
         r.interval > absl::ZeroDuration();
}

bool MemoryStore::OnStoreThread() const {
  return std::this_thread::get_id() == thread_.get_id();
}

void MemoryStore::Loop() {
  std::deque<std::function<void()>> work;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithDeadline(absl::Condition(this, &MemoryStore::HasWorkLocked),
                            next_prune_);
      if (absl::Now() >= next_prune_) {
        const uint64_t pruned = PruneLocked();
        if (pruned > 0) {
          spdlog::info("store: pruned {} finished jobs from memory", pruned);
        }
        next_prune_ = absl::Now() + options_.retention.interval;
      }
      if (callbacks_.empty() && stop_) return;
      work.swap(callbacks_);
    }
    // In commit order, without the lock: callbacks may read the store.
    for (auto& w : work) w();
    work.clear();
  }
}

void MemoryStore::CommittedLocked(const absl::Status& status,
                                  CommitCallback done) {
  if (!status.ok()) {
    spdlog::error("store: write failed: {}", status.ToString());
    if (unsynced_error_.ok()) unsynced_error_ = status;
  }
  if (done) {
    callbacks_.push_back([done = std::move(done), status] { done(status); });
  }
}

void MemoryStore::RunOnStoreThreadAndWait(std::function<void()> marker) {
  absl::Notification reached;
  {
    absl::MutexLock lock(&mu_);
    callbacks_.push_back([&marker, &reached] {
      marker();
      reached.Notify();
    });
  }
  reached.WaitForNotification();
}

// --- Peripheries and tokens ------------------------------------------------

absl::StatusOr<std::vector<StoredPeriphery>> MemoryStore::LoadPeripheries() {
  absl::MutexLock lock(&mu_);
  std::vector<StoredPeriphery> out;
  out.reserve(peripheries_.size());
  for (const auto& [id, p] : peripheries_) out.push_back(p);
  return out;
}

void MemoryStore::SavePeriphery(const StoredPeriphery& p) {
  absl::MutexLock lock(&mu_);
  peripheries_[p.info.id()] = p;
  CommittedLocked(absl::OkStatus(), nullptr);
}

absl::StatusOr<std::vector<StoredToken>> MemoryStore::LoadTokens() {
  absl::MutexLock lock(&mu_);
  std::vector<StoredToken> out;
  out.reserve(tokens_.size());
  for (const auto& [id, t] : tokens_) out.push_back(t);
  return out;
}

absl::StatusOr<std::vector<StoredJoinToken>> MemoryStore::LoadJoinTokens() {
  absl::MutexLock lock(&mu_);
  std::vector<StoredJoinToken> out;
  out.reserve(join_tokens_.size());
  for (const auto& [id, t] : join_tokens_) out.push_back(t);
  return out;
}

void MemoryStore::SaveToken(const StoredToken& t, CommitCallback done) {
  StoredToken stored = t;
  stored.info.clear_state();  // derived from the times, never stored
  absl::MutexLock lock(&mu_);
  tokens_[t.info.id()] = std::move(stored);
  CommittedLocked(absl::OkStatus(), std::move(done));
}

void MemoryStore::SaveJoinToken(const StoredJoinToken& t, CommitCallback done) {
  StoredJoinToken stored = t;
  stored.info.clear_state();
  absl::MutexLock lock(&mu_);
  auto [it, added] = join_tokens_.try_emplace(t.info.id());
  // The use count is UseJoinToken's: the stored one stays.
  if (!added) stored.info.set_uses(it->second.info.uses());
  it->second = std::move(stored);
  CommittedLocked(absl::OkStatus(), std::move(done));
}

void MemoryStore::UseJoinToken(const std::string& id, JoinUse use,
                               JoinUsesCallback done) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<JoinUses> result = NoSuchJoinToken(id);
  if (auto it = join_tokens_.find(id); it != join_tokens_.end()) {
    JoinUses uses;
    uses.taken = ApplyJoinUse(use, &it->second.info);
    uses.token = it->second.info;
    result = std::move(uses);
  }
  CommittedLocked(result.status(),
                  [result, done = std::move(done)](const absl::Status&) {
                    if (done) done(result);
                  });
}

// --- Jobs ------------------------------------------------------------------

void MemoryStore::CreateJob(const Job& record, CommitCallback done) {
  JobRow row;
  row.create_nanos = absl::ToUnixNanos(FromTimestamp(record.create_time()));
  row.state = record.state();
  row.created_by = record.created_by();
  std::set<std::string> names;
  for (const varan::v1::JobTarget& t : record.targets()) names.insert(t.name());
  row.targets.assign(names.begin(), names.end());
  row.record = WithoutOutput(record);
  absl::MutexLock lock(&mu_);
  absl::Status status;
  if (!jobs_.emplace(record.id(), std::move(row)).second) {
    status = absl::AlreadyExistsError(
        absl::StrCat("create job ", record.id(), ": the id exists already"));
  }
  CommittedLocked(status, std::move(done));
}

void MemoryStore::AppendEvents(const std::string& job_id,
                               absl::Span<const JobEvent* const> events) {
  if (events.empty()) return;
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  absl::Status status;
  if (it == jobs_.end()) {
    status =
        absl::NotFoundError(absl::StrCat("append event ", events[0]->sequence(),
                                         " of job ", job_id, ": no such job"));
  } else {
    // All or nothing: check every sequence number before storing any.
    std::set<uint64_t> seen;
    for (const JobEvent* e : events) {
      if (it->second.events.count(e->sequence()) > 0 ||
          !seen.insert(e->sequence()).second) {
        status = absl::AlreadyExistsError(
            absl::StrCat("append event ", e->sequence(), " of job ", job_id,
                         ": stored already"));
        break;
      }
    }
    if (status.ok()) {
      for (const JobEvent* e : events) it->second.events[e->sequence()] = *e;
    }
  }
  CommittedLocked(status, nullptr);
}

void MemoryStore::FinishJob(const Job& record, CommitCallback done) {
  Job summary = WithoutOutput(record);
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(record.id());
  absl::Status status;
  if (it == jobs_.end()) {
    status = absl::NotFoundError(
        absl::StrCat("finish job ", record.id(), ": no such job"));
  } else {
    it->second.state = record.state();
    it->second.record = std::move(summary);
  }
  CommittedLocked(status, std::move(done));
}

// --- Output ----------------------------------------------------------------

absl::StatusOr<MemoryStore::JobRow*> MemoryStore::FindJobLocked(
    const std::string& id, absl::string_view what) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(
        absl::StrCat(what, " of job ", id, ": no such job"));
  }
  return &it->second;
}

void MemoryStore::AppendOutput(const OutputKey& key, uint64_t offset,
                               std::string_view data,
                               const OutputRetention& retention,
                               CommitCallback done) {
  absl::MutexLock lock(&mu_);
  const absl::Status status = [&]() -> absl::Status {
    VARAN_RETURN_IF_ERROR(output::CheckKey(key, "append output"));
    VARAN_ASSIGN_OR_RETURN(JobRow * job,
                           FindJobLocked(key.job_id, "append output"));
    const std::pair<std::string, int> stream_key(key.target, key.stream);
    auto it = job->output.find(stream_key);
    output::StreamState state;
    if (it != job->output.end()) {
      state = it->second.state;
    } else {
      state.head_bytes = retention.head_bytes;
      state.tail_bytes = retention.tail_bytes;
    }
    VARAN_ASSIGN_OR_RETURN(output::AppendPlan plan,
                           output::PlanAppend(key, state, offset, data.size()));
    if (plan.noop) return absl::OkStatus();
    OutputRows& out = job->output[stream_key];
    out.state = state;
    if (!plan.dropped.empty()) {
      // Tail rows below the new tail start go; one straddling it stays.
      auto row = out.rows.lower_bound(state.head_bytes);
      while (row != out.rows.end() && row->first < plan.dropped.end) {
        const output::Range r{row->first, row->first + row->second.size()};
        out.state.stored -= output::Overlap(r, plan.dropped);
        row = r.end <= plan.dropped.end ? out.rows.erase(row) : std::next(row);
      }
    }
    for (const output::Range& r : {plan.head, plan.tail}) {
      if (r.empty()) continue;
      out.rows.emplace(r.begin,
                       std::string(data.substr(r.begin - offset, r.size())));
      out.state.stored += r.size();
    }
    out.state.end = plan.new_end;
    return absl::OkStatus();
  }();
  CommittedLocked(status, std::move(done));
}

absl::StatusOr<StoredOutput> MemoryStore::ReadOutput(const OutputKey& key,
                                                     uint64_t offset,
                                                     uint64_t max_bytes) {
  VARAN_RETURN_IF_ERROR(output::CheckKey(key, "read output"));
  absl::MutexLock lock(&mu_);
  VARAN_ASSIGN_OR_RETURN(JobRow * job,
                         FindJobLocked(key.job_id, "read output"));
  StoredOutput result;
  auto it = job->output.find({key.target, key.stream});
  if (it == job->output.end()) return result;
  const OutputRows& out = it->second;
  result.extent = output::ExtentOf(out.state);
  // From the row holding `offset` (the last one starting at or before it).
  auto row = out.rows.upper_bound(offset);
  if (row != out.rows.begin()) --row;
  uint64_t budget = max_bytes;
  for (; row != out.rows.end() && budget > 0; ++row) {
    output::AddPiece(result.extent, offset, row->first, row->second, &budget,
                     &result.pieces);
  }
  return result;
}

absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>>
MemoryStore::OutputExtents(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  VARAN_ASSIGN_OR_RETURN(JobRow * job, FindJobLocked(job_id, "output extents"));
  std::vector<std::pair<OutputKey, OutputExtent>> result;
  for (const auto& [stream_key, out] : job->output) {
    OutputKey key;
    key.job_id = job_id;
    key.target = stream_key.first;
    key.stream = static_cast<varan::v1::OutputStream>(stream_key.second);
    result.emplace_back(std::move(key), output::ExtentOf(out.state));
  }
  return result;
}

absl::StatusOr<StoredJob> MemoryStore::LoadJob(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("job \"", id, "\" not found"));
  }
  StoredJob job;
  job.record = it->second.record;
  job.events.reserve(it->second.events.size());
  for (const auto& [seq, e] : it->second.events) job.events.push_back(e);
  return job;
}

absl::StatusOr<std::vector<StoredJob>> MemoryStore::LoadUnfinishedJobs() {
  absl::MutexLock lock(&mu_);
  std::vector<StoredJob> out;
  for (const auto& [id, row] : jobs_) {
    if (row.state != varan::v1::JOB_STATE_RUNNING) continue;
    StoredJob& job = out.emplace_back();
    job.record = row.record;
    job.events.reserve(row.events.size());
    for (const auto& [seq, e] : row.events) job.events.push_back(e);
  }
  return out;
}

absl::StatusOr<JobPage> MemoryStore::ListJobs(const JobQuery& query) {
  const std::set<varan::v1::JobState> states(query.states.begin(),
                                             query.states.end());
  const auto matches = [&](const JobRow& row) {
    if (!states.empty() && states.count(row.state) == 0) return false;
    if (!query.created_by.empty() && row.created_by != query.created_by) {
      return false;
    }
    if (!query.periphery.empty() &&
        !std::binary_search(row.targets.begin(), row.targets.end(),
                            query.periphery)) {
      return false;
    }
    if (query.created_after &&
        row.create_nanos < absl::ToUnixNanos(*query.created_after)) {
      return false;
    }
    if (query.created_before &&
        row.create_nanos >= absl::ToUnixNanos(*query.created_before)) {
      return false;
    }
    return true;
  };
  const size_t limit =
      std::min<size_t>(query.limit, std::numeric_limits<int32_t>::max());
  JobPage page;
  absl::MutexLock lock(&mu_);
  auto end = query.before_id.empty() ? jobs_.end()
                                     : jobs_.lower_bound(query.before_id);
  for (auto it = std::make_reverse_iterator(end); it != jobs_.rend(); ++it) {
    if (!matches(it->second)) continue;
    if (page.jobs.size() == limit) {
      page.more = true;
      break;
    }
    page.jobs.push_back(it->second.record);
  }
  return page;
}

// --- Sync and retention ----------------------------------------------------

absl::Status MemoryStore::CheckBacklog() {
  absl::MutexLock lock(&mu_);
  return backlog_;
}

void MemoryStore::SetBacklog(absl::Status status) {
  absl::MutexLock lock(&mu_);
  backlog_ = std::move(status);
}

absl::Status MemoryStore::Sync() {
  if (OnStoreThread()) {
    return absl::FailedPreconditionError(
        "Store::Sync called from a commit callback");
  }
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    status = std::exchange(unsynced_error_, absl::OkStatus());
  }
  RunOnStoreThreadAndWait([] {});
  return status;
}

absl::StatusOr<uint64_t> MemoryStore::PruneNow() {
  if (OnStoreThread()) {
    return absl::FailedPreconditionError(
        "Store::PruneNow called from a commit callback");
  }
  absl::MutexLock lock(&mu_);
  return PruneLocked();
}

uint64_t MemoryStore::PruneLocked() {
  const RetentionOptions& r = options_.retention;
  uint64_t deleted = 0;
  if (r.max_age > absl::ZeroDuration()) {
    const int64_t cutoff = absl::ToUnixNanos(clock_->Now() - r.max_age);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (it->second.create_nanos < cutoff &&
          it->second.state != varan::v1::JOB_STATE_RUNNING) {
        it = jobs_.erase(it);
        ++deleted;
      } else {
        ++it;
      }
    }
  }
  if (r.max_jobs > 0) {
    // Running jobs count, but only finished ones go, oldest id first.
    for (auto it = jobs_.begin();
         it != jobs_.end() && jobs_.size() > r.max_jobs;) {
      if (it->second.state != varan::v1::JOB_STATE_RUNNING) {
        it = jobs_.erase(it);
        ++deleted;
      } else {
        ++it;
      }
    }
  }
  return deleted;
}

}  // namespace varan::core
