#include "core/cluster/cluster.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/secrets.h"

namespace varan::core {

Holding Cluster::HoldingOf(const std::string& id) const {
  std::optional<PeripheryOwner> owner = OwnerOf(id);
  if (!owner.has_value()) return Holding::kNowhere;
  return owner->replica.id == self().id ? Holding::kHere : Holding::kElsewhere;
}

std::string NewReplicaId() {
  return absl::StrCat("r-", GenerateSecret().substr(0, 16));
}

std::string ReplicaTag(absl::string_view replica_id) {
  constexpr size_t kTagSize = 8;
  if (!absl::ConsumePrefix(&replica_id, "r-") || replica_id.size() < kTagSize) {
    return "";
  }
  absl::string_view tag = replica_id.substr(0, kTagSize);
  for (char c : tag) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return "";
  }
  return std::string(tag);
}

}  // namespace varan::core
