// BoundedQueue: hands items from one producer thread to a gRPC reactor
// without ever blocking the reactor.
//
// The producer (a plain thread) calls Push, which blocks while more than
// `max_bytes` are queued: that is the back-pressure that keeps memory flat
// when the consumer is slow. The consumer (a reactor) calls TryPop, which
// never blocks; when the queue is empty it leaves a callback that the next
// Push or CloseProducer runs once, on the producer's thread.
//
// Abandon() is the consumer saying it is gone: it waits for a running
// callback to return, guarantees no callback runs afterwards, and makes every
// later Push return false. After Abandon the consumer may be destroyed.
//
// Thread-safe. Callbacks run without the queue's lock held, so they may call
// TryPop.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace varan {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t max_bytes) : max_bytes_(max_bytes) {}

  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Appends `item` (weighing `bytes`), waiting while the queue is over its
  // limit. Returns false, dropping the item, once the consumer abandoned it.
  bool Push(T item, size_t bytes) {
    return PushUntil(&item, bytes, absl::InfiniteFuture()) ==
           PushResult::kPushed;
  }

  enum class PushResult { kPushed, kAbandoned, kTimedOut };

  // Like Push, but waits for room only until `deadline`. On kTimedOut
  // `*item` is left as it was, so the producer can deal with whatever it
  // has to (a timeout, a cancel) and try again.
  PushResult PushUntil(T* item, size_t bytes, absl::Time deadline) {
    std::function<void()> notify;
    {
      absl::MutexLock lock(&mu_);
      if (!mu_.AwaitWithDeadline(
              absl::Condition(this, &BoundedQueue::HasRoomOrAbandoned),
              deadline)) {
        return PushResult::kTimedOut;
      }
      if (abandoned_) return PushResult::kAbandoned;
      items_.emplace_back(std::move(*item), bytes);
      queued_bytes_ += bytes;
      notify = std::exchange(notify_, nullptr);
    }
    RunNotify(std::move(notify));
    return PushResult::kPushed;
  }

  // No more items will come. The consumer drains what is queued.
  void CloseProducer() {
    std::function<void()> notify;
    {
      absl::MutexLock lock(&mu_);
      producer_closed_ = true;
      notify = std::exchange(notify_, nullptr);
    }
    RunNotify(std::move(notify));
  }

  enum class PopResult { kItem, kEmpty, kDrained };

  // kItem: `*out` holds the next item. kDrained: the producer closed and
  // everything was taken. kEmpty: nothing yet; `when_ready` (if set) will be
  // run once when that changes.
  PopResult TryPop(T* out, std::function<void()> when_ready) {
    absl::MutexLock lock(&mu_);
    if (!items_.empty()) {
      *out = std::move(items_.front().first);
      queued_bytes_ -= items_.front().second;
      items_.pop_front();
      return PopResult::kItem;
    }
    if (producer_closed_) return PopResult::kDrained;
    notify_ = std::move(when_ready);
    return PopResult::kEmpty;
  }

  // The consumer is gone (see the class comment).
  void Abandon() {
    absl::MutexLock notify_lock(&notify_mu_);
    absl::MutexLock lock(&mu_);
    abandoned_ = true;
    notify_ = nullptr;
    items_.clear();
    queued_bytes_ = 0;
  }

 private:
  bool HasRoomOrAbandoned() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return abandoned_ || queued_bytes_ < max_bytes_;
  }

  void RunNotify(std::function<void()> notify) {
    if (!notify) return;
    absl::MutexLock notify_lock(&notify_mu_);
    {
      absl::MutexLock lock(&mu_);
      if (abandoned_) return;
    }
    notify();
  }

  const size_t max_bytes_;
  // Held while a callback runs, so Abandon can wait for it.
  absl::Mutex notify_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::deque<std::pair<T, size_t>> items_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool producer_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan
