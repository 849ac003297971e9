// Job, part 2 of 2: what happens to a target turned into events — the
// dispatcher sending it, its Execute call's events and end, a periphery's
// heartbeat report, a cancel. Each appends events through Update/EmitLocked
// (job.cc), which apply them to the record. The class and its contract are
// in job.h.
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/jobs/job.h"

namespace varan::core {

using varan::v1::ExitStatus;
using varan::v1::JobEvent;
using varan::v1::TargetState;

void Job::MarkDispatched(size_t target) {
  Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (record_.targets(static_cast<int>(target)).state() !=
        varan::v1::TARGET_STATE_QUEUED) {
      return false;
    }
    JobEvent ev;
    ev.set_target(record_.targets(static_cast<int>(target)).name());
    ev.mutable_dispatched();
    EmitLocked(std::move(ev));
    return true;
  });
}

void Job::TakeExecuteEvent(size_t target, varan::v1::ExecuteEvent& event) {
  Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (FinalLocked(target)) return false;
    const uint64_t before = next_seq_;
    ExecuteEventLocked(target, event);
    return next_seq_ != before;
  });
}

void Job::OnExecuteEvent(size_t target, varan::v1::ExecuteEvent& event) {
  TakeExecuteEvent(target, event);
  // Watchers were told (the pacer can write): wait for room without
  // holding anything but mu_, which Await releases.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &Job::RoomLocked));
}

bool Job::OfferExecuteEvent(size_t target, varan::v1::ExecuteEvent& event,
                            std::function<void()> on_room) {
  TakeExecuteEvent(target, event);
  absl::MutexLock lock(&mu_);
  if (RoomLocked()) return true;
  on_room_.push_back(std::move(on_room));
  return false;
}

void Job::ExecuteEventLocked(size_t target, varan::v1::ExecuteEvent& event) {
  const std::string& name = record_.targets(static_cast<int>(target)).name();
  if (event.has_started()) {
    JobEvent ev;
    ev.set_target(name);
    ev.mutable_started()->set_pid(event.started().pid());
    *ev.mutable_started()->mutable_start_time() = event.started().start_time();
    EmitLocked(std::move(ev));
  } else if (event.has_output()) {
    OutputLocked(target, *event.mutable_output());
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
      case ExitStatus::KIND_UNSPECIFIED:
      case ExitStatus::KIND_EXITED:
      case ExitStatus::KIND_SIGNALED:
      // protoc's sentinels, listed for -Wswitch-enum; never a real value.
      case varan::v1::
          ExitStatus_Kind_ExitStatus_Kind_INT_MIN_SENTINEL_DO_NOT_USE_:
      case varan::v1::
          ExitStatus_Kind_ExitStatus_Kind_INT_MAX_SENTINEL_DO_NOT_USE_:
        break;  // EXITED, as set above
    }
    FinishTargetLocked(target, state, &exit, exit.error());
  }
}

void Job::TailLocked(size_t target, varan::v1::OutputStream stream,
                     const varan::v1::OutputTail& tail) {
  const size_t s = stream == varan::v1::OUTPUT_STREAM_STDERR ? 1 : 0;
  // The tail is a chunk at its offset: OutputLocked drops what core has
  // and counts a jump before it as missed.
  if (tail.data().empty()) return;
  varan::v1::OutputChunk chunk;
  chunk.set_stream(stream);
  chunk.set_sequence(next_chunk_[target][s]);
  chunk.set_offset(tail.offset());
  chunk.set_data(tail.data());
  OutputLocked(target, chunk, /*exact_offset=*/true);
}

void Job::ApplyReport(size_t target, const varan::v1::ExecutionReport& report) {
  Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (FinalLocked(target)) return false;
    const uint64_t before = next_seq_;
    if (report.has_started() && !started_[target]) {
      varan::v1::ExecuteEvent ev;
      *ev.mutable_started() = report.started();
      ExecuteEventLocked(target, ev);
    }
    if (report.has_exited()) {
      TailLocked(target, varan::v1::OUTPUT_STREAM_STDOUT, report.stdout_tail());
      TailLocked(target, varan::v1::OUTPUT_STREAM_STDERR, report.stderr_tail());
      varan::v1::ExecuteEvent ev;
      *ev.mutable_exited() = report.exited();
      ExecuteEventLocked(target, ev);
    }
    return next_seq_ != before;
  });
}

bool Job::AmendLost(size_t target, const varan::v1::ExecutionReport& report) {
  return Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const varan::v1::JobTarget& t = record_.targets(static_cast<int>(target));
    if (t.state() != varan::v1::TARGET_STATE_LOST || !report.has_exited()) {
      return false;
    }
    TailLocked(target, varan::v1::OUTPUT_STREAM_STDOUT, report.stdout_tail());
    TailLocked(target, varan::v1::OUTPUT_STREAM_STDERR, report.stderr_tail());
    const ExitStatus& exit = report.exited();
    TargetState state = varan::v1::TARGET_STATE_EXITED;
    if (exit.kind() == ExitStatus::KIND_TIMED_OUT) {
      state = varan::v1::TARGET_STATE_TIMED_OUT;
    } else if (exit.kind() == ExitStatus::KIND_CANCELED) {
      state = varan::v1::TARGET_STATE_CANCELED;
    } else if (exit.kind() == ExitStatus::KIND_START_FAILED ||
               exit.kind() == ExitStatus::KIND_OUTPUT_LIMIT) {
      state = varan::v1::TARGET_STATE_FAILED;
    }
    JobEvent ev;
    ev.set_target(t.name());
    auto* f = ev.mutable_finished();
    f->set_state(state);
    *f->mutable_exit_status() = exit;
    f->set_error(exit.error().empty()
                     ? "reported by the periphery after it had been lost"
                     : exit.error());
    f->set_late(true);
    FlushLocked(target, 0, /*force=*/true);
    FlushLocked(target, 1, /*force=*/true);
    f->set_stdout_uncaptured_bytes(OmittedLocked(target, 0));
    f->set_stderr_uncaptured_bytes(OmittedLocked(target, 1));
    EmitLocked(std::move(ev));
    if (final_targets_ >= target_count_) {
      EmitJobFinishedLocked();
      // The stored summary is written again.
      final_persist_started_ = false;
    }
    return true;
  });
}

void Job::OnExecuteDone(size_t target, const absl::Status& status) {
  Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (FinalLocked(target)) return false;
    if (record_.has_cancel_time()) {
      FinishTargetLocked(
          target, varan::v1::TARGET_STATE_CANCELED, nullptr,
          absl::StrCat("canceled by ", record_.canceled_by(),
                       "; the call to the periphery ended before it "
                       "confirmed the process stopped: ",
                       status.ToString()));
    } else if (absl::IsDeadlineExceeded(status) &&
               record_.spec().has_timeout()) {
      FinishTargetLocked(
          target, varan::v1::TARGET_STATE_TIMED_OUT, nullptr,
          absl::StrCat("the periphery did not report the end of the command "
                       "within a minute after its timeout: ",
                       status.message()));
    } else if (started_[target]) {
      FinishTargetLocked(
          target, varan::v1::TARGET_STATE_LOST, nullptr,
          absl::StrCat("connection to the periphery was lost while the "
                       "command ran: ",
                       status.ToString()));
    } else {
      FinishTargetLocked(target, varan::v1::TARGET_STATE_FAILED, nullptr,
                         status.ok() ? "the periphery ended the call without "
                                       "a result"
                                     : std::string(status.message()));
    }
    return true;
  });
}

void Job::FinishTarget(size_t target, TargetState state,
                       const std::string& error) {
  Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (FinalLocked(target)) return false;
    FinishTargetLocked(target, state, nullptr, error);
    return true;
  });
}

bool Job::RequestCancel(const std::string& by) {
  return Update([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (record_.state() != varan::v1::JOB_STATE_RUNNING ||
        record_.has_cancel_time()) {
      return false;
    }
    JobEvent ev;
    ev.mutable_cancel_requested()->set_by(by);
    EmitLocked(std::move(ev));
    return true;
  });
}

}  // namespace varan::core
