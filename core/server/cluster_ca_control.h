// ClusterCaControl: what the Admin service asks of core's built-in cluster
// CA (Admin.GetClusterCa, Admin.RotateClusterCa). CaRotation
// (core/daemon/ca_rotation.h) is the real one; tests/fakes/core/
// fake_cluster_ca.h keeps a phase in memory.
#pragma once

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

class ClusterCaControl {
 public:
  virtual ~ClusterCaControl() = default;
  // Where the CA and its rotation stand.
  virtual varan::v1::ClusterCa State() const = 0;
  // One step of the rotation (`now` dates a new CA); the state after.
  virtual absl::StatusOr<varan::v1::ClusterCa> Step(
      varan::v1::CaRotationStep step, bool force, absl::Time now) = 0;
};

}  // namespace varan::core
