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
// While the cluster CA is rotated (core/daemon/builtin_tls.h), two CAs are
// in play: certificates are issued by the one core serves with, and
// certificates of either are accepted (Trust); peripheries are told both
// pins, and a periphery presenting a certificate of the CA being retired
// is asked to renew it (IssuedByOther).
//
// Certificates are dated by the wall clock: TLS stacks check them against
// it. Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/pki.h"
#include "core/server/operator_certificates.h"

namespace varan::core {

// It also issues and checks operators' client certificates
// (OperatorCertificates): common name "<token id>:<binding>", DNS name
// pki::kOperatorName, client use only, so neither kind passes for the other.
class PeripheryCa final : public OperatorCertificates {
 public:
  PeripheryCa(pki::Authority ca, absl::Duration lifetime);

  // From now on certificates are issued by `issuing`, and those of
  // `other_ca_pem` (the CA a rotation adds or retires; "" for none) are
  // accepted too.
  void Trust(pki::Authority issuing, std::string other_ca_pem);
  // The pins of the CAs accepted, the issuing one's first: what
  // peripheries are told to trust (HeartbeatResponse.ca_pins).
  std::vector<std::string> pins() const;
  // Whether `chain_pem` is a certificate of the other CA than the issuing
  // one (false without one, or for a chain of neither).
  bool IssuedByOther(const std::string& chain_pem) const;

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

  // OperatorCertificates.
  absl::StatusOr<std::string> IssueOperator(
      const std::string& token_id, const std::string& binding,
      const std::string& csr_pem, absl::Time not_after) const override;
  absl::StatusOr<Presented> OperatorOf(
      const std::string& chain_pem) const override;

  // The certificates (PEM) of the CAs accepted: what a periphery's
  // certificate is checked against when core dials it.
  std::string trusted_pem() const;

 private:
  absl::Status Check(const std::string& id, const std::string& chain_pem,
                     bool allow_expired) const;
  // `profile` signed by the issuing CA for the key in `csr_pem`, followed
  // by that CA's certificate.
  absl::StatusOr<std::string> Sign(
      const std::string& csr_pem, const pki::CertificateProfile& profile) const;

  const absl::Duration lifetime_;
  mutable absl::Mutex mu_;
  pki::Authority ca_ ABSL_GUARDED_BY(mu_);
  std::string other_pem_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> pins_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
