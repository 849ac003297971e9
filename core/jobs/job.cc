// Job, part 1 of 2: the record and its event log — creating and restoring
// (replaying a stored log), applying events, persistence, snapshots, reads
// and watchers. What turns a target's progress into events is in
// job_execution.cc. The class and its contract are in job.h.
#include "core/jobs/job.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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
    case varan::v1::TARGET_STATE_SKIPPED:
      return true;
    case varan::v1::TARGET_STATE_UNSPECIFIED:
    case varan::v1::TARGET_STATE_QUEUED:
    case varan::v1::TARGET_STATE_DISPATCHED:
    case varan::v1::TARGET_STATE_RUNNING:
    // protoc's sentinels, listed for -Wswitch-enum; never a real value.
    case varan::v1::TargetState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TargetState_INT_MAX_SENTINEL_DO_NOT_USE_:
      return false;
  }
  return false;  // a state this build does not know
}

namespace {

bool Succeeded(TargetState state, const ExitStatus& exit) {
  return state == varan::v1::TARGET_STATE_EXITED &&
         exit.kind() == ExitStatus::KIND_EXITED && exit.code() == 0;
}

// Index of the target named `name`, or -1. Every event is applied by
// target name, so a job of N targets looks names up ~4N times: targets are
// sorted by name (the dispatcher resolves them so), and a binary search keeps
// a fan-out to 10,000 from costing 10^8 string comparisons. A record that is
// not sorted still works, through the scan.
int TargetIndex(const varan::v1::Job& record, const std::string& name) {
  const auto& targets = record.targets();
  auto it = std::lower_bound(targets.begin(), targets.end(), name,
                             [](const varan::v1::JobTarget& t,
                                const std::string& n) { return t.name() < n; });
  if (it != targets.end() && it->name() == name) {
    return static_cast<int>(it - targets.begin());
  }
  for (int i = 0; i < record.targets_size(); ++i) {
    if (record.targets(i).name() == name) return i;
  }
  return -1;
}

}  // namespace

Job::Job(varan::v1::Job record, OutputLimits limits, const Clock* clock,
         Store* store)
    : id_(record.id()),
      target_count_(static_cast<size_t>(record.targets_size())),
      clock_(clock),
      store_(RequireStore(store, "Job")) {
  {
    // Not under mu_: commit callbacks take alive_->mu, then mu_.
    absl::MutexLock alive(&alive_->mu);
    alive_->job = this;
  }
  absl::MutexLock lock(&mu_);
  record_ = std::move(record);
  record_.set_state(varan::v1::JOB_STATE_RUNNING);
  limits_ = limits;
  SetTimestamp(clock_->Now(), record_.mutable_create_time());
  InitLocked();
  JobEvent accepted;
  accepted.mutable_accepted();  // present even with no targets
  for (const auto& t : record_.targets()) {
    accepted.mutable_accepted()->add_targets(t.name());
  }
  EmitLocked(std::move(accepted));
  if (target_count_ == 0) {
    JobEvent done;
    done.mutable_job_finished()->set_state(varan::v1::JOB_STATE_SUCCEEDED);
    EmitLocked(std::move(done));
  }
}

void Job::InitLocked() {
  record_.set_output_head_bytes(limits_.head_bytes);
  record_.set_output_tail_bytes(limits_.tail_bytes);
  record_.set_capture_limit_bytes(limits_.head_bytes + limits_.tail_bytes);
  record_.set_target_count(static_cast<uint32_t>(target_count_));
  streams_.resize(target_count_);
  for (auto& streams : streams_) {
    for (Stream& st : streams) st.tail = TailRing(limits_.tail_bytes);
  }
  started_.assign(target_count_, false);
  next_chunk_.assign(target_count_, {0, 0});
}

void Job::Persist(CommitCallback on_created) {
  const bool changed = Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    created_ = true;
    // The record as dispatched; the events follow it through the same
    // ordered queue.
    store_->CreateJob(SnapshotLocked(), std::move(on_created));
    return false;
  });
  (void)changed;
}

bool Job::Update(absl::FunctionRef<bool()> change) {
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    changed = change();
    PersistLocked();
  }
  if (changed) {
    NotifyWatchers();
    WakeProducers();  // a cancel or the job's end releases them
  }
  return changed;
}

Job::Job(RestoreTag, varan::v1::Job record, const Clock* clock, Store* store,
         uint64_t live_window_bytes)
    : id_(record.id()),
      target_count_(static_cast<size_t>(record.targets_size())),
      clock_(clock),
      store_(RequireStore(store, "Job")) {
  {
    // Not under mu_: commit callbacks take alive_->mu, then mu_.
    absl::MutexLock alive(&alive_->mu);
    alive_->job = this;
  }
  absl::MutexLock lock(&mu_);
  record_ = std::move(record);
  // The stored record may be the final summary: start from the record as
  // dispatched and let the events say what happened.
  record_.set_state(varan::v1::JOB_STATE_RUNNING);
  record_.clear_finish_time();
  record_.clear_canceled_by();
  record_.clear_cancel_time();
  for (auto& t : *record_.mutable_targets()) {
    const std::string name = t.name();
    const std::string periphery_id = t.periphery_id();
    t.Clear();
    t.set_name(name);
    t.set_periphery_id(periphery_id);
    t.set_state(varan::v1::TARGET_STATE_QUEUED);
  }
  limits_.live_window_bytes = live_window_bytes;
  if (record_.output_head_bytes() > 0 || record_.output_tail_bytes() > 0) {
    limits_.head_bytes = record_.output_head_bytes();
    limits_.tail_bytes = record_.output_tail_bytes();
  } else {
    // A job stored before head/tail existed: its capture limit, mapped as
    // DispatchOptions says.
    limits_.head_bytes = record_.capture_limit_bytes() / 4;
    limits_.tail_bytes = record_.capture_limit_bytes() - limits_.head_bytes;
  }
  InitLocked();
}

absl::StatusOr<std::shared_ptr<Job>> Job::Restore(StoredJob stored,
                                                  const Clock* clock,
                                                  Store* store,
                                                  uint64_t live_window_bytes) {
  std::shared_ptr<Job> job(new Job(RestoreTag{}, std::move(stored.record),
                                   clock, store, live_window_bytes));
  absl::MutexLock lock(&job->mu_);
  for (auto& ev : stored.events) {
    if (ev.sequence() < job->next_seq_) {
      return absl::InvalidArgumentError(
          absl::StrCat("job ", job->id_, ": event ", ev.sequence(),
                       " is stored twice or out of order"));
    }
    if (ev.sequence() > job->next_seq_) {
      // Output events are not stored as events: a hole is output.
      job->AppendGapLocked(job->next_seq_, ev.sequence() - 1);
    }
    if (absl::Status s = job->ApplyLocked(ev); !s.ok()) return s;
    const uint64_t seq = ev.sequence();
    job->log_[seq] = std::make_shared<const JobEvent>(std::move(ev));
    job->next_seq_ = seq + 1;
  }
  if (job->log_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("job ", job->id_, " has no events stored"));
  }
  // What each stream's output came to is in the store.
  auto extents = store->OutputExtents(job->id_);
  if (extents.ok()) {
    for (const auto& [key, extent] : *extents) {
      const int i = varan::core::TargetIndex(job->record_, key.target);
      if (i < 0) continue;
      Stream& st = job->streams_[static_cast<size_t>(i)]
                                [key.stream == varan::v1::OUTPUT_STREAM_STDERR];
      st.end = extent.end;
      st.head_off = st.tail_end = extent.end;
    }
  }
  if (job->record_.state() == varan::v1::JOB_STATE_RUNNING) {
    // Output events are not stored, and the last events before a crash may
    // not have been committed: sequences after the last stored one may
    // have reached watchers already. The restored job goes on far beyond
    // them, so that a watcher resuming after what it got misses nothing; an
    // output_gap stands for the sequences skipped.
    job->AppendGapLocked(job->next_seq_,
                         job->next_seq_ + kRestoreSequenceSkip - 1);
    job->next_seq_ += kRestoreSequenceSkip;
  }
  job->created_ = true;
  job->persisted_ = job->next_seq_;
  job->final_persist_started_ =
      job->record_.state() != varan::v1::JOB_STATE_RUNNING;
  return job;
}

absl::Status Job::ApplyLocked(const JobEvent& ev) {
  int index = -1;
  if (!ev.target().empty()) {
    index = varan::core::TargetIndex(record_, ev.target());
    if (index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("job ", id_, ": event ", ev.sequence(),
                       " names unknown target \"", ev.target(), "\""));
    }
  }
  const bool target_event = ev.has_dispatched() || ev.has_started() ||
                            ev.has_output() || ev.has_finished();
  if (target_event && index < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job ", id_, ": target event ", ev.sequence(), " names no target"));
  }
  const size_t i = static_cast<size_t>(index);
  varan::v1::JobTarget* t =
      index >= 0 ? record_.mutable_targets(index) : nullptr;
  switch (ev.event_case()) {
    case JobEvent::kDispatched:
      if (t->state() == varan::v1::TARGET_STATE_QUEUED) {
        t->set_state(varan::v1::TARGET_STATE_DISPATCHED);
      }
      break;
    case JobEvent::kStarted:
      started_[i] = true;
      t->set_state(varan::v1::TARGET_STATE_RUNNING);
      *t->mutable_start_time() =
          ev.started().has_start_time() ? ev.started().start_time() : ev.time();
      break;
    case JobEvent::kOutput: {
      const size_t stream =
          ev.output().stream() == varan::v1::OUTPUT_STREAM_STDERR ? 1 : 0;
      next_chunk_[i][stream] = ev.output().sequence() + 1;
      break;
    }
    case JobEvent::kFinished: {
      const auto& f = ev.finished();
      if (f.late() && t->state() == varan::v1::TARGET_STATE_LOST) {
        // A late outcome replaces LOST (which counted as a failure).
        t->set_state(f.state());
        if (f.has_exit_status()) *t->mutable_exit_status() = f.exit_status();
        t->set_error(f.error());
        if (Succeeded(f.state(), f.exit_status()) && failures_ > 0) {
          --failures_;
        }
        break;
      }
      if (IsFinal(t->state())) break;
      t->set_state(f.state());
      if (f.has_exit_status()) *t->mutable_exit_status() = f.exit_status();
      if (!f.error().empty()) t->set_error(f.error());
      *t->mutable_finish_time() = ev.time();
      ++final_targets_;
      if (f.state() != varan::v1::TARGET_STATE_SKIPPED &&
          !Succeeded(f.state(), f.exit_status())) {
        ++failures_;
      }
      break;
    }
    case JobEvent::kCancelRequested:
      record_.set_canceled_by(ev.cancel_requested().by());
      *record_.mutable_cancel_time() = ev.time();
      break;
    case JobEvent::kJobFinished:
      record_.set_state(ev.job_finished().state());
      *record_.mutable_finish_time() = ev.time();
      break;
    case JobEvent::kAccepted:
    case JobEvent::kOutputGap:
    case JobEvent::EVENT_NOT_SET:
      break;
  }
  return absl::OkStatus();
}

varan::v1::Job Job::SnapshotLocked() const {
  varan::v1::Job out = record_;
  for (size_t i = 0; i < target_count_; ++i) {
    auto* t = out.mutable_targets(static_cast<int>(i));
    FillInfoLocked(i, 0, t->mutable_stdout_info());
    FillInfoLocked(i, 1, t->mutable_stderr_info());
    t->set_stdout_uncaptured_bytes(t->stdout_info().omitted_bytes());
    t->set_stderr_uncaptured_bytes(t->stderr_info().omitted_bytes());
  }
  return out;
}

varan::v1::Job Job::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return SnapshotLocked();
}

bool Job::TargetFinal(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  const int i = varan::core::TargetIndex(record_, name);
  return i >= 0 && FinalLocked(static_cast<size_t>(i));
}

bool Job::finished() const {
  absl::MutexLock lock(&mu_);
  return record_.state() != varan::v1::JOB_STATE_RUNNING;
}

size_t Job::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

void Job::SetOnFinishedPersisted(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  on_finished_persisted_ = std::move(callback);
}

bool Job::FinalLocked(size_t target) const {
  return IsFinal(record_.targets(static_cast<int>(target)).state());
}

void Job::EmitLocked(JobEvent event) {
  const uint64_t seq = next_seq_++;
  event.set_sequence(seq);
  event.set_job_id(id_);
  SetTimestamp(clock_->Now(), event.mutable_time());
  // Events built here always fit the record.
  (void)ApplyLocked(event);
  if (event.has_output()) {
    window_.push_back(seq);
    window_bytes_ += event.output().data().size();
  }
  log_[seq] = std::make_shared<const JobEvent>(std::move(event));
}

void Job::PersistLocked() {
  if (!created_) return;
  if (persisted_ < next_seq_) {
    // Serialized by the store before it returns: no copy of the events.
    // Output events (and gaps) are not stored as events: the log has holes.
    std::vector<const JobEvent*> batch;
    for (auto it = log_.lower_bound(persisted_); it != log_.end(); ++it) {
      const JobEvent& ev = *it->second;
      if (ev.has_output() || ev.has_output_gap()) continue;
      batch.push_back(&ev);
    }
    persisted_ = next_seq_;
    if (!batch.empty()) store_->AppendEvents(id_, batch);
  }
  if (record_.state() != varan::v1::JOB_STATE_RUNNING &&
      !final_persist_started_ && OutputIdleLocked()) {
    final_persist_started_ = true;
    std::function<void()> callback = on_finished_persisted_;
    store_->FinishJob(SnapshotLocked(), [callback](const absl::Status&) {
      if (callback) callback();
    });
  }
}

void Job::FinishTargetLocked(size_t target, TargetState state,
                             const ExitStatus* exit, const std::string& error) {
  if (FinalLocked(target)) return;
  JobEvent ev;
  ev.set_target(record_.targets(static_cast<int>(target)).name());
  auto* f = ev.mutable_finished();
  f->set_state(state);
  if (exit != nullptr) *f->mutable_exit_status() = *exit;
  f->set_error(error);
  // The target's last output goes to the store now.
  FlushLocked(target, 0, /*force=*/true);
  FlushLocked(target, 1, /*force=*/true);
  f->set_stdout_uncaptured_bytes(OmittedLocked(target, 0));
  f->set_stderr_uncaptured_bytes(OmittedLocked(target, 1));
  EmitLocked(std::move(ev));
  if (final_targets_ < target_count_) return;
  EmitJobFinishedLocked();
}

void Job::EmitJobFinishedLocked() {
  uint32_t succeeded = 0, skipped = 0;
  for (const auto& t : record_.targets()) {
    if (Succeeded(t.state(), t.exit_status())) ++succeeded;
    if (t.state() == varan::v1::TARGET_STATE_SKIPPED) ++skipped;
  }
  JobEvent done;
  auto* jf = done.mutable_job_finished();
  if (record_.has_cancel_time()) {
    jf->set_state(varan::v1::JOB_STATE_CANCELED);
  } else {
    jf->set_state(failures_ == 0 ? varan::v1::JOB_STATE_SUCCEEDED
                                 : varan::v1::JOB_STATE_FAILED);
  }
  jf->set_succeeded(succeeded);
  jf->set_failed(static_cast<uint32_t>(failures_));
  jf->set_skipped(skipped);
  EmitLocked(std::move(done));
}

bool Job::Settled(size_t target) const {
  absl::MutexLock lock(&mu_);
  return FinalLocked(target) || record_.has_cancel_time();
}

bool Job::CancelRequested() const {
  absl::MutexLock lock(&mu_);
  return record_.has_cancel_time();
}

bool Job::Started(size_t target) const {
  absl::MutexLock lock(&mu_);
  return started_[target];
}

int Job::TargetIndex(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  return varan::core::TargetIndex(record_, name);
}

Job::Read Job::EventAt(uint64_t seq, JobEvent* out) const {
  EventPtr event;
  Read read = EventAt(seq, &event);
  if (read == Read::kEvent) *out = *event;
  return read;
}

Job::Read Job::EventAt(uint64_t seq, const JobEvent** out) const {
  EventPtr event;
  Read read = EventAt(seq, &event);
  if (read == Read::kEvent) *out = event.get();
  return read;
}

Job::Read Job::EventAt(uint64_t seq, EventPtr* out) const {
  absl::MutexLock lock(&mu_);
  if (seq < next_seq_) {
    // The entry standing for `seq`: the first whose last sequence is at or
    // past it (an event, or the gap covering it).
    auto it = log_.lower_bound(seq);
    if (it != log_.end()) {
      *out = it->second;
      return Read::kEvent;
    }
  }
  if (record_.state() != varan::v1::JOB_STATE_RUNNING) return Read::kEnd;
  return Read::kWait;
}

void Job::NotifyWatchers() {
  absl::MutexLock lock(&watchers_mu_);
  for (auto& [handle, callback] : watchers_) callback();
}

uint64_t Job::AddWatcher(std::function<void()> callback, bool pacing) {
  uint64_t handle;
  {
    absl::MutexLock lock(&watchers_mu_);
    handle = next_watcher_++;
    watchers_[handle] = std::move(callback);
  }
  if (pacing) {
    absl::MutexLock lock(&mu_);
    if (pacer_ == ~uint64_t{0}) pacer_ = handle;
  }
  return handle;
}

void Job::RemoveWatcher(uint64_t handle) {
  {
    absl::MutexLock lock(&watchers_mu_);
    watchers_.erase(handle);
  }
  {
    absl::MutexLock lock(&mu_);
    if (pacer_ != handle) return;
    pacer_ = ~uint64_t{0};
    EvictLocked();
  }
  WakeProducers();
}

}  // namespace varan::core
