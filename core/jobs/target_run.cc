#include "core/jobs/target_run.h"

#include <utility>

#include "common/log.h"

namespace varan::core {
namespace {

// Between two tries of a misrouted call: the other replicas refresh their
// view of who holds which periphery once a second.
constexpr absl::Duration kRedeliveryPause = absl::Milliseconds(500);

}  // namespace

TargetRun::TargetRun(Owner* owner, std::shared_ptr<Job> job, size_t index,
                     std::string periphery_id, ExecutionId execution_id)
    : owner_(owner),
      job_(std::move(job)),
      index_(index),
      periphery_id_(std::move(periphery_id)),
      execution_id_(std::move(execution_id)),
      wire_id_(execution_id_.ToString()) {}

void TargetRun::SetCall(ExecuteCall* call) {
  absl::MutexLock lock(&mu_);
  if (done_) return;
  call_ = call;
  if (abort_requested_) {
    call_->Abort();
  } else if (cancel_requested_) {
    call_->Cancel();
  }
}

void TargetRun::Cancel() {
  absl::MutexLock lock(&mu_);
  cancel_requested_ = true;
  if (call_ != nullptr) call_->Cancel();
}

void TargetRun::Abort() {
  absl::MutexLock lock(&mu_);
  abort_requested_ = true;
  if (call_ != nullptr) call_->Abort();
}

void TargetRun::Await(absl::Status why) {
  absl::MutexLock lock(&mu_);
  done_ = true;
  awaiting_ = true;
  broke_ = std::move(why);
}

bool TargetRun::awaiting() {
  absl::MutexLock lock(&mu_);
  return awaiting_;
}

bool TargetRun::TakeAwaiting() {
  absl::MutexLock lock(&mu_);
  redelivering_ = false;
  return std::exchange(awaiting_, false);
}

bool TargetRun::Gone() {
  absl::MutexLock lock(&mu_);
  gone_ = true;
  redelivering_ = false;
  return std::exchange(awaiting_, false);
}

bool TargetRun::redelivering() {
  absl::MutexLock lock(&mu_);
  return redelivering_;
}

absl::Time TargetRun::next_redelivery() {
  absl::MutexLock lock(&mu_);
  return next_redelivery_;
}

absl::Time TargetRun::redeliver_until() {
  absl::MutexLock lock(&mu_);
  return redeliver_until_;
}

bool TargetRun::TakeRedelivery() {
  absl::MutexLock lock(&mu_);
  if (!redelivering_ || !awaiting_) return false;
  redelivering_ = false;
  awaiting_ = false;
  done_ = false;
  return true;
}

TargetRun::EndClaim TargetRun::ClaimEnd(bool has_tails, bool can_ask,
                                        absl::Time now,
                                        absl::Duration ask_for) {
  absl::MutexLock lock(&mu_);
  if (!awaiting_) return EndClaim::kNotAwaiting;
  if (!has_tails && can_ask) {
    if (tails_asked_ == absl::InfinitePast()) tails_asked_ = now;
    if (now - tails_asked_ < ask_for) return EndClaim::kAskTails;
  }
  redelivering_ = false;
  awaiting_ = false;
  return EndClaim::kApply;
}

int TargetRun::Missed() {
  absl::MutexLock lock(&mu_);
  return ++misses_;
}

void TargetRun::Seen() {
  absl::MutexLock lock(&mu_);
  misses_ = 0;
}

absl::Status TargetRun::broke() {
  absl::MutexLock lock(&mu_);
  return broke_;
}

void TargetRun::OnEvent(const varan::v1::ExecuteEvent& event) {
  // The link hands a const event: one copy here, outside any lock; the job
  // takes this copy's data without another.
  varan::v1::ExecuteEvent mine = event;
  job_->OnExecuteEvent(index_, mine);
}

void TargetRun::OnDone(const absl::Status& status) {
  if (owner_->Stopping()) {
    // Core is stopping: the target stays as it is in the store and the
    // next core collects the periphery's report.
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      call_ = nullptr;
    }
    owner_->RunDone(this);  // may destroy this
    return;
  }
  const absl::Time now = owner_->Now();
  const absl::Duration window = owner_->RedeliveryWindow();
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    call_ = nullptr;
    // Sent by a stale route, so not delivered: send it again a little
    // later, within the window.
    if (IsMisrouted(status) && !gone_ && !cancel_requested_ &&
        !abort_requested_ && !job_->Settled(index_)) {
      if (redeliver_until_ == absl::InfinitePast()) {
        redeliver_until_ = now + window;
      }
      if (now < redeliver_until_) {
        awaiting_ = true;
        redelivering_ = true;
        broke_ = status;
        next_redelivery_ = now + kRedeliveryPause;
        spdlog::info(
            "execution {}: {}; sending it again once the periphery is held "
            "by a live replica (for up to {} more)",
            wire_id_, status.message(),
            absl::FormatDuration(redeliver_until_ - now));
        return;
      }
    }
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
          wire_id_,
          job_->Started(index_) ? ""
                                : " before the command was reported started",
          status.ToString());
      return;
    }
  }
  job_->OnExecuteDone(index_, status);
  owner_->RunDone(this);  // may destroy this
}

bool TargetRun::Recoverable(const absl::Status& status) const {
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
      return !job_->Snapshot().spec().has_timeout();
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnauthenticated:
    // Listed so that -Wswitch-enum holds: Abseil reserves it and never
    // returns it.
    case absl::StatusCode::
        kDoNotUseReservedForFutureExpansionUseDefaultInSwitchInstead_:
      return false;
  }
  return false;  // a code Abseil does not define: not a broken call
}

}  // namespace varan::core
