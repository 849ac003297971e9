// PeripheryCa: what core's built-in cluster CA does for peripheries (issue
// #20). At registration a periphery sends a certificate request for its own
// key; core answers with a short-lived certificate, its common name the
// periphery id and its DNS name pki::kPeripheryName, for TLS client and
// server use. The periphery presents it on every connection to core and
// serves its Agent port with it; it renews it (Registry.RenewCertificate)
// before it expires.
//
// Who is checked how. A heartbeat, tunnel or renewal of periphery X must
// carry X's credential (FleetRegistry) and present, on its TLS connection, a
// certificate this CA issued to X (CheckPresented): the credential ties the
// call to X's current registration, so a periphery removed or taken over is
// refused at once whatever certificate it still holds, and the certificate
// proves the caller holds the key the credential was issued with, which
// never left the periphery. Renewal (CheckForRenewal) accepts a certificate
// that expired, so a periphery that was off for longer than a certificate's
// life comes back without a new join token; removing it is what revokes it.
//
// Certificates are dated by the wall clock: TLS stacks check them against
// it. Stateless apart from its constant inputs; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/pki.h"

namespace varan::core {

class PeripheryCa {
 public:
  PeripheryCa(pki::Authority ca, absl::Duration lifetime);

  // A request Issue would refuse, refused before anything else is done.
  // INVALID_ARGUMENT naming "csr" and what is wrong.
  absl::Status CheckRequest(const std::string& csr_pem) const;

  // A certificate for periphery `id` for the key in `csr_pem`, valid for
  // the lifetime from now (5 minutes earlier, for clocks that lag),
  // followed by the CA's certificate.
  absl::StatusOr<std::string> Issue(const std::string& id,
                                    const std::string& csr_pem) const;

  // OK when `chain_pem` (what the caller presented in its TLS handshake)
  // is a certificate this CA issued to periphery `id`, valid now.
  // UNAUTHENTICATED saying what is wrong (none presented, another CA's,
  // another periphery's, expired).
  absl::Status CheckPresented(const std::string& id,
                              const std::string& chain_pem) const;
  // The same, except that a certificate past its end is accepted.
  absl::Status CheckForRenewal(const std::string& id,
                               const std::string& chain_pem) const;

  // The CA's certificate (PEM).
  const std::string& ca_pem() const { return ca_.cert_pem; }

 private:
  absl::Status Check(const std::string& id, const std::string& chain_pem,
                     bool allow_expired) const;

  const pki::Authority ca_;
  const absl::Duration lifetime_;
};

}  // namespace varan::core
