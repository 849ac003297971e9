#include "core/server/operator_certificates.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/time_util.h"

namespace varan::core {

absl::StatusOr<varan::v1::IssueClientCertificateResponse>
IssueClientCertificate(const OperatorCertificates& certificates,
                       const TokenIdentity& token,
                       const varan::v1::IssueClientCertificateRequest& request,
                       absl::Time now) {
  absl::Duration lifetime = kDefaultOperatorCertLifetime;
  if (request.has_lifetime()) {
    const absl::Duration asked = FromDuration(request.lifetime());
    if (asked < absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lifetime: ", absl::FormatDuration(asked), " is negative"));
    }
    if (asked > absl::ZeroDuration()) {
      lifetime = std::min(asked, kMaxOperatorCertLifetime);
    }
  }
  // Whole seconds, as the certificate says it.
  const absl::Time not_after = absl::FromUnixSeconds(
      absl::ToUnixSeconds(std::min(now + lifetime, token.expires)));
  if (not_after <= now) {
    return absl::FailedPreconditionError(
        absl::StrCat("operator token \"", token.name, "\" has expired"));
  }
  auto issued = certificates.IssueOperator(token.id, token.binding,
                                           request.csr(), not_after);
  if (!issued.ok()) return issued.status();
  varan::v1::IssueClientCertificateResponse response;
  response.set_certificate(*std::move(issued));
  SetTimestamp(not_after, response.mutable_not_after());
  return response;
}

}  // namespace varan::core
