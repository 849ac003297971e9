// FakeClusterCa: a ClusterCaControl (core/server/cluster_ca_control.h) that
// keeps a rotation's phase in memory, with made-up pins, for tests of what
// calls it (the Admin service). The rules of which step follows which are
// CaRotation's; this one accepts any step but UNSPECIFIED and records them.
#pragma once

#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/server/cluster_ca_control.h"

namespace varan::core {

class FakeClusterCa final : public ClusterCaControl {
 public:
  varan::v1::ClusterCa State() const override {
    absl::MutexLock lock(&mu_);
    return state_;
  }

  absl::StatusOr<varan::v1::ClusterCa> Step(varan::v1::CaRotationStep step,
                                            bool force,
                                            absl::Time /*now*/) override {
    absl::MutexLock lock(&mu_);
    if (step == varan::v1::CA_ROTATION_STEP_UNSPECIFIED) {
      return absl::InvalidArgumentError("step: none");
    }
    steps_.push_back(step);
    forced_.push_back(force);
    state_.set_phase(step == varan::v1::CA_ROTATION_STEP_START
                         ? varan::v1::CA_ROTATION_PHASE_STARTED
                         : varan::v1::CA_ROTATION_PHASE_STEADY);
    return state_;
  }

  std::vector<varan::v1::CaRotationStep> steps() const {
    absl::MutexLock lock(&mu_);
    return steps_;
  }
  std::vector<bool> forced() const {
    absl::MutexLock lock(&mu_);
    return forced_;
  }

 private:
  mutable absl::Mutex mu_;
  varan::v1::ClusterCa state_ = [] {
    varan::v1::ClusterCa s;
    s.set_pin("sha256:fake");
    s.set_phase(varan::v1::CA_ROTATION_PHASE_STEADY);
    return s;
  }();
  std::vector<varan::v1::CaRotationStep> steps_;
  std::vector<bool> forced_;
};

}  // namespace varan::core
