// PeerGuard: the first check of every authenticated call on both daemons —
// is the caller's address allowed (--allow), and has it failed
// authentication too often lately (--auth-failure-limit)?
//
// Failed authentications are counted per client: per IPv4 address, and per
// /64 network for IPv6 (one host usually holds a whole /64, so counting
// single IPv6 addresses would not slow anyone down). Each client has a
// budget of `failures_per_minute` failures that refills continuously at that
// rate; while it is used up, every call from that client that needs
// authentication is refused before its token is even looked at, so guessing
// gets no answers. Successful calls cost nothing.
//
// Thread-safe. Never blocks beyond a short mutex.
#pragma once

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/allowlist.h"
#include "common/clock.h"

namespace varan {

struct PeerGuardOptions {
  Allowlist allow;
  // Failed authentications a client may have per minute (and at once);
  // 0 turns the limit off.
  uint32_t failures_per_minute = 10;
  // Clients tracked at most; beyond it, those whose budget is full are
  // forgotten first.
  size_t max_tracked = 100000;
};

class PeerGuard {
 public:
  // `clock` must outlive the guard.
  PeerGuard(const Clock* clock, PeerGuardOptions options);

  // OK when a call from `peer` (a bare address as NormalizePeerAddress gives
  // it) may go on to authentication. PERMISSION_DENIED when the allowlist
  // refuses it; RESOURCE_EXHAUSTED (saying when to retry) while it is over
  // its failure budget. Refusals are logged, at most once per client per
  // minute.
  absl::Status Admit(const std::string& peer);

  // Counts one failed authentication from `peer`.
  void RecordFailure(const std::string& peer);

  const Allowlist& allowlist() const { return options_.allow; }

 private:
  struct Budget {
    double left = 0;
    absl::Time updated;
    absl::Time last_logged = absl::InfinitePast();
  };
  // IPv4 address, or the /64 of an IPv6 one.
  static std::string ClientKey(const std::string& peer);
  void Refill(Budget& b, absl::Time now) const;
  void EvictLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const PeerGuardOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Budget> budgets_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Time> denied_logged_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace varan
