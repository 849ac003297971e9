#include "core/link/tunnel_call.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace varan::core {

namespace {

// How long an idle delivery thread waits for more events before it ends.
constexpr absl::Duration kDeliveryLinger = absl::Milliseconds(100);

}  // namespace

void DeliveryThreads::Started() {
  absl::MutexLock lock(&mu_);
  ++running_;
}

void DeliveryThreads::Ended() {
  absl::MutexLock lock(&mu_);
  --running_;
}

void DeliveryThreads::WaitIdle() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  mu_.Await(absl::Condition(&idle));
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
  threads_->Started();
  std::thread([self = shared_from_this()] {
    DeliveryThreads* threads = self->threads_;
    self->Drain();
    threads->Ended();
  }).detach();
}

void TunnelCall::Drain() {
  while (true) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), kDeliveryLinger);
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
    if (size > 0 && window_ > 0) {
      {
        absl::MutexLock lock(&mu_);
        outstanding_ -= std::min(outstanding_, size);
      }
      if (auto host = host_.lock()) host->SendCredit(id_, size);
    }
  }
}

}  // namespace varan::core
