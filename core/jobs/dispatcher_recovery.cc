// Dispatcher, part 3 of 3: recovery and reconciliation — taking over the
// jobs a previous core left running (Recover) and resolving waiting targets
// from the peripheries' heartbeat reports (OnPeripheryReport). The class
// and its contract are in dispatcher.h.
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "core/jobs/dispatcher.h"
#include "core/jobs/job_owner.h"

namespace varan::core {

absl::StatusOr<size_t> Dispatcher::Recover() {
  return TakeOverStored("core restarted", "were running when core last stopped",
                        /*orphans_only=*/false);
}

absl::StatusOr<size_t> Dispatcher::AdoptOrphans() {
  if (!options_.owns_job) return 0;
  return TakeOverStored("the core replica running this job died",
                        "of core replicas that died were taken over",
                        /*orphans_only=*/true);
}

absl::StatusOr<size_t> Dispatcher::TakeOverStored(absl::string_view why,
                                                  absl::string_view what,
                                                  bool orphans_only) {
  auto unfinished = store_->LoadUnfinishedJobs();
  if (!unfinished.ok()) return unfinished.status();
  TakeOverCounts counts;
  // Each dead creator is fenced once per scan, before any of its jobs is
  // taken over: the tag -> whether it is.
  absl::flat_hash_map<std::string, bool> fenced;
  absl::Status scan = absl::OkStatus();
  for (auto& stored : *unfinished) {
    const std::string& id = stored.record.id();
    // Never its own: a job of this replica not running here any more has
    // finished, its final record on its way to the store.
    if (orphans_only && (JobTag(id) == options_.replica_tag ||
                         !options_.owns_job(id) || Running(id))) {
      continue;
    }
    if (const std::string tag = JobTag(id);
        orphans_only && options_.fence_creator && !tag.empty()) {
      auto [it, first] = fenced.try_emplace(tag, false);
      if (first) {
        const absl::Status s = options_.fence_creator(tag);
        it->second = s.ok();
        if (s.ok()) {
          spdlog::info("fenced core replica {} before taking over its jobs",
                       tag);
        } else {
          spdlog::warn(
              "core replica {} cannot be fenced, so its jobs are not taken "
              "over yet: {}",
              tag, s.message());
          // Looked at again soon (AdoptionSchedule) unless it is live.
          if (!absl::IsFailedPrecondition(s) && scan.ok()) scan = s;
        }
      }
      if (!it->second) continue;
    }
    TakeOver(std::move(stored), why, &counts);
  }
  if (counts.jobs > 0) {
    spdlog::warn(
        "{} job(s) {}: {} target(s) wait for their peripheries to report, {} "
        "lost (periphery offline), {} failed (never sent)",
        counts.jobs, what, counts.waiting, counts.lost, counts.never_sent);
  }
  if (!scan.ok()) return scan;
  return counts.jobs;
}

void Dispatcher::TakeOver(StoredJob stored, absl::string_view why,
                          TakeOverCounts* counts) {
  {
    const std::string id = stored.record.id();
    auto restored = Job::Restore(std::move(stored), clock_, store_,
                                 options_.live_window_bytes);
    if (!restored.ok()) {
      spdlog::error("job {} cannot be recovered: {}", id,
                    restored.status().message());
      return;
    }
    std::shared_ptr<Job> job = *std::move(restored);
    ++counts->jobs;
    job->SetOnFinishedPersisted([this, id] { Forget(id); });
    const varan::v1::Job snap = job->Snapshot();
    auto active = std::make_unique<Rollout>();
    active->job = job;
    active->spec = snap.spec();
    active->committed = true;
    std::vector<std::shared_ptr<TargetRun>> runs;
    for (int i = 0; i < snap.targets_size(); ++i) {
      const varan::v1::JobTarget& t = snap.targets(i);
      const size_t index = static_cast<size_t>(i);
      if (IsFinal(t.state())) continue;
      const bool queued = t.state() == varan::v1::TARGET_STATE_QUEUED;
      const bool online = fleet_->IsOnline(t.periphery_id());
      if (queued && !online) {
        job->FinishTarget(
            index, varan::v1::TARGET_STATE_FAILED,
            absl::StrCat(why, " before this target was sent; it never ran"));
        ++counts->never_sent;
      } else if (!online) {
        job->FinishTarget(
            index, varan::v1::TARGET_STATE_LOST,
            absl::StrCat(why, " while the target was ",
                         t.state() == varan::v1::TARGET_STATE_RUNNING
                             ? "running"
                             : "being sent",
                         ", and periphery ", t.name(),
                         " was offline; its outcome is unknown"));
        ++counts->lost;
      } else {
        auto run = std::make_shared<TargetRun>(
            AsOwner(), job, index, t.periphery_id(), ExecutionId{id, t.name()});
        // A queued target may have been sent all the same (the record of
        // it not yet committed): its periphery's reports tell.
        run->Await(absl::UnavailableError(
            queued ? absl::StrCat(why,
                                  " before this target was recorded as "
                                  "sent")
                   : std::string(why)));
        runs.push_back(std::move(run));
      }
    }
    if (runs.empty()) return;
    counts->waiting += runs.size();
    absl::MutexLock lock(&mu_);
    active->running = runs.size();
    for (auto& run : runs) AddRunLocked(std::move(run));
    active_[id] = std::move(active);
  }
}

std::vector<std::string> Dispatcher::OnPeripheryReport(
    const std::string& periphery_id,
    const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
        reports,
    std::vector<std::string>* cancel, bool complete,
    std::vector<std::string>* resend) {
  std::vector<std::string> acks;
  std::vector<
      std::pair<std::shared_ptr<TargetRun>, const varan::v1::ExecutionReport*>>
      mentioned;
  std::vector<const varan::v1::ExecutionReport*> late;
  std::vector<const varan::v1::ExecutionReport*> stray;  // running, no run
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
            run->wire_id());
        cancel->push_back(report->execution_id());
      }
      continue;
    }
    // Its end went out on the call that broke and never arrived: without
    // the tails, the output written last would be missing. Asked for until
    // they come (the periphery hears the ask a heartbeat or more later:
    // the reports until then have none), or kAskForTails has passed (a
    // periphery that does not know the ask: applied as it is).
    const bool has_tails =
        report->has_stdout_tail() || report->has_stderr_tail();
    switch (run->ClaimEnd(has_tails, resend != nullptr, clock_->Now(),
                          kAskForTails)) {
      case TargetRun::EndClaim::kNotAwaiting:
        continue;
      case TargetRun::EndClaim::kAskTails:
        spdlog::info(
            "execution {}: its periphery reported how it ended without the "
            "output tails; asking for them",
            run->wire_id());
        resend->push_back(report->execution_id());
        continue;
      case TargetRun::EndClaim::kApply:
        break;
    }
    spdlog::info("execution {}: its periphery reported how it ended",
                 run->wire_id());
    run->job()->ApplyReport(run->index(), *report);
    // Not acknowledged yet: the periphery forgets a result only once it is
    // stored (AmendLate, when it reports it again).
    RunDone(run.get());
  }
  for (auto& run : complete ? RunsOn(periphery_id)
                            : std::vector<std::shared_ptr<TargetRun>>{}) {
    // A redelivering run's request never reached the periphery.
    if (seen.contains(run.get()) || !run->awaiting() || run->redelivering()) {
      continue;
    }
    if (run->Missed() < 2 || !run->TakeAwaiting()) continue;
    const bool started = run->job()->Started(run->index());
    const std::string why =
        started ? absl::StrCat("periphery no longer holds execution ",
                               run->wire_id(),
                               " (it restarted, or dropped the result); the "
                               "call had ended with: ",
                               run->broke().ToString())
                : absl::StrCat(
                      "the call broke before the command was "
                      "reported started (",
                      run->broke().ToString(),
                      "), and the periphery does not hold execution ",
                      run->wire_id(), ": it never started there");
    spdlog::warn("execution {}: {}", run->wire_id(), why);
    run->job()->FinishTarget(
        run->index(),
        started ? varan::v1::TARGET_STATE_LOST : varan::v1::TARGET_STATE_FAILED,
        why);
    RunDone(run.get());
  }
  for (const auto* report : late) {
    if (AmendLate(*report, resend)) acks.push_back(report->execution_id());
  }
  for (const auto* report : stray) {
    if (CanceledWhileAway(report->execution_id())) {
      cancel->push_back(report->execution_id());
    }
  }
  return acks;
}

bool Dispatcher::CanceledWhileAway(const std::string& wire_id) {
  auto id = ExecutionId::Parse(wire_id);
  if (!id.ok()) return false;  // not one of core's
  if (options_.owns_job && !options_.owns_job(id->job_id)) return false;
  varan::v1::TargetState state = varan::v1::TARGET_STATE_UNSPECIFIED;
  auto look = [&](const std::shared_ptr<Job>& job) {
    if (!job->CancelRequested()) return;
    const int index = job->TargetIndex(id->target);
    if (index >= 0) state = job->Snapshot().targets(index).state();
  };
  if (std::shared_ptr<Job> live = Live(id->job_id); live != nullptr) {
    look(live);
  } else {
    stored_views_.With(id->job_id,
                       [&](const absl::StatusOr<std::shared_ptr<Job>>& job,
                           StoredJobViews::Changed&) {
                         if (job.ok()) look(*job);
                       });
  }
  if (!IsFinal(state)) return false;
  spdlog::info(
      "execution {}: still running on its periphery although its job was "
      "canceled and the target ended {} in core; asking the periphery to "
      "stop it",
      wire_id, varan::v1::TargetState_Name(state));
  return true;
}

bool Dispatcher::AskLateTails(const std::string& wire_id, absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::erase_if(late_tails_asked_, [&](const auto& entry) {
    return now - entry.second >= 2 * kAskForTails;
  });
  auto [it, first] = late_tails_asked_.try_emplace(wire_id, now);
  return first || now - it->second < kAskForTails;
}

bool Dispatcher::AmendLate(const varan::v1::ExecutionReport& report,
                           std::vector<std::string>* resend) {
  auto id = ExecutionId::Parse(report.execution_id());
  if (!id.ok()) return true;  // not one of core's: forget it
  // Another replica's job: that replica answers for it.
  if (options_.owns_job && !options_.owns_job(id->job_id)) return false;
  // A job in memory has not had its final record stored yet (it is
  // forgotten once it has): what it says of the target may never reach the
  // store (core dying, or fenced, before it does).
  if (std::shared_ptr<Job> live = Live(id->job_id); live != nullptr) {
    return AmendLateIn(live, /*stored=*/false, report, id->target, resend,
                       nullptr);
  }
  bool forget = false;
  stored_views_.With(
      id->job_id, [&](const absl::StatusOr<std::shared_ptr<Job>>& job,
                      StoredJobViews::Changed& changed) {
        if (!job.ok()) {
          forget = absl::IsNotFound(job.status());  // else: retry later
          return;
        }
        forget = AmendLateIn(*job, /*stored=*/true, report, id->target, resend,
                             &changed);
      });
  return forget;
}

bool Dispatcher::AmendLateIn(const std::shared_ptr<Job>& job, bool stored,
                             const varan::v1::ExecutionReport& report,
                             const std::string& target,
                             std::vector<std::string>* resend,
                             StoredJobViews::Changed* changed) {
  const std::string& wire_id = report.execution_id();
  const int index = job->TargetIndex(target);
  if (index < 0) return true;
  // Amended since the view was read: it says what is not stored yet. The
  // report is forgotten once a later read shows it stored.
  if (changed != nullptr && changed->contains(index)) return false;
  // A target still waiting in a job nobody runs here (yet: a dead replica's,
  // before this one takes it over): the periphery keeps the result for
  // whoever will.
  const varan::v1::TargetState state = job->Snapshot().targets(index).state();
  if (!IsFinal(state)) return false;
  // A LOST target's outcome without the tails: the output written last
  // went to the replica that lost it (the command's end with it).
  if (state == varan::v1::TARGET_STATE_LOST && report.has_exited() &&
      !report.has_stdout_tail() && !report.has_stderr_tail() &&
      resend != nullptr && AskLateTails(wire_id, clock_->Now())) {
    spdlog::info(
        "execution {}: its periphery reported the outcome of a lost target "
        "without the output tails; asking for them",
        wire_id);
    resend->push_back(wire_id);
    return false;
  }
  if (job->AmendLost(static_cast<size_t>(index), report)) {
    if (changed != nullptr) changed->insert(index);
    {
      absl::MutexLock lock(&mu_);
      late_tails_asked_.erase(wire_id);
    }
    spdlog::info(
        "execution {}: its periphery reported the outcome after the target "
        "had been lost; recorded",
        wire_id);
    return false;  // forgotten once the amendment is stored: next time
  }
  // The periphery forgets the result only once its outcome is stored.
  return stored;
}

}  // namespace varan::core
