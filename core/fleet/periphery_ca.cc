#include "core/fleet/periphery_ca.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace varan::core {

PeripheryCa::PeripheryCa(pki::Authority ca, absl::Duration lifetime)
    : lifetime_(lifetime) {
  Trust(std::move(ca), "");
}

void PeripheryCa::Trust(pki::Authority issuing, std::string other_ca_pem) {
  std::vector<std::string> pins;
  for (const std::string* pem : {&issuing.cert_pem, &other_ca_pem}) {
    if (pem->empty()) continue;
    auto pin = pki::AuthorityPin(*pem);
    if (pin.ok()) pins.push_back(*std::move(pin));
  }
  absl::MutexLock lock(&mu_);
  ca_ = std::move(issuing);
  other_pem_ = std::move(other_ca_pem);
  pins_ = std::move(pins);
}

std::vector<std::string> PeripheryCa::pins() const {
  absl::MutexLock lock(&mu_);
  return pins_;
}

std::string PeripheryCa::trusted_pem() const {
  absl::MutexLock lock(&mu_);
  return ca_.cert_pem + other_pem_;
}

bool PeripheryCa::IssuedByOther(const std::string& chain_pem) const {
  std::string other;
  {
    absl::MutexLock lock(&mu_);
    other = other_pem_;
  }
  if (other.empty() || chain_pem.empty()) return false;
  return pki::Verify(other, chain_pem, absl::Now(), pki::Usage::kClientAuth)
      .ok();
}

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
  auto chain = Sign(csr_pem, profile);
  if (!chain.ok()) {
    return absl::Status(
        chain.status().code(),
        absl::StrCat("issuing periphery ", id,
                     " a certificate: ", chain.status().message()));
  }
  return chain;
}

absl::StatusOr<std::string> PeripheryCa::Sign(
    const std::string& csr_pem, const pki::CertificateProfile& profile) const {
  pki::Authority ca;
  {
    absl::MutexLock lock(&mu_);
    ca = ca_;
  }
  auto cert = pki::SignRequest(ca, csr_pem, profile);
  if (!cert.ok()) return cert.status();
  return *cert + ca.cert_pem;
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
      pki::VerifyIssued(trusted_pem(), chain_pem, pki::kPeripheryName, id,
                        pki::Usage::kClientAuth, at);
  if (s.ok()) return s;
  return absl::UnauthenticatedError(
      absl::StrCat("periphery ", id, "'s certificate: ", s.message()));
}

absl::StatusOr<std::string> PeripheryCa::IssueOperator(
    const std::string& token_id, const std::string& binding,
    const std::string& csr_pem, absl::Time not_after) const {
  if (csr_pem.empty()) {
    return absl::InvalidArgumentError(
        "csr: no certificate request (varanctl certs issue makes one)");
  }
  if (absl::Status s = CheckRequest(csr_pem); !s.ok()) return s;
  pki::CertificateProfile profile;
  profile.common_name = absl::StrCat(token_id, ":", binding);
  profile.dns_names = {pki::kOperatorName};
  profile.client_auth = true;
  profile.not_before = absl::Now() - absl::Minutes(5);
  profile.not_after = not_after;
  return Sign(csr_pem, profile);
}

absl::StatusOr<OperatorCertificates::Presented> PeripheryCa::OperatorOf(
    const std::string& chain_pem) const {
  auto info = pki::Inspect(chain_pem);
  if (!info.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("client certificate: ", info.status().message()));
  }
  const size_t colon = info->common_name.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::UnauthenticatedError(absl::StrCat(
        "client certificate \"", info->common_name,
        "\" names no operator token (issue one with varanctl certs issue)"));
  }
  absl::Status s = pki::VerifyIssued(trusted_pem(), chain_pem,
                                     pki::kOperatorName, info->common_name,
                                     pki::Usage::kClientAuth, absl::Now());
  if (!s.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("client certificate: ", s.message()));
  }
  return Presented{info->common_name.substr(0, colon),
                   info->common_name.substr(colon + 1)};
}

}  // namespace varan::core
