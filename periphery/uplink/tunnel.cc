#include "periphery/uplink/tunnel.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/time_util.h"

namespace varan::periphery {

using varan::v1::TunnelDown;
using varan::v1::TunnelUp;

TunnelSession::TunnelSession(varan::v1::Registry::Stub* stub,
                             Executor* executor, const Clock* clock,
                             const std::string& bearer,
                             varan::v1::TunnelHello hello)
    : executor_(executor), clock_(clock) {
  context_.AddMetadata("authorization", BearerHeader(bearer));
  TunnelUp first;
  *first.mutable_hello() = std::move(hello);
  absl::MutexLock lock(&mu_);
  control_.push_back(std::move(first));
  stub->async()->Connect(&context_, this);
}

void TunnelSession::Begin() {
  // Writes start from other threads too (heartbeats, executions' output):
  // the hold keeps the call, and gRPC's stream object StartWrite uses, alive
  // until no write can start any more (ReleaseHoldIfIdle).
  AddHold();
  StartRead(&incoming_);
  StartCall();
  TryWrite();
}

void TunnelSession::ReleaseHoldIfIdle() {
  {
    absl::MutexLock lock(&mu_);
    if (!read_closed_ || writing_ || hold_released_) return;
    hold_released_ = true;
  }
  RemoveHold();
}

absl::StatusOr<varan::v1::TunnelOpened> TunnelSession::WaitOpened(
    absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto answered = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return opened_ || ended_;
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&answered), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("core did not answer the tunnel's hello within ",
                     absl::FormatDuration(timeout)));
  }
  if (opened_) return opened_message_;
  return status_;
}

void TunnelSession::SendHeartbeat(varan::v1::HeartbeatRequest heartbeat) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    TunnelUp msg;
    *msg.mutable_heartbeat() = std::move(heartbeat);
    control_.push_back(std::move(msg));
  }
  TryWrite();
}

absl::Time TunnelSession::last_answer() {
  absl::MutexLock lock(&mu_);
  return last_answer_;
}

absl::Duration TunnelSession::interval() {
  absl::MutexLock lock(&mu_);
  return interval_;
}

std::optional<varan::v1::HeartbeatResponse> TunnelSession::TakeTrustAnswer() {
  absl::MutexLock lock(&mu_);
  return std::exchange(trust_answer_, std::nullopt);
}

absl::Status TunnelSession::status() {
  absl::MutexLock lock(&mu_);
  return status_;
}

void TunnelSession::TryWrite() {
  std::vector<std::pair<std::string, bool>> drained;
  bool write = false;
  {
    absl::MutexLock lock(&mu_);
    // Once the stream's read side closed the call is ending: no new write
    // (the hold is released once the last one is done).
    if (writing_ || ended_ || read_closed_) return;
    if (!control_.empty()) {
      current_ = std::move(control_.front());
      control_.pop_front();
      write = true;
    }
    // Round robin: one event from the next execution that has one, which
    // then goes to the back of the line.
    while (!write && !ready_.empty()) {
      std::string id = std::move(ready_.front());
      ready_.pop_front();
      auto it = attached_.find(id);
      if (it == attached_.end()) continue;
      Attached& a = it->second;
      a.queued = false;
      varan::v1::ExecuteEvent event;
      const auto result =
          a.execution->events().TryPop(&event, [this, id] { OnReady(id); });
      if (result == EventQueue::PopResult::kDrained) {
        drained.emplace_back(id, a.exited_written);
        attached_.erase(it);
        continue;
      }
      if (result == EventQueue::PopResult::kEmpty) continue;
      writing_exited_ = event.has_exited() ? id : std::string();
      current_.Clear();
      auto* ev = current_.mutable_event();
      ev->set_execution_id(id);
      *ev->mutable_event() = std::move(event);
      a.queued = true;
      ready_.push_back(std::move(id));
      write = true;
    }
    if (write) writing_ = true;
  }
  for (const auto& [id, delivered] : drained) {
    executor_->Detached(id, delivered);
  }
  if (write) StartWrite(&current_);
}

void TunnelSession::OnReady(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = attached_.find(id);
    if (it == attached_.end() || it->second.queued) return;
    it->second.queued = true;
    ready_.push_back(id);
  }
  TryWrite();
}

void TunnelSession::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok && !writing_exited_.empty()) {
      auto it = attached_.find(writing_exited_);
      if (it != attached_.end()) it->second.exited_written = true;
    }
    writing_exited_.clear();
  }
  // A failed write means the stream is over; the failed read that comes
  // with it releases the hold (here, if that read came first).
  if (ok) TryWrite();
  ReleaseHoldIfIdle();
}

void TunnelSession::HandleExecute(const varan::v1::ExecuteRequest& request) {
  const std::string& id = request.execution_id();
  if (id.empty()) {
    TunnelUp msg;
    msg.mutable_rejected()->set_code(grpc::StatusCode::INVALID_ARGUMENT);
    msg.mutable_rejected()->set_message(
        "an execute request on the tunnel needs an execution id");
    absl::MutexLock lock(&mu_);
    control_.push_back(std::move(msg));
    return;
  }
  auto execution = executor_->Start(request);
  absl::MutexLock lock(&mu_);
  if (!execution.ok()) {
    spdlog::warn("execution {}: refused: {}", id, execution.status().message());
    TunnelUp msg;
    msg.mutable_rejected()->set_execution_id(id);
    msg.mutable_rejected()->set_code(
        static_cast<int32_t>(execution.status().code()));
    msg.mutable_rejected()->set_message(
        std::string(execution.status().message()));
    control_.push_back(std::move(msg));
    return;
  }
  spdlog::info("execution {}: started (tunnel)", id);
  Attached& a = attached_[id];
  a.execution = *std::move(execution);
  a.queued = true;
  ready_.push_back(id);
}

void TunnelSession::OnReadDone(bool ok) {
  if (!ok) {
    // The stream is over (core ended it, it broke, or Cancel): no more
    // writes; OnDone follows once the write in flight, if any, is done.
    {
      absl::MutexLock lock(&mu_);
      read_closed_ = true;
    }
    ReleaseHoldIfIdle();
    return;
  }
  switch (incoming_.message_case()) {
    case TunnelDown::kOpened: {
      absl::MutexLock lock(&mu_);
      opened_ = true;
      opened_message_ = incoming_.opened();
      last_answer_ = clock_->Now();
      if (incoming_.opened().has_heartbeat_interval()) {
        interval_ = FromDuration(incoming_.opened().heartbeat_interval());
      }
      break;
    }
    case TunnelDown::kHeartbeat: {
      const auto& hb = incoming_.heartbeat();
      executor_->Acknowledge(std::vector<std::string>(hb.acknowledged().begin(),
                                                      hb.acknowledged().end()));
      CancelForCore(executor_, hb.cancel());
      executor_->ResendTails(std::vector<std::string>(
          hb.resend_with_tails().begin(), hb.resend_with_tails().end()));
      absl::MutexLock lock(&mu_);
      last_answer_ = clock_->Now();
      if (hb.has_heartbeat_interval()) {
        interval_ = FromDuration(hb.heartbeat_interval());
      }
      if (hb.ca_pins_size() > 0 || hb.renew_certificate()) trust_answer_ = hb;
      break;
    }
    case TunnelDown::kExecute:
      HandleExecute(incoming_.execute());
      break;
    case TunnelDown::kCancel: {
      const std::string& id = incoming_.cancel().execution_id();
      if (executor_->Cancel(id).ok()) {
        spdlog::info("execution {}: cancel requested", id);
      }
      break;
    }
    case TunnelDown::kCredit: {
      std::shared_ptr<Execution> execution;
      {
        absl::MutexLock lock(&mu_);
        auto it = attached_.find(incoming_.credit().execution_id());
        if (it != attached_.end()) execution = it->second.execution;
      }
      if (execution != nullptr)
        execution->AddCredit(incoming_.credit().bytes());
      break;
    }
    case TunnelDown::kDetach:
      Detach(incoming_.detach().execution_id());
      break;
    case TunnelDown::MESSAGE_NOT_SET:
      break;
  }
  StartRead(&incoming_);
  TryWrite();
}

void TunnelSession::Detach(const std::string& id) {
  std::shared_ptr<Execution> execution;
  {
    absl::MutexLock lock(&mu_);
    auto it = attached_.find(id);
    if (it != attached_.end()) {
      execution = it->second.execution;
      attached_.erase(it);  // its events go no further
    }
  }
  if (execution != nullptr) {
    execution->CallerGone();
    execution->events().Abandon();
  }
  // Whatever went up of it, core dropped: the report carries the tails.
  executor_->Dropped(id);
  spdlog::info(
      "execution {}: core stopped following it; its result goes "
      "with the heartbeats",
      id);
}

void TunnelSession::OnDone(const grpc::Status& status) {
  absl::flat_hash_map<std::string, Attached> attached;
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    status_ = WithRetryAfter(FromGrpcStatus(status), context_);
    if (status_.ok()) {
      status_ = absl::UnavailableError("core closed the tunnel");
    }
    attached.swap(attached_);
    ready_.clear();
    control_.clear();
  }
  // Commands keep running (they are held): their results go up in the
  // heartbeats of the next tunnel.
  for (auto& [id, a] : attached) {
    a.execution->CallerGone();
    a.execution->events().Abandon();
    executor_->Detached(id, a.exited_written);
  }
  done_.Notify();
}

}  // namespace varan::periphery
