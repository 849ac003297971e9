#include "core/jobs/job_owner.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace varan::core {
namespace {

constexpr size_t kTagSize = 8;
// Jobs ids: 11 hex digits of milliseconds, 3 of a counter, then the tag
// (Dispatcher::NewJobId).
constexpr size_t kTaggedJobIdSize = 11 + 3 + kTagSize;

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::string ReplicaTag(absl::string_view replica_id) {
  if (!absl::ConsumePrefix(&replica_id, "r-") || replica_id.size() < kTagSize) {
    return "";
  }
  absl::string_view tag = replica_id.substr(0, kTagSize);
  return IsHex(tag) ? std::string(tag) : "";
}

std::string JobTag(absl::string_view job_id) {
  if (job_id.size() != kTaggedJobIdSize) return "";
  absl::string_view tag = job_id.substr(job_id.size() - kTagSize);
  return IsHex(tag) ? std::string(tag) : "";
}

JobOwners::JobOwners(const Cluster* cluster)
    : cluster_(cluster), tag_(ReplicaTag(cluster->self().id)) {}

std::optional<ReplicaInfo> JobOwners::CreatorOf(
    absl::string_view job_id) const {
  const std::string tag = JobTag(job_id);
  if (tag.empty()) return std::nullopt;
  for (ReplicaInfo& r : cluster_->Replicas()) {
    if (ReplicaTag(r.id) == tag) return std::move(r);
  }
  return std::nullopt;
}

bool JobOwners::OwnsHere(absl::string_view job_id) const {
  if (!tag_.empty() && JobTag(job_id) == tag_) return true;
  return !CreatorOf(job_id).has_value() && cluster_->Holds(kJobsLease);
}

}  // namespace varan::core
