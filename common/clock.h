// Time source, injected so tests control time instead of sleeping: what
// time it is (Now) and waiting for some of it to pass (WaitForNotification).
//
// Clock implementations are thread-safe.
#pragma once

#include <algorithm>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace varan {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // Blocks until `stop` is notified or `timeout` has passed on this clock,
  // whichever comes first; true when `stop` was notified. A daemon's waits
  // (backoff, heartbeat intervals) go through here so that a fake clock can
  // let the time pass at once. The default waits in real time: a clock whose
  // Now() is not the system's overrides it.
  virtual bool WaitForNotification(const absl::Notification& stop,
                                   absl::Duration timeout) const {
    return stop.WaitForNotificationWithTimeout(timeout);
  }
};

// The system's wall clock.
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance (stateless, never destroyed).
  static Clock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

// A clock that moves only when told to.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  // Never blocks: unless `stop` was notified already, the clock advances by
  // `timeout` (the whole wait passes at once).
  bool WaitForNotification(const absl::Notification& stop,
                           absl::Duration timeout) const override {
    if (stop.HasBeenNotified()) return true;
    absl::MutexLock lock(&mu_);
    now_ += std::max(timeout, absl::ZeroDuration());
    return false;
  }

 private:
  mutable absl::Mutex mu_;
  // Mutable: a wait (const, as Clock's readers hold it) moves it too.
  mutable absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan
