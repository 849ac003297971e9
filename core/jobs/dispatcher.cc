#include "core/jobs/dispatcher.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/command_spec.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/time_util.h"

namespace varan::core {

// A job while it runs: its targets and what is left to send.
struct Dispatcher::ActiveJob {
  std::shared_ptr<Job> job;
  std::vector<DialTarget> targets;
  varan::v1::CommandSpec spec;
  uint32_t max_parallel = 0;
  uint32_t stop_after_failures = 0;
  // Committed to the store: targets may be sent.
  bool committed = false;
  // Indexes of targets not sent yet, in name order.
  std::deque<size_t> pending;
  size_t running = 0;
};

// One target of one job: observes its Execute call.
class Dispatcher::TargetRun final : public ExecuteObserver {
 public:
  TargetRun(Dispatcher* dispatcher, std::shared_ptr<Job> job, size_t index,
            std::string periphery_id)
      : dispatcher_(dispatcher),
        job_(std::move(job)),
        index_(index),
        periphery_id_(std::move(periphery_id)) {}

  const std::shared_ptr<Job>& job() const { return job_; }
  size_t index() const { return index_; }
  const std::string& periphery_id() const { return periphery_id_; }

  void SetCall(ExecuteCall* call) {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    call_ = call;
    if (abort_requested_) {
      call_->Abort();
    } else if (cancel_requested_) {
      call_->Cancel();
    }
  }

  // Cancel and Abort before SetCall apply when the call is set.
  void Cancel() {
    absl::MutexLock lock(&mu_);
    cancel_requested_ = true;
    if (call_ != nullptr) call_->Cancel();
  }

  void Abort() {
    absl::MutexLock lock(&mu_);
    abort_requested_ = true;
    if (call_ != nullptr) call_->Abort();
  }

  void OnEvent(const varan::v1::ExecuteEvent& event) override {
    job_->OnExecuteEvent(index_, event);
  }

  void OnDone(const absl::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      call_ = nullptr;
    }
    job_->OnExecuteDone(index_, status);
    dispatcher_->RunDone(this);  // may destroy this
  }

 private:
  Dispatcher* const dispatcher_;
  const std::shared_ptr<Job> job_;
  const size_t index_;
  const std::string periphery_id_;
  absl::Mutex mu_;
  ExecuteCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_requested_ ABSL_GUARDED_BY(mu_) = false;
};

Dispatcher::Dispatcher(const FleetRegistry* fleet, LinkProvider* links,
                       Store* store, const Clock* clock,
                       DispatcherOptions options)
    : fleet_(fleet),
      links_(links),
      store_(store),
      clock_(clock),
      options_(options) {}

Dispatcher::~Dispatcher() {
  Shutdown(absl::Seconds(5));
  // Commit callbacks point at this dispatcher: let them all run now.
  if (store_ != nullptr) (void)store_->Sync();
}

std::string Dispatcher::NewJobId() {
  // Time-ordered: milliseconds since the epoch, then a counter and random
  // bits so ids created in the same millisecond differ.
  absl::MutexLock lock(&mu_);
  const int64_t ms = absl::ToUnixMillis(clock_->Now());
  return absl::StrFormat("%011x%03x%s", ms, (id_counter_++) & 0xfff,
                         GenerateSecret().substr(0, 6));
}

absl::StatusOr<size_t> Dispatcher::Recover() {
  if (store_ == nullptr) return 0;
  auto unfinished = store_->LoadUnfinishedJobs();
  if (!unfinished.ok()) return unfinished.status();
  size_t finished = 0;
  for (auto& stored : *unfinished) {
    const std::string id = stored.record.id();
    auto job = Job::Restore(std::move(stored), clock_, store_);
    if (!job.ok()) {
      spdlog::error("job {} cannot be recovered: {}", id,
                    job.status().message());
      continue;
    }
    (*job)->AbandonAfterRestart();
    ++finished;
  }
  if (finished > 0) {
    spdlog::warn(
        "{} job(s) were running when core last stopped; their unfinished "
        "targets are marked lost (or failed, if never sent)",
        finished);
  }
  return finished;
}

absl::StatusOr<std::shared_ptr<Job>> Dispatcher::Dispatch(
    const varan::v1::DispatchRequest& request, const std::string& created_by,
    CommitCallback on_committed) {
  if (absl::Status s = ValidateCommandSpec(request.spec()); !s.ok()) return s;
  auto targets = fleet_->Resolve(request.target());
  if (!targets.ok()) return targets.status();
  if (targets->empty() && !request.options().allow_no_targets()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no periphery matches the target (selector \"",
                     request.target().selector(), "\", names [",
                     absl::StrJoin(request.target().names(), ", "), "])"));
  }
  varan::v1::Job record;
  record.set_id(NewJobId());
  record.set_created_by(created_by);
  *record.mutable_target() = request.target();
  *record.mutable_spec() = request.spec();
  *record.mutable_options() = request.options();
  for (const DialTarget& t : *targets) {
    auto* jt = record.add_targets();
    jt->set_name(t.name);
    jt->set_periphery_id(t.id);
    jt->set_state(varan::v1::TARGET_STATE_QUEUED);
  }
  const uint64_t capture = request.options().capture_limit_bytes() > 0
                               ? request.options().capture_limit_bytes()
                               : options_.default_capture_limit;
  auto job = std::make_shared<Job>(std::move(record), capture, clock_, store_);
  const std::string id = job->id();
  job->SetOnFinishedPersisted([this, id] { Forget(id); });

  auto active = std::make_unique<ActiveJob>();
  active->job = job;
  active->spec = request.spec();
  active->max_parallel = request.options().max_parallel();
  active->stop_after_failures = request.options().stop_after_failures();
  std::vector<size_t> offline;
  for (size_t i = 0; i < targets->size(); ++i) {
    if ((*targets)[i].online) {
      active->pending.push_back(i);
    } else {
      offline.push_back(i);
    }
  }
  active->targets = *std::move(targets);
  const std::vector<DialTarget>& matched = active->targets;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("core is shutting down");
    active_[id] = std::move(active);
  }
  spdlog::info("job {}: {} by {} on {} target(s)", id,
               request.spec().shell().empty()
                   ? absl::StrJoin(request.spec().argv(), " ")
                   : request.spec().shell(),
               created_by, job->target_count());
  for (size_t i : offline) {
    const DialTarget& t = matched[i];
    const std::string why =
        absl::StrCat("periphery ", t.name, " is offline (last seen ",
                     absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t.last_seen,
                                      absl::UTCTimeZone()),
                     ")");
    job->FinishTarget(i,
                      request.options().skip_offline()
                          ? varan::v1::TARGET_STATE_SKIPPED
                          : varan::v1::TARGET_STATE_FAILED,
                      why);
  }
  job->Persist([this, id, on_committed](const absl::Status& status) {
    std::shared_ptr<Job> failed_job;
    std::deque<size_t> never_sent;
    {
      absl::MutexLock lock(&mu_);
      auto it = active_.find(id);
      if (it != active_.end()) {
        if (status.ok()) {
          it->second->committed = true;
        } else {
          failed_job = it->second->job;
          never_sent.swap(it->second->pending);
        }
      }
    }
    if (status.ok()) {
      StartMore(id);
    } else {
      spdlog::error("job {} could not be stored: {}", id, status.message());
      for (size_t i : never_sent) {
        failed_job->FinishTarget(
            i, varan::v1::TARGET_STATE_FAILED,
            absl::StrCat("not sent: core could not store the job: ",
                         status.message()));
      }
    }
    if (on_committed) on_committed(status);
  });
  return job;
}

void Dispatcher::StartMore(const std::string& job_id) {
  struct Start {
    std::shared_ptr<TargetRun> run;
    DialTarget target;
  };
  std::vector<Start> starts;
  std::vector<size_t> skipped;
  std::shared_ptr<Job> job;
  uint32_t stop_after = 0;
  varan::v1::ExecuteRequest request;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    auto it = active_.find(job_id);
    if (it == active_.end() || !it->second->committed) return;
    ActiveJob& a = *it->second;
    job = a.job;
    stop_after = a.stop_after_failures;
    if (stop_after > 0 && job->failures() >= stop_after) {
      skipped.assign(a.pending.begin(), a.pending.end());
      a.pending.clear();
    }
    while (!a.pending.empty() &&
           (a.max_parallel == 0 || a.running < a.max_parallel)) {
      const size_t i = a.pending.front();
      a.pending.pop_front();
      auto run = std::make_shared<TargetRun>(this, job, i, a.targets[i].id);
      runs_[run.get()] = run;
      ++a.running;
      starts.push_back(Start{std::move(run), a.targets[i]});
    }
    if (!starts.empty()) *request.mutable_spec() = a.spec;
  }
  for (size_t i : skipped) {
    job->FinishTarget(
        i, varan::v1::TARGET_STATE_SKIPPED,
        absl::StrCat("not started: ", job->failures(),
                     " target(s) failed and stop_after_failures is ",
                     stop_after));
  }
  for (Start& s : starts) {
    request.set_execution_id(absl::StrCat(job_id, "/", s.target.name));
    job->MarkDispatched(s.run->index());
    auto link =
        links_->LinkFor(s.target.id, s.target.address, s.target.credential);
    s.run->SetCall(link->Execute(request, s.run.get()));
  }
}

void Dispatcher::RunDone(TargetRun* run) {
  const std::string job_id = run->job()->id();
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(job_id);
    if (it != active_.end()) --it->second->running;
    runs_.erase(run);  // may destroy `run`
  }
  StartMore(job_id);
}

void Dispatcher::Forget(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  active_.erase(job_id);
}

absl::StatusOr<std::shared_ptr<Job>> Dispatcher::Find(
    const std::string& id) const {
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(id);
    if (it != active_.end()) return it->second->job;
  }
  if (store_ == nullptr) {
    return absl::NotFoundError(absl::StrCat("no job with id \"", id, "\""));
  }
  auto stored = store_->LoadJob(id);
  if (!stored.ok()) {
    if (absl::IsNotFound(stored.status())) {
      return absl::NotFoundError(absl::StrCat("no job with id \"", id, "\""));
    }
    return stored.status();
  }
  return Job::Restore(*std::move(stored), clock_, store_);
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
  if (store_ == nullptr) return out;
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
    *out.add_jobs() = live[i] != nullptr ? live[i]->Snapshot(false)
                                         : std::move(page->jobs[i]);
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
  if (!(*job)->RequestCancel(by)) return (*job)->Snapshot(false);
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
  for (auto& run : running) run->Cancel();
  return (*job)->Snapshot(false);
}

void Dispatcher::PeripheryGone(const std::string& periphery_id,
                               const std::string& reason) {
  std::vector<std::shared_ptr<TargetRun>> lost;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [ptr, run] : runs_) {
      if (run->periphery_id() == periphery_id) lost.push_back(run);
    }
  }
  for (auto& run : lost) {
    run->job()->FinishTarget(run->index(), varan::v1::TARGET_STATE_LOST,
                             reason);
    run->Abort();
  }
}

void Dispatcher::Shutdown(absl::Duration timeout) {
  std::vector<std::shared_ptr<TargetRun>> running;
  std::vector<std::pair<std::shared_ptr<Job>, size_t>> never_sent;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ && runs_.empty()) return;
    shutting_down_ = true;
    for (auto& [ptr, run] : runs_) running.push_back(run);
    for (auto& [id, a] : active_) {
      for (size_t i : a->pending) never_sent.emplace_back(a->job, i);
      a->pending.clear();
    }
  }
  for (auto& [job, i] : never_sent) {
    job->FinishTarget(i, varan::v1::TARGET_STATE_FAILED,
                      "core shut down before this target was sent");
  }
  for (auto& run : running) {
    run->job()->FinishTarget(run->index(), varan::v1::TARGET_STATE_LOST,
                             "core shut down while the target ran; the "
                             "periphery was told to stop it");
    run->Abort();
  }
  running.clear();
  absl::MutexLock lock(&mu_);
  if (!mu_.AwaitWithTimeout(absl::Condition(this, &Dispatcher::NoRuns),
                            timeout)) {
    spdlog::warn("{} call(s) to peripheries did not end in time", runs_.size());
  }
}

}  // namespace varan::core
