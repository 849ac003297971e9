// CaRotation: replacing core's built-in cluster CA without losing a
// periphery (issue #20; Admin.RotateClusterCa).
//
//   STEADY --START--> STARTED --SWITCH--> SWITCHED --FINISH--> STEADY
//                        \--ABORT--> STEADY
//
// START makes a new CA in <data-dir>/pki/next. Core still serves and issues
// with the current one, accepts peripheries' certificates of both, and
// tells every periphery both pins with each heartbeat answer; the
// peripheries say in their heartbeats which pins they trust. SWITCH
// (refused while a registered periphery has not said it trusts the new pin,
// unless forced) keeps the current CA in pki/previous, makes the new one
// pki/ca.crt and ca.key, serves a certificate from it, issues from it, and
// asks peripheries presenting certificates of the old one to renew. FINISH
// forgets the old CA: its certificates are refused from then on, and
// peripheries are told the new pin alone. Each step is on disk before it
// is answered; a switch a crash interrupted is completed at the next start
// (Recover).
//
// Operators' clients pinning the CA (varanctl --ca-hash) take both pins
// between START and FINISH.
//
// Replicas. With a Cluster the rotation is the replicas' together: where
// it stands is the shared CA (core/daemon/shared_ca.h, one cluster
// setting), not the files of pki/. A step reads it, checks the step
// against it, and replaces it only if no other replica changed it
// meanwhile (Cluster::Replace; otherwise ABORTED: try again); Follow(),
// called every second or so, takes the steps other replicas took. Only
// ca.crt and ca.key are written to pki/ (the current CA, what the next
// start compares with the cluster's). SWITCH waits for every periphery,
// whichever replica hears its heartbeats (FleetRegistry::NotTrusting).
//
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/pki.h"
#include "core/cluster/cluster.h"
#include "core/daemon/builtin_tls.h"
#include "core/daemon/shared_ca.h"
#include "core/fleet/periphery_ca.h"
#include "core/fleet/registry.h"
#include "core/server/cluster_ca_control.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

class CaRotation final : public ClusterCaControl {
 public:
  struct Parts {
    BuiltinTls* tls = nullptr;
    PeripheryCa* peripheries = nullptr;
    // Whose trust SWITCH waits for: every registered periphery.
    const FleetRegistry* fleet = nullptr;
    // Several replicas: the cluster sharing the CA (must outlive this).
    Cluster* cluster = nullptr;
    // After every step: core's serving certificate or the CAs trusted
    // changed (connections made from now on must use them).
    std::function<void()> changed;
  };

  // Completes a SWITCH a crash interrupted in `pki_dir` (before the CA in
  // it is loaded). Errors name the file.
  static absl::Status Recover(const std::string& pki_dir);

  // Where a rotation of the CA in `pki_dir` (or the cluster's) stands
  // (Parts' objects must outlive it); tells `parts.peripheries` which CAs
  // to trust.
  static absl::StatusOr<std::unique_ptr<CaRotation>> Open(
      const std::string& pki_dir, Parts parts);

  // Replicas: takes the steps other replicas took since the last call
  // (and calls Parts::changed when there were some). Blocks on the
  // database; UNAVAILABLE when it cannot be reached. Without a cluster:
  // OK, nothing to do.
  absl::Status Follow(absl::Time now);

  varan::v1::ClusterCa State() const override;
  // One step (see the class comment); `now` dates a new CA. Errors:
  // FAILED_PRECONDITION for a step the rotation is not at, or a SWITCH
  // peripheries are not ready for (naming them); INVALID_ARGUMENT for no
  // step; file errors naming the file; replicas: ABORTED when another
  // replica took a step at the same time, UNAVAILABLE without the
  // database.
  absl::StatusOr<varan::v1::ClusterCa> Step(varan::v1::CaRotationStep step,
                                            bool force,
                                            absl::Time now) override;

 private:
  CaRotation(std::string pki_dir, Parts parts);
  varan::v1::ClusterCa StateLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void TrustLocked() ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // FAILED_PRECONDITION unless `step` may be taken now (force: a SWITCH
  // pending peripheries); INVALID_ARGUMENT for none.
  absl::Status CheckStepLocked(varan::v1::CaRotationStep step, bool force) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The step on the files of pki/ (one core).
  absl::Status StepFilesLocked(varan::v1::CaRotationStep step, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SwitchLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The step on the cluster's shared CA (replicas), from shared_value_.
  absl::Status StepSharedLocked(varan::v1::CaRotationStep step, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the shared CA and applies it when it changed (and, but for the
  // first read, tells the peripheries' CA and calls Parts::changed); true
  // when it did.
  absl::StatusOr<bool> FollowLocked(absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Serves, issues with and trusts what `shared` says (pki/ca.* written
  // when the current CA changed).
  absl::Status ApplyLocked(const SharedCa& shared, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const Parts parts_;
  mutable absl::Mutex mu_;
  varan::v1::CaRotationPhase phase_ ABSL_GUARDED_BY(mu_) =
      varan::v1::CA_ROTATION_PHASE_STEADY;
  // STARTED: the new CA; SWITCHED: the old one (certificate only, but for
  // replicas, whose shared CA keeps the key until FINISH).
  pki::Authority other_ ABSL_GUARDED_BY(mu_);
  // Replicas: the shared CA as last read (kClusterCaSetting's value), and
  // the pins it retired.
  std::string shared_value_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
