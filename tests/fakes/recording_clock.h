// RecordingClock: a fake Clock for tests of code that waits (backoff,
// intervals). Time moves only through waits: each WaitForNotification that
// is not cut short by its notification is recorded and advances the clock by
// its timeout at once, so a test asserts the waits without sleeping.
//
// ParkAfter(n) makes every wait after the first n block (for real) until its
// notification is notified: code that would otherwise loop through fake
// time without end rests there until the test stops it (only for waits on a
// stop notification the test will notify).
//
// Thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace varan::testing {

class RecordingClock final : public Clock {
 public:
  explicit RecordingClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }

  bool WaitForNotification(const absl::Notification& stop,
                           absl::Duration timeout) const override {
    {
      absl::MutexLock lock(&mu_);
      if (stop.HasBeenNotified()) return true;
      if (waits_.size() < park_after_) {
        waits_.push_back(timeout);
        now_ += std::max(timeout, absl::ZeroDuration());
        return false;
      }
    }
    stop.WaitForNotification();
    return true;
  }

  void ParkAfter(size_t n) {
    absl::MutexLock lock(&mu_);
    park_after_ = n;
  }

  // The waits so far, in order.
  std::vector<absl::Duration> waits() const {
    absl::MutexLock lock(&mu_);
    return waits_;
  }

  // Blocks (up to 10 s of real time, a guard against a hung test) until at
  // least `n` waits were recorded; returns them.
  std::vector<absl::Duration> WaitForWaits(size_t n) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return waits_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    return waits_;
  }

 private:
  mutable absl::Mutex mu_;
  mutable absl::Time now_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<absl::Duration> waits_ ABSL_GUARDED_BY(mu_);
  size_t park_after_ ABSL_GUARDED_BY(mu_) = std::numeric_limits<size_t>::max();
};

}  // namespace varan::testing
