#include "core/link/tunnel_call.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace varan::core {

void DeliveryThreads::Run(absl::AnyInvocable<void() &&> drain) {
  {
    absl::MutexLock lock(&mu_);
    if (static_cast<size_t>(idle_) > ready_.size()) {
      ready_.push_back(std::move(drain));
      return;
    }
    ++threads_;
  }
  std::thread([this, first = std::move(drain)]() mutable {
    Work(std::move(first));
  }).detach();
}

void DeliveryThreads::Work(absl::AnyInvocable<void() &&> first) {
  std::move(first)();
  first = nullptr;  // its call may end here, not after threads_ says so
  absl::MutexLock lock(&mu_);
  while (true) {
    ++idle_;
    auto handed = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !ready_.empty() || closing_ > 0;
    };
    mu_.AwaitWithTimeout(absl::Condition(&handed), kIdleFor);
    --idle_;
    if (ready_.empty()) break;  // idle for kIdleFor, or WaitIdle
    {
      absl::AnyInvocable<void()&&> drain = std::move(ready_.front());
      ready_.pop_front();
      mu_.Unlock();
      std::move(drain)();
    }
    mu_.Lock();
  }
  --threads_;
}

void DeliveryThreads::WaitIdle() {
  absl::MutexLock lock(&mu_);
  ++closing_;
  auto ended = [this]()
                   ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return threads_ == 0; };
  mu_.Await(absl::Condition(&ended));
  --closing_;
}

int DeliveryThreads::threads() const {
  absl::MutexLock lock(&mu_);
  return threads_;
}

TunnelCall::TunnelCall(std::weak_ptr<TunnelCallHost> host,
                       DeliveryThreads* threads, std::string id,
                       uint64_t window, ExecuteObserver* observer)
    : host_(std::move(host)),
      threads_(threads),
      id_(std::move(id)),
      window_(window),
      observer_(observer) {}

void TunnelCall::Cancel() {
  // A closed tunnel ends the call by itself.
  if (auto host = host_.lock()) host->SendCancel(id_);
}

void TunnelCall::Abort() {
  // Forget drops the routing table's reference, often the last one.
  const std::shared_ptr<TunnelCall> self = shared_from_this();
  if (auto host = host_.lock()) {
    host->SendDetach(id_);
    host->Forget(id_);
  }
  Complete(absl::CancelledError("the call was dropped by core"),
           /*drop=*/true);
}

absl::Status TunnelCall::Accept(varan::v1::ExecuteEvent event) {
  absl::MutexLock lock(&mu_);
  if (completing_) return absl::OkStatus();
  if (event.has_output() && window_ > 0) {
    const uint64_t size = event.output().data().size();
    if (outstanding_ + size > window_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "execution ", id_, ": the periphery sent ", outstanding_ + size,
          " bytes of output beyond what core granted (window ", window_,
          " bytes)"));
    }
    outstanding_ += size;
  }
  const bool exited = event.has_exited();
  EnqueueLocked(Item{std::move(event), absl::OkStatus()});
  if (exited) {
    completing_ = true;
    EnqueueLocked(Item{std::nullopt, absl::OkStatus()});
  }
  return absl::OkStatus();
}

void TunnelCall::Complete(const absl::Status& status, bool drop) {
  absl::MutexLock lock(&mu_);
  if (completing_) return;
  completing_ = true;
  if (drop) queue_.clear();
  EnqueueLocked(Item{std::nullopt, status});
}

void TunnelCall::EnqueueLocked(Item item) {
  queue_.push_back(std::move(item));
  if (draining_) return;
  draining_ = true;
  threads_->Run([self = shared_from_this()] { self->Drain(); });
}

void TunnelCall::Drain() {
  while (true) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) {
        draining_ = false;
        return;
      }
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    if (!item.event.has_value()) {
      if (!done_) {
        done_ = true;
        observer_->OnDone(item.done);
      }
      continue;
    }
    if (done_) continue;
    const uint64_t size =
        item.event->has_output() ? item.event->output().data().size() : 0;
    observer_->OnEvent(*item.event);
    // The listener took the bytes: the periphery may send as many more.
    // Granted a quarter window at a time, not per chunk (a message per
    // chunk costs core as much as the chunk; with small outputs, one more
    // message per target), and not once the command has ended. The
    // periphery never waits on it: what it has in flight beyond what core
    // holds undelivered is less than a quarter window.
    if (size > 0 && window_ > 0) {
      uint64_t grant = 0;
      {
        absl::MutexLock lock(&mu_);
        outstanding_ -= std::min(outstanding_, size);
        ungranted_ += size;
        if (!completing_ && ungranted_ >= CreditBatch(window_)) {
          grant = ungranted_;
          ungranted_ = 0;
        }
      }
      if (grant > 0) {
        if (auto host = host_.lock()) host->SendCredit(id_, grant);
      }
    }
  }
}

}  // namespace varan::core
