#include "core/jobs/job_owner.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

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

bool AdoptionSchedule::Due(absl::Time now) {
  absl::flat_hash_set<std::string> live;
  for (const ReplicaInfo& r : cluster_->Replicas()) live.insert(r.id);
  for (const std::string& id : live_) {
    if (!live.contains(id)) pending_ = true;  // it left
  }
  live_ = std::move(live);
  const bool holds = cluster_->Holds(kJobsLease);
  if (holds && !held_) pending_ = true;  // just taken
  held_ = holds;
  return holds && (pending_ || now >= next_);
}

void AdoptionSchedule::Scanned(const absl::Status& status, absl::Time now) {
  if (!status.ok()) {
    pending_ = true;  // again at the next refresh
    return;
  }
  pending_ = false;
  next_ = now + backstop_;
}

bool JobOwners::OwnsHere(absl::string_view job_id) const {
  if (!tag_.empty() && JobTag(job_id) == tag_) return true;
  return !CreatorOf(job_id).has_value() && cluster_->Holds(kJobsLease);
}

}  // namespace varan::core
