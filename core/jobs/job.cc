#include "core/jobs/job.h"

#include "absl/strings/str_cat.h"
#include "common/time_util.h"

namespace varan::core {

using varan::v1::ExitStatus;
using varan::v1::JobEvent;
using varan::v1::TargetState;

bool IsFinal(TargetState state) {
  switch (state) {
    case varan::v1::TARGET_STATE_EXITED:
    case varan::v1::TARGET_STATE_FAILED:
    case varan::v1::TARGET_STATE_TIMED_OUT:
    case varan::v1::TARGET_STATE_CANCELED:
    case varan::v1::TARGET_STATE_LOST:
      return true;
    default:
      return false;
  }
}

Job::Job(varan::v1::Job record, uint64_t capture_limit, const Clock* clock)
    : id_(record.id()),
      target_count_(static_cast<size_t>(record.targets_size())),
      capture_limit_(capture_limit),
      clock_(clock) {
  absl::MutexLock lock(&mu_);
  record_ = std::move(record);
  record_.set_state(varan::v1::JOB_STATE_RUNNING);
  SetTimestamp(clock_->Now(), record_.mutable_create_time());
  captures_.resize(target_count_);
  started_.assign(target_count_, false);
  JobEvent accepted;
  accepted.mutable_accepted();  // present even with no targets
  for (const auto& t : record_.targets()) {
    accepted.mutable_accepted()->add_targets(t.name());
  }
  AppendLocked(std::move(accepted));
  if (target_count_ == 0) {
    record_.set_state(varan::v1::JOB_STATE_SUCCEEDED);
    SetTimestamp(clock_->Now(), record_.mutable_finish_time());
    JobEvent done;
    done.mutable_job_finished()->set_state(record_.state());
    AppendLocked(std::move(done));
  }
}

varan::v1::Job Job::Snapshot(bool with_output) const {
  absl::MutexLock lock(&mu_);
  varan::v1::Job out = record_;
  for (size_t i = 0; i < target_count_; ++i) {
    auto* t = out.mutable_targets(static_cast<int>(i));
    t->set_stdout_uncaptured_bytes(captures_[i][0].uncaptured);
    t->set_stderr_uncaptured_bytes(captures_[i][1].uncaptured);
    if (with_output) {
      t->set_stdout(captures_[i][0].data);
      t->set_stderr(captures_[i][1].data);
    }
  }
  return out;
}

bool Job::finished() const {
  absl::MutexLock lock(&mu_);
  return record_.state() != varan::v1::JOB_STATE_RUNNING;
}

void Job::AppendLocked(JobEvent event) {
  event.set_sequence(events_.size());
  event.set_job_id(id_);
  SetTimestamp(clock_->Now(), event.mutable_time());
  events_.push_back(std::move(event));
}

void Job::NotifyWatchers() {
  absl::MutexLock lock(&watchers_mu_);
  for (auto& [handle, callback] : watchers_) callback();
}

void Job::MarkDispatched(size_t target) {
  absl::MutexLock lock(&mu_);
  auto* t = record_.mutable_targets(static_cast<int>(target));
  if (t->state() == varan::v1::TARGET_STATE_QUEUED) {
    t->set_state(varan::v1::TARGET_STATE_DISPATCHED);
  }
}

void Job::FinishTargetLocked(size_t target, TargetState state,
                             const ExitStatus* exit, const std::string& error,
                             std::vector<JobEvent>* events) {
  auto* t = record_.mutable_targets(static_cast<int>(target));
  if (IsFinal(t->state())) return;
  t->set_state(state);
  if (exit != nullptr) *t->mutable_exit_status() = *exit;
  if (!error.empty()) t->set_error(error);
  SetTimestamp(clock_->Now(), t->mutable_finish_time());
  ++final_targets_;
  JobEvent ev;
  ev.set_target(t->name());
  auto* f = ev.mutable_finished();
  f->set_state(state);
  if (exit != nullptr) *f->mutable_exit_status() = *exit;
  f->set_error(error);
  events->push_back(std::move(ev));
  if (final_targets_ < target_count_) return;
  uint32_t succeeded = 0;
  for (const auto& tt : record_.targets()) {
    if (tt.state() == varan::v1::TARGET_STATE_EXITED &&
        tt.exit_status().kind() == ExitStatus::KIND_EXITED &&
        tt.exit_status().code() == 0) {
      ++succeeded;
    }
  }
  const uint32_t failed = static_cast<uint32_t>(target_count_) - succeeded;
  record_.set_state(failed == 0 ? varan::v1::JOB_STATE_SUCCEEDED
                                : varan::v1::JOB_STATE_FAILED);
  SetTimestamp(clock_->Now(), record_.mutable_finish_time());
  JobEvent done;
  done.mutable_job_finished()->set_state(record_.state());
  done.mutable_job_finished()->set_succeeded(succeeded);
  done.mutable_job_finished()->set_failed(failed);
  events->push_back(std::move(done));
}

void Job::OnExecuteEvent(size_t target, const varan::v1::ExecuteEvent& event) {
  {
    absl::MutexLock lock(&mu_);
    auto* t = record_.mutable_targets(static_cast<int>(target));
    if (IsFinal(t->state())) return;
    std::vector<JobEvent> events;
    if (event.has_started()) {
      started_[target] = true;
      t->set_state(varan::v1::TARGET_STATE_RUNNING);
      *t->mutable_start_time() = event.started().start_time();
      JobEvent ev;
      ev.set_target(t->name());
      ev.mutable_started()->set_pid(event.started().pid());
      events.push_back(std::move(ev));
    } else if (event.has_output()) {
      const auto& chunk = event.output();
      int stream = chunk.stream() == varan::v1::OUTPUT_STREAM_STDERR ? 1 : 0;
      Capture& cap = captures_[target][static_cast<size_t>(stream)];
      uint64_t room = capture_limit_ > cap.data.size()
                          ? capture_limit_ - cap.data.size()
                          : 0;
      uint64_t keep = std::min<uint64_t>(room, chunk.data().size());
      cap.uncaptured += chunk.data().size() - keep;
      if (keep > 0) {
        cap.data.append(chunk.data(), 0, keep);
        JobEvent ev;
        ev.set_target(t->name());
        *ev.mutable_output() = chunk;
        if (keep < chunk.data().size()) {
          ev.mutable_output()->mutable_data()->resize(keep);
        }
        events.push_back(std::move(ev));
      }
    } else if (event.has_exited()) {
      const ExitStatus& exit = event.exited();
      TargetState state = varan::v1::TARGET_STATE_EXITED;
      switch (exit.kind()) {
        case ExitStatus::KIND_TIMED_OUT:
          state = varan::v1::TARGET_STATE_TIMED_OUT;
          break;
        case ExitStatus::KIND_CANCELED:
          state = varan::v1::TARGET_STATE_CANCELED;
          break;
        case ExitStatus::KIND_START_FAILED:
        case ExitStatus::KIND_OUTPUT_LIMIT:
          state = varan::v1::TARGET_STATE_FAILED;
          break;
        default:
          break;
      }
      FinishTargetLocked(target, state, &exit, exit.error(), &events);
    }
    for (auto& ev : events) AppendLocked(std::move(ev));
    if (events.empty()) return;
  }
  NotifyWatchers();
}

void Job::OnExecuteDone(size_t target, const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    auto* t = record_.mutable_targets(static_cast<int>(target));
    if (IsFinal(t->state())) return;
    std::vector<JobEvent> events;
    if (started_[target]) {
      FinishTargetLocked(
          target, varan::v1::TARGET_STATE_LOST, nullptr,
          absl::StrCat("connection to the periphery was lost while the "
                       "command ran: ",
                       status.ToString()),
          &events);
    } else {
      FinishTargetLocked(target, varan::v1::TARGET_STATE_FAILED, nullptr,
                         status.ok() ? "the periphery ended the call without "
                                       "a result"
                                     : std::string(status.message()),
                         &events);
    }
    for (auto& ev : events) AppendLocked(std::move(ev));
  }
  NotifyWatchers();
}

void Job::FailTarget(size_t target, const std::string& error) {
  {
    absl::MutexLock lock(&mu_);
    std::vector<JobEvent> events;
    FinishTargetLocked(target, varan::v1::TARGET_STATE_FAILED, nullptr, error,
                       &events);
    for (auto& ev : events) AppendLocked(std::move(ev));
  }
  NotifyWatchers();
}

Job::Read Job::EventAt(uint64_t seq, JobEvent* out) const {
  absl::MutexLock lock(&mu_);
  if (seq < events_.size()) {
    *out = events_[seq];
    return Read::kEvent;
  }
  if (record_.state() != varan::v1::JOB_STATE_RUNNING) return Read::kEnd;
  return Read::kWait;
}

uint64_t Job::AddWatcher(std::function<void()> callback) {
  absl::MutexLock lock(&watchers_mu_);
  uint64_t handle = next_watcher_++;
  watchers_[handle] = std::move(callback);
  return handle;
}

void Job::RemoveWatcher(uint64_t handle) {
  absl::MutexLock lock(&watchers_mu_);
  watchers_.erase(handle);
}

}  // namespace varan::core
