#include "common/peer_guard.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace varan {

PeerGuard::PeerGuard(const Clock* clock, PeerGuardOptions options)
    : clock_(clock), options_(std::move(options)) {}

std::string PeerGuard::ClientKey(const std::string& peer) {
  unsigned char a[16];
  if (peer.find(':') == std::string::npos ||
      inet_pton(AF_INET6, peer.c_str(), a) != 1) {
    return peer;
  }
  // IPv4-mapped: the IPv4 address itself.
  static const unsigned char kMapped[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(a, a + 12, kMapped)) {
    char buf[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, a + 12, buf, sizeof(buf));
    return buf;
  }
  std::fill(a + 8, a + 16, 0);
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, a, buf, sizeof(buf));
  return absl::StrCat(buf, "/64");
}

void PeerGuard::Refill(Budget& b, absl::Time now) const {
  const double rate = options_.failures_per_minute / 60.0;  // per second
  const double elapsed = absl::ToDoubleSeconds(now - b.updated);
  if (elapsed > 0) {
    b.left =
        std::min<double>(options_.failures_per_minute, b.left + elapsed * rate);
    b.updated = now;
  }
}

absl::Status PeerGuard::Admit(const std::string& peer) {
  const absl::Time now = clock_->Now();
  if (!options_.allow.Allows(peer)) {
    bool log = false;
    {
      absl::MutexLock lock(&mu_);
      auto [it, inserted] = denied_logged_.try_emplace(peer, now);
      if (inserted || now - it->second >= absl::Minutes(1)) {
        it->second = now;
        log = true;
      }
      if (denied_logged_.size() > options_.max_tracked) denied_logged_.clear();
    }
    if (log) {
      spdlog::warn("refused a call from {}: not in the --allow list", peer);
    }
    return absl::PermissionDeniedError(
        absl::StrCat("calls from ", peer, " are not allowed (--allow)"));
  }
  if (options_.failures_per_minute == 0) return absl::OkStatus();
  const std::string key = ClientKey(peer);
  absl::MutexLock lock(&mu_);
  auto it = budgets_.find(key);
  if (it == budgets_.end()) return absl::OkStatus();
  Budget& b = it->second;
  Refill(b, now);
  if (b.left >= 1) return absl::OkStatus();
  const double rate = options_.failures_per_minute / 60.0;
  const auto wait = static_cast<int64_t>(std::ceil((1 - b.left) / rate));
  return absl::ResourceExhaustedError(
      absl::StrCat("too many failed authentication attempts from ", key,
                   "; retry in ", std::max<int64_t>(wait, 1), "s"));
}

void PeerGuard::RecordFailure(const std::string& peer) {
  if (options_.failures_per_minute == 0) return;
  const absl::Time now = clock_->Now();
  const std::string key = ClientKey(peer);
  bool log = false;
  {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = budgets_.try_emplace(key);
    Budget& b = it->second;
    if (inserted) {
      b.left = options_.failures_per_minute;
      b.updated = now;
    }
    Refill(b, now);
    b.left = std::max(0.0, b.left - 1);
    if (b.left < 1 && now - b.last_logged >= absl::Minutes(1)) {
      b.last_logged = now;
      log = true;
    }
    if (budgets_.size() > options_.max_tracked) EvictLocked(now);
  }
  if (log) {
    spdlog::warn(
        "{} used up its budget of {} failed authentications per minute; "
        "refusing its calls until the budget refills",
        key, options_.failures_per_minute);
  }
}

void PeerGuard::EvictLocked(absl::Time now) {
  for (auto it = budgets_.begin(); it != budgets_.end();) {
    Refill(it->second, now);
    if (it->second.left >= options_.failures_per_minute) {
      budgets_.erase(it++);
    } else {
      ++it;
    }
  }
  // Still too many clients over budget: forget them all rather than grow
  // without bound (an attacker with that many addresses is not slowed by a
  // per-address limit anyway).
  if (budgets_.size() > options_.max_tracked) budgets_.clear();
}

}  // namespace varan
