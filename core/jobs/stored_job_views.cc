#include "core/jobs/stored_job_views.h"

#include <utility>

#include "absl/container/flat_hash_map.h"

namespace varan::core {

StoredJobViews::StoredJobViews(Read read, Runner run, const Clock* clock,
                               Options options)
    : read_(std::move(read)),
      run_(std::move(run)),
      clock_(clock),
      options_(options) {}

StoredJobViews::~StoredJobViews() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* in_flight) { return *in_flight == 0; }, &in_flight_));
}

bool StoredJobViews::With(const std::string& id, Use use) {
  if (!run_) {
    // Read here, every time: nothing is kept.
    const absl::StatusOr<std::shared_ptr<Job>> job = read_(id);
    Changed changed;
    absl::MutexLock lock(&mu_);
    use(job, changed);
    return true;
  }
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    absl::erase_if(views_, [&](const auto& entry) {
      return !entry.second.reading &&
             now - entry.second.read_at >= options_.fresh_for;
    });
    auto it = views_.find(id);
    if (it != views_.end()) {
      if (it->second.reading) return false;
      use(it->second.job, it->second.changed);
      return true;
    }
    if (views_.size() >= options_.max_views) return false;
    views_.try_emplace(id);
    ++in_flight_;
  }
  absl::Status started = run_([this, id] { Done(id, read_(id)); });
  if (!started.ok()) {
    absl::MutexLock lock(&mu_);
    views_.erase(id);
    --in_flight_;
  }
  return false;
}

void StoredJobViews::Done(const std::string& id,
                          absl::StatusOr<std::shared_ptr<Job>> job) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  View& view = views_[id];
  view.reading = false;
  view.read_at = now;
  view.job = std::move(job);
  --in_flight_;
}

size_t StoredJobViews::size() const {
  absl::MutexLock lock(&mu_);
  return views_.size();
}

}  // namespace varan::core
