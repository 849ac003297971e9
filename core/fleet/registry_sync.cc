// FleetRegistry, part 2 of 2: sharing the fleet between core replicas
// (Refresh and the connection claims). The class and its contract are in
// registry.h.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/time_util.h"
#include "core/fleet/registry.h"

namespace varan::core {

bool FleetRegistry::WritesTransitionsLocked(const Record& r) const {
  if (cluster_ == nullptr || r.here) return true;
  return cluster_->HoldingOf(r.stored.info.id()) == Holding::kNowhere &&
         cluster_->Holds(kLivenessLease);
}

void FleetRegistry::SetHereLocked(Record& r, bool here) {
  if (r.here == here) return;
  r.here = here;
  if (cluster_ == nullptr) return;
  if (here) {
    cluster_->Connected(r.stored.info.id());
  } else {
    cluster_->Disconnected(r.stored.info.id());
  }
}

void FleetRegistry::MergeLocked(
    StoredPeriphery p, std::vector<std::pair<std::string, std::string>>* gone) {
  const std::string id = p.info.id();
  const bool removed = p.info.state() == varan::v1::PERIPHERY_STATE_REMOVED;
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    // Registered through another replica.
    Record r;
    r.first_seen = FromTimestamp(p.info.first_seen());
    r.last_seen = FromTimestamp(p.info.last_seen());
    r.removed = removed;
    r.stored = std::move(p);
    if (!removed) id_by_name_[r.stored.info.name()] = id;
    by_id_[id] = std::move(r);
    return;
  }
  Record& r = it->second;
  if (r.removed) return;  // removal is final
  if (removed) {
    id_by_name_.erase(r.stored.info.name());
    r.removed = true;
    r.stored.credential.clear();
    SetHereLocked(r, false);
    if (r.was_online) {
      r.was_online = false;
      gone->emplace_back(id, absl::StrCat("periphery ", r.stored.info.name(),
                                          " was removed from the fleet"));
    }
    return;
  }
  // What the replica receiving its heartbeats knows better: when that is
  // this one, keep its own stats and times.
  if (r.here) {
    *p.info.mutable_stats() = r.stored.info.stats();
    p.info.set_peer_address(r.stored.info.peer_address());
    p.info.set_address(r.stored.info.address());
    *p.info.mutable_trusted_ca_pins() = r.stored.info.trusted_ca_pins();
  } else {
    r.last_seen = std::max(r.last_seen, FromTimestamp(p.info.last_seen()));
  }
  if (p.info.name() != r.stored.info.name()) {
    id_by_name_.erase(r.stored.info.name());
    id_by_name_[p.info.name()] = id;
  }
  r.stored = std::move(p);
}

void FleetRegistry::UpdateOwnersLocked(absl::Time now) {
  if (cluster_ == nullptr) return;
  for (auto& [id, r] : by_id_) {
    if (r.removed) continue;
    const Holding holding = cluster_->HoldingOf(id);
    if (holding == Holding::kElsewhere) {
      r.remote_until = now + ttl();
    } else if (holding == Holding::kNowhere && !r.here &&
               r.stored.info.state() == varan::v1::PERIPHERY_STATE_OFFLINE) {
      // The replica that held it wrote it offline and let it go.
      r.remote_until = absl::InfinitePast();
    }
    if (!r.was_online && Online(r, now)) r.was_online = true;
  }
}

absl::Status FleetRegistry::Refresh() {
  if (cluster_ == nullptr) return absl::OkStatus();
  uint64_t gen_before;
  {
    absl::MutexLock lock(&mu_);
    gen_before = save_gen_;
  }
  // Every write made here before the read is committed, so what is read is
  // at least as new as this replica's own copy of it.
  if (absl::Status s = store_->Sync(); !s.ok()) {
    spdlog::error("a write to the store failed: {}", s.message());
  }
  if (++changed_reads_ >= kFullRefreshEvery) {
    changed_reads_ = 0;
    changed_cursor_ = 0;
  }
  auto stored = store_->LoadChangedPeripheries(&changed_cursor_);
  if (!stored.ok()) return stored.status();
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, std::string>> gone;
  std::function<void(const std::string&, const std::string&)> listener;
  {
    absl::MutexLock lock(&mu_);
    for (StoredPeriphery& p : *stored) {
      auto it = by_id_.find(p.info.id());
      // Written here after the read began: this replica's copy is newer.
      if (it != by_id_.end() && it->second.saved_gen > gen_before) continue;
      MergeLocked(std::move(p), &gone);
    }
    UpdateOwnersLocked(now);
    listener = gone_listener_;
  }
  for (const auto& [id, reason] : gone) {
    spdlog::info("{}", reason);
    if (listener) listener(id, reason);
  }
  return absl::OkStatus();
}

}  // namespace varan::core
