// Dispatcher, part 1 of 3: construction, lookups (Find, List), Cancel,
// PeripheryGone, Shutdown and the end of a run. The class and its contract
// are in dispatcher.h; the rollout is in dispatcher_rollout.cc, recovery in
// dispatcher_recovery.cc.
#include "core/jobs/dispatcher.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/time_util.h"

namespace varan::core {

OutputLimits JobOutputLimits(const varan::v1::DispatchOptions& options,
                             const DispatcherOptions& defaults) {
  OutputLimits limits;
  limits.live_window_bytes = defaults.live_window_bytes;
  limits.head_bytes = defaults.default_output_head;
  limits.tail_bytes = defaults.default_output_tail;
  if (options.output_head_bytes() == 0 && options.output_tail_bytes() == 0 &&
      options.capture_limit_bytes() > 0) {
    limits.head_bytes = options.capture_limit_bytes() / 4;
    limits.tail_bytes = options.capture_limit_bytes() - limits.head_bytes;
    return limits;
  }
  if (options.output_head_bytes() > 0) {
    limits.head_bytes = options.output_head_bytes();
  }
  if (options.output_tail_bytes() > 0) {
    limits.tail_bytes = options.output_tail_bytes();
  }
  return limits;
}

Dispatcher::Dispatcher(const FleetRegistry* fleet, LinkProvider* links,
                       Store* store, const Clock* clock,
                       DispatcherOptions options)
    : fleet_(fleet),
      links_(links),
      store_(RequireStore(store, "Dispatcher")),
      clock_(clock),
      options_(options),
      stored_views_([this](const std::string& id) { return Find(id); },
                    options_.run_reads, clock, {}) {}

Dispatcher::~Dispatcher() {
  Shutdown(absl::Seconds(5));
  // Commit callbacks point at this dispatcher: let them all run now.
  (void)store_->Sync();
}

std::string Dispatcher::NewJobId() {
  // Time-ordered: milliseconds since the epoch, then a counter and random
  // bits so ids created in the same millisecond differ.
  absl::MutexLock lock(&mu_);
  const int64_t ms = absl::ToUnixMillis(clock_->Now());
  return absl::StrFormat("%011x%03x%s", ms, (id_counter_++) & 0xfff,
                         options_.replica_tag.empty()
                             ? GenerateSecret().substr(0, 6)
                             : options_.replica_tag);
}

void Dispatcher::RunDone(TargetRun* run) {
  const std::string job_id = run->job()->id();
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(job_id);
    if (it != active_.end()) --it->second->running;
    RemoveRunLocked(run);  // may destroy `run`
  }
  StartMore(job_id);
}

void Dispatcher::AddRunLocked(std::shared_ptr<TargetRun> run) {
  by_execution_[run->wire_id()] = run.get();
  by_periphery_[run->periphery_id()].insert(run.get());
  runs_[run.get()] = std::move(run);
}

void Dispatcher::RemoveRunLocked(TargetRun* run) {
  by_execution_.erase(run->wire_id());
  auto it = by_periphery_.find(run->periphery_id());
  if (it != by_periphery_.end()) {
    it->second.erase(run);
    if (it->second.empty()) by_periphery_.erase(it);
  }
  runs_.erase(run);  // may destroy `run`
}

std::vector<std::shared_ptr<TargetRun>> Dispatcher::RunsOn(
    const std::string& periphery_id) const {
  std::vector<std::shared_ptr<TargetRun>> out;
  absl::MutexLock lock(&mu_);
  auto it = by_periphery_.find(periphery_id);
  if (it == by_periphery_.end()) return out;
  for (TargetRun* run : it->second) out.push_back(runs_.at(run));
  return out;
}

bool Dispatcher::HasRunsOn(const std::string& periphery_id) const {
  absl::MutexLock lock(&mu_);
  return by_periphery_.contains(periphery_id);
}

std::vector<std::string> Dispatcher::AwaitedPeripheries() const {
  std::vector<std::shared_ptr<TargetRun>> runs;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [ptr, run] : runs_) runs.push_back(run);
  }
  absl::flat_hash_set<std::string> awaited;
  for (auto& run : runs) {
    if (run->awaiting()) awaited.insert(run->periphery_id());
  }
  return {awaited.begin(), awaited.end()};
}

void Dispatcher::Forget(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  active_.erase(job_id);
}

std::shared_ptr<Job> Dispatcher::Live(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(id);
  return it == active_.end() ? nullptr : it->second->job;
}

absl::StatusOr<std::shared_ptr<Job>> Dispatcher::Find(
    const std::string& id) const {
  if (std::shared_ptr<Job> live = Live(id); live != nullptr) return live;
  auto stored = store_->LoadJob(id);
  if (!stored.ok()) {
    if (absl::IsNotFound(stored.status())) {
      return absl::NotFoundError(absl::StrCat("no job with id \"", id, "\""));
    }
    return stored.status();
  }
  return Job::Restore(*std::move(stored), clock_, store_,
                      options_.live_window_bytes);
}

absl::StatusOr<varan::v1::ListJobsResponse> Dispatcher::List(
    const varan::v1::ListJobsRequest& request) const {
  const std::string& token = request.page_token();
  if (token.size() > 64 || !std::all_of(token.begin(), token.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c)) ||
               (c >= 'a' && c <= 'f');
      })) {
    return absl::InvalidArgumentError(
        "invalid page_token: pass next_page_token from the previous page");
  }
  JobQuery query;
  query.limit = request.limit() == 0 ? 50 : std::min(request.limit(), 1000u);
  query.before_id = token;
  for (int s : request.states()) {
    query.states.push_back(static_cast<varan::v1::JobState>(s));
  }
  query.created_by = request.created_by();
  query.periphery = request.periphery();
  if (request.has_created_after()) {
    query.created_after = FromTimestamp(request.created_after());
  }
  if (request.has_created_before()) {
    query.created_before = FromTimestamp(request.created_before());
  }
  varan::v1::ListJobsResponse out;
  auto page = store_->ListJobs(query);
  if (!page.ok()) return page.status();
  std::vector<std::shared_ptr<Job>> live(page->jobs.size());
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < page->jobs.size(); ++i) {
      auto it = active_.find(page->jobs[i].id());
      if (it != active_.end()) live[i] = it->second->job;
    }
  }
  for (size_t i = 0; i < page->jobs.size(); ++i) {
    *out.add_jobs() =
        live[i] != nullptr ? live[i]->Snapshot() : std::move(page->jobs[i]);
  }
  if (page->more && out.jobs_size() > 0) {
    out.set_next_page_token(out.jobs(out.jobs_size() - 1).id());
  }
  return out;
}

absl::StatusOr<varan::v1::Job> Dispatcher::Cancel(const std::string& id,
                                                  const std::string& by) {
  auto job = Find(id);
  if (!job.ok()) return job.status();
  if (!(*job)->RequestCancel(by)) return (*job)->Snapshot();
  spdlog::info("job {}: canceled by {}", id, by);
  std::deque<size_t> never_sent;
  std::vector<std::shared_ptr<TargetRun>> running;
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) never_sent.swap(it->second->pending);
    for (auto& [ptr, run] : runs_) {
      if (run->job()->id() == id) running.push_back(run);
    }
  }
  for (size_t i : never_sent) {
    (*job)->FinishTarget(
        i, varan::v1::TARGET_STATE_CANCELED,
        absl::StrCat("canceled by ", by, " before it started"));
  }
  for (auto& run : running) {
    run->Cancel();
    // Waiting to be sent again (Redeliver): it never reached its periphery.
    if (run->redelivering() && run->TakeRedelivery()) {
      run->job()->FinishTarget(
          run->index(), varan::v1::TARGET_STATE_CANCELED,
          absl::StrCat("canceled by ", by, " before it reached its periphery"));
      RunDone(run.get());
    }
  }
  return (*job)->Snapshot();
}

void Dispatcher::PeripheryGone(const std::string& periphery_id,
                               const std::string& reason) {
  for (auto& run : RunsOn(periphery_id)) {
    run->job()->FinishTarget(run->index(), varan::v1::TARGET_STATE_LOST,
                             reason);
    if (run->Gone()) {
      RunDone(run.get());  // it had no call left
    } else {
      run->Abort();
    }
  }
}

void Dispatcher::Tick() {
  Redeliver();
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, a] : active_) jobs.push_back(a->job);
  }
  for (auto& job : jobs) job->FlushOutput();
}

void Dispatcher::Shutdown(absl::Duration timeout) {
  std::vector<std::shared_ptr<TargetRun>> running;
  std::vector<std::pair<std::shared_ptr<Job>, size_t>> never_sent;
  stopping_.store(true);
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ && runs_.empty()) return;
    shutting_down_ = true;
    for (auto& [ptr, run] : runs_) running.push_back(run);
    for (auto& [id, a] : active_) {
      // A reader blocked on the job's window must not hold up the calls'
      // end.
      a->job->ReleaseProducers();
      for (size_t i : a->pending) never_sent.emplace_back(a->job, i);
      a->pending.clear();
    }
  }
  for (auto& [job, i] : never_sent) {
    job->FinishTarget(i, varan::v1::TARGET_STATE_FAILED,
                      "core shut down before this target was sent");
  }
  // Running targets stay running in the store: their commands go on (the
  // peripheries hold their results) and the next start of core collects
  // them (Recover).
  if (!running.empty()) {
    spdlog::info(
        "{} target(s) keep running on their peripheries; core collects their "
        "results when it starts again",
        running.size());
  }
  for (auto& run : running) {
    if (run->TakeAwaiting()) {
      RunDone(run.get());
    } else {
      run->Abort();
    }
  }
  running.clear();
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(this, &Dispatcher::NoRuns),
                            timeout)) {
    spdlog::warn("{} call(s) to peripheries did not end in time", runs_.size());
  }
}

}  // namespace varan::core
