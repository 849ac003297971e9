// Dispatcher, part 2 of 3: the rollout — creating a job from a request,
// settling offline targets (skip_offline), and starting targets as the
// job's limits allow (max_parallel, stop_after_failures). The class and its
// contract are in dispatcher.h; the limits are kept in a Rollout
// (rollout.h).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/command_spec.h"
#include "common/log.h"
#include "core/jobs/dispatcher.h"

namespace varan::core {

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
  // Refused before anything is written: the store is behind.
  if (absl::Status s = store_->CheckBacklog(); !s.ok()) return s;
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
  auto job = std::make_shared<Job>(std::move(record),
                                   JobOutputLimits(request.options(), options_),
                                   clock_, store_);
  const std::string id = job->id();
  job->SetOnFinishedPersisted([this, id] { Forget(id); });

  auto active = std::make_unique<Rollout>();
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
    Rollout& a = *it->second;
    job = a.job;
    stop_after = a.stop_after_failures;
    skipped = a.TakeStopped(job->failures());
    while (a.MayStartNext()) {
      const size_t i = a.pending.front();
      a.pending.pop_front();
      auto run =
          std::make_shared<TargetRun>(AsOwner(), job, i, a.targets[i].id,
                                      ExecutionId{job_id, a.targets[i].name});
      AddRunLocked(run);
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
    request.set_execution_id(s.run->wire_id());
    job->MarkDispatched(s.run->index());
    auto link =
        links_->LinkFor(s.target.id, s.target.address, s.target.credential);
    s.run->SetCall(link->Execute(request, s.run.get()));
  }
}

void Dispatcher::Redeliver() {
  struct Again {
    std::shared_ptr<TargetRun> run;
    DialTarget target;
    varan::v1::CommandSpec spec;
  };
  const absl::Time now = clock_->Now();
  std::vector<std::shared_ptr<TargetRun>> expired;
  std::vector<Again> again;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    for (auto& [ptr, run] : runs_) {
      if (!run->redelivering()) continue;
      if (now >= run->redeliver_until()) {
        expired.push_back(run);
        continue;
      }
      if (now < run->next_redelivery()) continue;
      auto it = active_.find(run->execution_id().job_id);
      if (it == active_.end()) continue;
      if (run->index() >= it->second->targets.size()) {
        expired.push_back(run);  // not one this dispatcher sent
        continue;
      }
      again.push_back(
          Again{run, it->second->targets[run->index()], it->second->spec});
    }
  }
  for (auto& run : expired) {
    if (!run->TakeRedelivery()) continue;
    spdlog::warn("execution {}: no replica took over its periphery in {}",
                 run->wire_id(),
                 absl::FormatDuration(options_.redelivery_window));
    run->job()->OnExecuteDone(run->index(), run->broke());
    RunDone(run.get());
  }
  for (Again& a : again) {
    if (!a.run->TakeRedelivery()) continue;
    varan::v1::ExecuteRequest request;
    *request.mutable_spec() = std::move(a.spec);
    request.set_hold_result(true);
    request.set_execution_id(a.run->wire_id());
    spdlog::info("execution {}: sending it again", a.run->wire_id());
    auto link =
        links_->LinkFor(a.target.id, a.target.address, a.target.credential);
    a.run->SetCall(link->Execute(request, a.run.get()));
  }
}

}  // namespace varan::core
