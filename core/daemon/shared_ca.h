// The cluster CA as core replicas share it (issue #20): one cluster setting
// (kClusterCaSetting, core/daemon/builtin_tls.h) holding the CA every
// replica serves and issues with, and where a rotation of it stands, so
// that a step taken on one replica (Admin.RotateClusterCa) is followed by
// every other (core/daemon/ca_rotation.h).
//
// Encoding. Without a rotation and with none finished before, the CA's
// certificate followed by its key, in PEM — what replicas wrote before
// rotations were shared, so either reads the other's. Otherwise a header,
//
//   varan-cluster-ca <steady|started|switched>
//   retired <pin>              (zero or more)
//
// followed by the current CA (certificate, key) and, while a rotation is
// under way, the other one (certificate, key). The setting holds CA keys:
// whoever reads the database can issue certificates the cluster trusts.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/pki.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

struct SharedCa {
  varan::v1::CaRotationPhase phase = varan::v1::CA_ROTATION_PHASE_STEADY;
  // The CA the replicas serve and issue with.
  pki::Authority current;
  // STARTED: the new CA; SWITCHED: the old one; STEADY: none.
  pki::Authority other;
  // The pins of CAs finished rotations retired, oldest first (the last
  // kMaxRetired): a replica that was away through a rotation still holds
  // one, and takes the current CA instead of refusing to start.
  std::vector<std::string> retired;
  static constexpr size_t kMaxRetired = 10;
};

std::string EncodeSharedCa(const SharedCa& ca);
// DATA_LOSS naming what is wrong with a value that is not one.
absl::StatusOr<SharedCa> DecodeSharedCa(const std::string& value);

// Writes `ca` as <dir>/ca.key (0600) then <dir>/ca.crt (0644), each
// atomically; `dir` is made (0700) if missing.
absl::Status WriteCaFiles(const std::string& dir, const pki::Authority& ca);
// Reads and checks <dir>/ca.crt and ca.key (both must exist). Errors name
// the file.
absl::StatusOr<pki::Authority> ReadCaFiles(const std::string& dir);

}  // namespace varan::core
