// CertificateKeeper: the periphery's key and the certificate core's
// built-in cluster CA issued for it, as the uplink sees them (issue #20).
// The uplink sends Request() with its registration, installs what core
// answers, and asks core for a new certificate once RenewalDue says so
// (Registry.RenewCertificate). PeripheryIdentity (periphery/identity.h)
// keeps them in the state directory; tests use an in-memory one.
//
// Implementations are thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace varan::periphery {

class CertificateKeeper {
 public:
  virtual ~CertificateKeeper() = default;
  // A certificate request (PEM) for the periphery's key.
  virtual absl::StatusOr<std::string> Request() = 0;
  // Keeps `chain_pem` (the certificate core issued, then the CA's): new
  // connections present it. INVALID_ARGUMENT when it is not for the key.
  virtual absl::Status Install(const std::string& chain_pem) = 0;
  // Whether a certificate core issued is held and due for renewal at `now`
  // (two thirds of its life passed).
  virtual bool RenewalDue(absl::Time now) const = 0;
};

}  // namespace varan::periphery
