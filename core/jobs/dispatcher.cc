#include "core/jobs/dispatcher.h"

#include "absl/container/flat_hash_set.h"
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

// One target of one job: observes its Execute call, and when the call
// breaks, waits for the periphery's report (see the header).
class Dispatcher::TargetRun final : public ExecuteObserver {
 public:
  TargetRun(Dispatcher* dispatcher, std::shared_ptr<Job> job, size_t index,
            std::string periphery_id, std::string execution_id)
      : dispatcher_(dispatcher),
        job_(std::move(job)),
        index_(index),
        periphery_id_(std::move(periphery_id)),
        execution_id_(std::move(execution_id)) {}

  const std::shared_ptr<Job>& job() const { return job_; }
  size_t index() const { return index_; }
  const std::string& periphery_id() const { return periphery_id_; }
  const std::string& execution_id() const { return execution_id_; }

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

  // A run taken over after a restart: no call; it waits for a report.
  void Await(absl::Status why) {
    absl::MutexLock lock(&mu_);
    done_ = true;
    awaiting_ = true;
    broke_ = std::move(why);
  }

  bool awaiting() {
    absl::MutexLock lock(&mu_);
    return awaiting_;
  }

  // Whoever resolves a waiting run claims it first: true exactly once.
  bool TakeAwaiting() {
    absl::MutexLock lock(&mu_);
    return std::exchange(awaiting_, false);
  }

  // The periphery went away (the target is LOST): the run stops waiting.
  // True when it was waiting (the caller then ends it).
  bool Gone() {
    absl::MutexLock lock(&mu_);
    gone_ = true;
    return std::exchange(awaiting_, false);
  }

  // A report did not mention it: returns how many in a row did not.
  int Missed() {
    absl::MutexLock lock(&mu_);
    return ++misses_;
  }
  void Seen() {
    absl::MutexLock lock(&mu_);
    misses_ = 0;
  }
  absl::Status broke() {
    absl::MutexLock lock(&mu_);
    return broke_;
  }

  void OnEvent(const varan::v1::ExecuteEvent& event) override {
    job_->OnExecuteEvent(index_, event);
  }

  void OnDone(const absl::Status& status) override {
    if (dispatcher_->stopping_.load()) {
      // Core is stopping: the target stays as it is in the store and the
      // next core collects the periphery's report.
      {
        absl::MutexLock lock(&mu_);
        done_ = true;
        call_ = nullptr;
      }
      dispatcher_->RunDone(this);  // may destroy this
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      call_ = nullptr;
      // A call that broke may have started the command even when its
      // "started" never reached core: wait for the periphery's report. Only
      // a call that never reached the periphery (no tunnel, no connection)
      // or that it refused fails the target at once.
      if (!gone_ && Recoverable(status) && !IsNotDelivered(status) &&
          !job_->Settled(index_)) {
        awaiting_ = true;
        broke_ = status;
        misses_ = 0;
      }
      if (awaiting_) {
        spdlog::info(
            "execution {}: the call to its periphery broke{} ({}); waiting "
            "for the periphery to report it",
            execution_id_,
            job_->Started(index_) ? ""
                                  : " before the command was reported started",
            status.ToString());
        return;
      }
    }
    job_->OnExecuteDone(index_, status);
    dispatcher_->RunDone(this);  // may destroy this
  }

 private:
  // A call that ended like this may have left the command running (or
  // finished) on the periphery, which holds the result.
  bool Recoverable(const absl::Status& status) const {
    switch (status.code()) {
      case absl::StatusCode::kUnavailable:
      case absl::StatusCode::kCancelled:
      case absl::StatusCode::kUnknown:
      case absl::StatusCode::kInternal:
      case absl::StatusCode::kAborted:
        return true;
      case absl::StatusCode::kDeadlineExceeded:
        // With a timeout, the backstop deadline means the periphery did not
        // report the end in time (TIMED_OUT, as before).
        return !job_->Snapshot(false).spec().has_timeout();
      default:
        return false;
    }
  }

  Dispatcher* const dispatcher_;
  const std::shared_ptr<Job> job_;
  const size_t index_;
  const std::string periphery_id_;
  const std::string execution_id_;
  absl::Mutex mu_;
  ExecuteCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool awaiting_ ABSL_GUARDED_BY(mu_) = false;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  int misses_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status broke_ ABSL_GUARDED_BY(mu_);
};

Dispatcher::Dispatcher(const FleetRegistry* fleet, LinkProvider* links,
                       Store* store, const Clock* clock,
                       DispatcherOptions options)
    : fleet_(fleet),
      links_(links),
      store_(RequireStore(store, "Dispatcher")),
      clock_(clock),
      options_(options) {}

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
                         GenerateSecret().substr(0, 6));
}

absl::StatusOr<size_t> Dispatcher::Recover() {
  auto unfinished = store_->LoadUnfinishedJobs();
  if (!unfinished.ok()) return unfinished.status();
  size_t jobs = 0, waiting = 0, lost = 0, never_sent = 0;
  for (auto& stored : *unfinished) {
    const std::string id = stored.record.id();
    auto restored = Job::Restore(std::move(stored), clock_, store_);
    if (!restored.ok()) {
      spdlog::error("job {} cannot be recovered: {}", id,
                    restored.status().message());
      continue;
    }
    std::shared_ptr<Job> job = *std::move(restored);
    ++jobs;
    job->SetOnFinishedPersisted([this, id] { Forget(id); });
    const varan::v1::Job snap = job->Snapshot(false);
    auto active = std::make_unique<ActiveJob>();
    active->job = job;
    active->spec = snap.spec();
    active->committed = true;
    std::vector<std::shared_ptr<TargetRun>> runs;
    for (int i = 0; i < snap.targets_size(); ++i) {
      const varan::v1::JobTarget& t = snap.targets(i);
      const size_t index = static_cast<size_t>(i);
      if (IsFinal(t.state())) continue;
      if (t.state() == varan::v1::TARGET_STATE_QUEUED) {
        job->FinishTarget(index, varan::v1::TARGET_STATE_FAILED,
                          "core restarted before this target was sent; it "
                          "never ran");
        ++never_sent;
      } else if (!fleet_->IsOnline(t.periphery_id())) {
        job->FinishTarget(
            index, varan::v1::TARGET_STATE_LOST,
            absl::StrCat("core restarted while the target was ",
                         t.state() == varan::v1::TARGET_STATE_RUNNING
                             ? "running"
                             : "being sent",
                         ", and periphery ", t.name(),
                         " was offline; its outcome is unknown"));
        ++lost;
      } else {
        auto run =
            std::make_shared<TargetRun>(this, job, index, t.periphery_id(),
                                        absl::StrCat(id, "/", t.name()));
        run->Await(absl::UnavailableError("core restarted"));
        runs.push_back(std::move(run));
      }
    }
    if (runs.empty()) continue;
    waiting += runs.size();
    absl::MutexLock lock(&mu_);
    active->running = runs.size();
    for (auto& run : runs) {
      by_execution_[run->execution_id()] = run.get();
      runs_[run.get()] = std::move(run);
    }
    active_[id] = std::move(active);
  }
  if (jobs > 0) {
    spdlog::warn(
        "{} job(s) were running when core last stopped: {} target(s) wait "
        "for their peripheries to report, {} lost (periphery offline), {} "
        "failed (never sent)",
        jobs, waiting, lost, never_sent);
  }
  return jobs;
}

std::vector<std::string> Dispatcher::OnPeripheryReport(
    const std::string& periphery_id,
    const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
        reports,
    std::vector<std::string>* cancel) {
  std::vector<std::string> acks;
  std::vector<
      std::pair<std::shared_ptr<TargetRun>, const varan::v1::ExecutionReport*>>
      mentioned;
  std::vector<const varan::v1::ExecutionReport*> late;
  std::vector<const varan::v1::ExecutionReport*> stray;  // running, no run
  std::vector<std::shared_ptr<TargetRun>> mine;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& r : reports) {
      auto it = by_execution_.find(r.execution_id());
      if (it == by_execution_.end() ||
          it->second->periphery_id() != periphery_id) {
        if (r.has_exited()) {
          late.push_back(&r);
        } else if (cancel != nullptr) {
          stray.push_back(&r);
        }
        continue;
      }
      mentioned.emplace_back(runs_.at(it->second), &r);
    }
    for (auto& [ptr, run] : runs_) {
      if (run->periphery_id() == periphery_id) mine.push_back(run);
    }
  }
  absl::flat_hash_set<TargetRun*> seen;
  for (auto& [run, report] : mentioned) {
    seen.insert(run.get());
    run->Seen();
    // A run whose call is still open gets the result in its stream; the
    // report comes again if that breaks.
    if (!report->has_exited()) {
      // A waiting command whose start core never heard of is running.
      if (report->has_started() && run->awaiting() &&
          !run->job()->Started(run->index())) {
        run->job()->ApplyReport(run->index(), *report);
      }
      // Its job was canceled while the call was broken: the cancel goes
      // with the heartbeat's answer (the target then waits for the end).
      if (cancel != nullptr && run->awaiting() &&
          run->job()->CancelRequested()) {
        spdlog::info(
            "execution {}: its job was canceled while the call was broken; "
            "asking its periphery to stop it",
            run->execution_id());
        cancel->push_back(report->execution_id());
      }
      continue;
    }
    if (!run->TakeAwaiting()) continue;
    spdlog::info("execution {}: its periphery reported how it ended",
                 run->execution_id());
    run->job()->ApplyReport(run->index(), *report);
    acks.push_back(report->execution_id());
    RunDone(run.get());
  }
  for (auto& run : mine) {
    if (seen.contains(run.get()) || !run->awaiting()) continue;
    if (run->Missed() < 2 || !run->TakeAwaiting()) continue;
    const bool started = run->job()->Started(run->index());
    const std::string why =
        started ? absl::StrCat("periphery no longer holds execution ",
                               run->execution_id(),
                               " (it restarted, or dropped the result); the "
                               "call had ended with: ",
                               run->broke().ToString())
                : absl::StrCat(
                      "the call broke before the command was "
                      "reported started (",
                      run->broke().ToString(),
                      "), and the periphery does not hold execution ",
                      run->execution_id(), ": it never started there");
    spdlog::warn("execution {}: {}", run->execution_id(), why);
    run->job()->FinishTarget(
        run->index(),
        started ? varan::v1::TARGET_STATE_LOST : varan::v1::TARGET_STATE_FAILED,
        why);
    RunDone(run.get());
  }
  for (const auto* report : late) {
    if (AmendLate(*report)) acks.push_back(report->execution_id());
  }
  for (const auto* report : stray) {
    if (CanceledWhileAway(report->execution_id())) {
      cancel->push_back(report->execution_id());
    }
  }
  return acks;
}

bool Dispatcher::CanceledWhileAway(const std::string& execution_id) {
  const size_t slash = execution_id.find('/');
  if (slash == std::string::npos) return false;  // not one of core's
  auto job = Find(execution_id.substr(0, slash));
  if (!job.ok() || !(*job)->CancelRequested()) return false;
  const int index = (*job)->TargetIndex(execution_id.substr(slash + 1));
  if (index < 0) return false;
  const varan::v1::TargetState state =
      (*job)->Snapshot(false).targets(index).state();
  if (!IsFinal(state)) return false;
  spdlog::info(
      "execution {}: still running on its periphery although its job was "
      "canceled and the target ended {} in core; asking the periphery to "
      "stop it",
      execution_id, varan::v1::TargetState_Name(state));
  return true;
}

bool Dispatcher::AmendLate(const varan::v1::ExecutionReport& report) {
  const std::string& exec_id = report.execution_id();
  const size_t slash = exec_id.find('/');
  if (slash == std::string::npos) return true;  // not one of core's
  auto job = Find(exec_id.substr(0, slash));
  if (!job.ok()) return absl::IsNotFound(job.status());  // else: retry later
  const int index = (*job)->TargetIndex(exec_id.substr(slash + 1));
  if (index < 0) return true;
  if ((*job)->AmendLost(static_cast<size_t>(index), report)) {
    spdlog::info(
        "execution {}: its periphery reported the outcome after the target "
        "had been lost; recorded",
        exec_id);
  }
  return true;
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
      auto run = std::make_shared<TargetRun>(
          this, job, i, a.targets[i].id,
          absl::StrCat(job_id, "/", a.targets[i].name));
      by_execution_[run->execution_id()] = run.get();
      runs_[run.get()] = run;
      ++a.running;
      starts.push_back(Start{std::move(run), a.targets[i]});
    }
    if (!starts.empty()) {
      *request.mutable_spec() = a.spec;
      request.set_hold_result(true);
    }
  }
  for (size_t i : skipped) {
    job->FinishTarget(
        i, varan::v1::TARGET_STATE_SKIPPED,
        absl::StrCat("not started: ", job->failures(),
                     " target(s) failed and stop_after_failures is ",
                     stop_after));
  }
  for (Start& s : starts) {
    request.set_execution_id(s.run->execution_id());
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
    by_execution_.erase(run->execution_id());
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
    if (run->Gone()) {
      RunDone(run.get());  // it had no call left
    } else {
      run->Abort();
    }
  }
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
