#include "core/jobs/dispatcher.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/command_spec.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/time_util.h"

namespace varan::core {

// One target of one job: observes its Execute call.
class Dispatcher::TargetRun final : public ExecuteObserver {
 public:
  TargetRun(Dispatcher* dispatcher, std::shared_ptr<Job> job, size_t index)
      : dispatcher_(dispatcher), job_(std::move(job)), index_(index) {}

  void SetCall(ExecuteCall* call) {
    absl::MutexLock lock(&mu_);
    if (!done_) call_ = call;
  }

  void Cancel() {
    absl::MutexLock lock(&mu_);
    if (call_ != nullptr) call_->Cancel();
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
  absl::Mutex mu_;
  ExecuteCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

Dispatcher::Dispatcher(const FleetRegistry* fleet, LinkProvider* links,
                       const Clock* clock, DispatcherOptions options)
    : fleet_(fleet), links_(links), clock_(clock), options_(options) {}

Dispatcher::~Dispatcher() { Shutdown(absl::Seconds(5)); }

std::string Dispatcher::NewJobId() {
  // Time-ordered: milliseconds since the epoch, then a counter and random
  // bits so ids created in the same millisecond differ.
  absl::MutexLock lock(&mu_);
  const int64_t ms = absl::ToUnixMillis(clock_->Now());
  return absl::StrFormat("%011x%03x%s", ms, (id_counter_++) & 0xfff,
                         GenerateSecret().substr(0, 6));
}

absl::StatusOr<std::shared_ptr<Job>> Dispatcher::Dispatch(
    const varan::v1::DispatchRequest& request, const std::string& created_by) {
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
  auto job = std::make_shared<Job>(std::move(record), capture, clock_);

  std::vector<std::shared_ptr<TargetRun>> runs;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("core is shutting down");
    jobs_[job->id()] = job;
    job_order_.push_back(job->id());
    while (job_order_.size() > options_.max_jobs_kept) {
      auto it = jobs_.find(job_order_.front());
      if (it != jobs_.end() && !it->second->finished()) break;
      if (it != jobs_.end()) jobs_.erase(it);
      job_order_.pop_front();
    }
    for (size_t i = 0; i < targets->size(); ++i) {
      if (!(*targets)[i].online) continue;
      auto run = std::make_shared<TargetRun>(this, job, i);
      runs_[run.get()] = run;
      runs.push_back(run);
    }
  }
  spdlog::info("job {}: {} by {} on {} target(s)", job->id(),
               request.spec().shell().empty()
                   ? absl::StrJoin(request.spec().argv(), " ")
                   : request.spec().shell(),
               created_by, targets->size());

  size_t next_run = 0;
  for (size_t i = 0; i < targets->size(); ++i) {
    const DialTarget& t = (*targets)[i];
    if (!t.online) {
      job->FailTarget(
          i, absl::StrCat("periphery ", t.name, " is offline (last seen ",
                          absl::FormatTime(t.last_seen), ")"));
      continue;
    }
    std::shared_ptr<TargetRun> run = runs[next_run++];
    varan::v1::ExecuteRequest req;
    req.set_execution_id(absl::StrCat(job->id(), "/", t.name));
    *req.mutable_spec() = request.spec();
    job->MarkDispatched(i);
    auto link = links_->LinkFor(t.id, t.address, t.credential);
    run->SetCall(link->Execute(req, run.get()));
  }
  return job;
}

void Dispatcher::RunDone(TargetRun* run) {
  absl::MutexLock lock(&mu_);
  runs_.erase(run);
}

absl::StatusOr<std::shared_ptr<Job>> Dispatcher::Find(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job with id \"", id, "\""));
  }
  return it->second;
}

std::vector<varan::v1::Job> Dispatcher::List(size_t limit) const {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = job_order_.rbegin();
         it != job_order_.rend() && jobs.size() < limit; ++it) {
      auto j = jobs_.find(*it);
      if (j != jobs_.end()) jobs.push_back(j->second);
    }
  }
  std::vector<varan::v1::Job> out;
  for (const auto& j : jobs) out.push_back(j->Snapshot(/*with_output=*/false));
  return out;
}

void Dispatcher::Shutdown(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
  for (auto& [ptr, run] : runs_) run->Cancel();
  if (!mu_.AwaitWithTimeout(absl::Condition(this, &Dispatcher::NoRuns),
                            timeout)) {
    spdlog::warn("{} call(s) to peripheries did not end in time", runs_.size());
  }
}

}  // namespace varan::core
