// TokenRegistry, part 3 of 3: sharing the tokens between core replicas
// (Refresh, and ReserveJoin's look-up of unknown join tokens). The class
// and its contract are in tokens.h.
#include "common/log.h"
#include "core/server/tokens.h"

namespace varan::core {

absl::Status TokenRegistry::Refresh() {
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
  auto tokens = store_->LoadTokens();
  if (!tokens.ok()) return tokens.status();
  auto joins = store_->LoadJoinTokens();
  if (!joins.ok()) return joins.status();
  absl::MutexLock lock(&mu_);
  auto written_since =
      [&](const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        auto it = written_.find(id);
        return it != written_.end() && it->second > gen_before;
      };
  for (StoredToken& t : *tokens) {
    const std::string id = t.info.id();
    if (written_since(id)) continue;
    operator_by_hash_[t.hash] = id;
    operators_[id] = Operator{std::move(t), false};
  }
  for (StoredJoinToken& t : *joins) {
    const std::string id = t.info.id();
    if (written_since(id)) continue;
    join_by_hash_[t.hash] = id;
    joins_[id] = Join{std::move(t), false};
  }
  return absl::OkStatus();
}

absl::Status TokenRegistry::ReadNewJoinTokens() {
  auto joins = store_->LoadJoinTokens();
  if (!joins.ok()) return joins.status();
  absl::MutexLock lock(&mu_);
  for (StoredJoinToken& t : *joins) {
    const std::string id = t.info.id();
    if (joins_.contains(id)) continue;
    join_by_hash_[t.hash] = id;
    joins_[id] = Join{std::move(t), false};
  }
  return absl::OkStatus();
}

}  // namespace varan::core
