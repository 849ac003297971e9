#include "core/fleet/periphery_ca.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace varan::core {

PeripheryCa::PeripheryCa(pki::Authority ca, absl::Duration lifetime)
    : ca_(std::move(ca)), lifetime_(lifetime) {}

absl::Status PeripheryCa::CheckRequest(const std::string& csr_pem) const {
  if (csr_pem.empty()) {
    return absl::InvalidArgumentError(
        "csr: core issues peripheries certificates from its cluster CA, and "
        "the registration carries no certificate request (a varan-periphery "
        "older than core?)");
  }
  absl::Status s = pki::CheckRequest(csr_pem);
  if (s.ok()) return s;
  return absl::InvalidArgumentError(absl::StrCat("csr: ", s.message()));
}

absl::StatusOr<std::string> PeripheryCa::Issue(
    const std::string& id, const std::string& csr_pem) const {
  const absl::Time now = absl::Now();
  pki::CertificateProfile profile;
  profile.common_name = id;
  profile.dns_names = {pki::kPeripheryName};
  profile.client_auth = true;
  profile.server_auth = true;
  profile.not_before = now - absl::Minutes(5);
  profile.not_after = now + lifetime_;
  auto cert = pki::SignRequest(ca_, csr_pem, profile);
  if (!cert.ok()) {
    return absl::Status(
        cert.status().code(),
        absl::StrCat("issuing periphery ", id,
                     " a certificate: ", cert.status().message()));
  }
  return *cert + ca_.cert_pem;
}

absl::Status PeripheryCa::CheckPresented(const std::string& id,
                                         const std::string& chain_pem) const {
  return Check(id, chain_pem, /*allow_expired=*/false);
}

absl::Status PeripheryCa::CheckForRenewal(const std::string& id,
                                          const std::string& chain_pem) const {
  return Check(id, chain_pem, /*allow_expired=*/true);
}

absl::Status PeripheryCa::Check(const std::string& id,
                                const std::string& chain_pem,
                                bool allow_expired) const {
  if (chain_pem.empty()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "periphery ", id,
        " presented no certificate: core issued it one at registration and "
        "takes its calls only with it"));
  }
  absl::Time at = absl::Now();
  if (allow_expired) {
    auto info = pki::Inspect(chain_pem);
    if (!info.ok()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "periphery ", id, "'s certificate: ", info.status().message()));
    }
    // Checked as of the last second it was valid: everything but its end.
    at = std::min(at, info->not_after - absl::Seconds(1));
  }
  absl::Status s =
      pki::VerifyIssued(ca_.cert_pem, chain_pem, pki::kPeripheryName, id,
                        pki::Usage::kClientAuth, at);
  if (s.ok()) return s;
  return absl::UnauthenticatedError(
      absl::StrCat("periphery ", id, "'s certificate: ", s.message()));
}

}  // namespace varan::core
