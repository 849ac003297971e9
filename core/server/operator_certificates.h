// OperatorCertificates: operators' client certificates from the built-in
// cluster CA (Admin.IssueClientCertificate). A certificate names an operator
// token (its id and binding, core/server/tokens.h TokenIdentity) and stands
// for it: the Authenticator accepts one presented in the TLS handshake in
// place of the bearer token, with the token's role, for as long as the
// token is valid. Implemented by PeripheryCa (core/fleet/periphery_ca.h),
// which holds the CA; tests use it directly (it keeps everything in
// memory).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/server/tokens.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

class OperatorCertificates {
 public:
  virtual ~OperatorCertificates() = default;

  // A client certificate for the key in `csr_pem`, naming the token with
  // `token_id` and `binding`, valid until `not_after` (from 5 minutes ago,
  // for clocks that lag), followed by the CA's certificate.
  // INVALID_ARGUMENT naming "csr" for a bad request.
  virtual absl::StatusOr<std::string> IssueOperator(
      const std::string& token_id, const std::string& binding,
      const std::string& csr_pem, absl::Time not_after) const = 0;

  // Which token a chain presented in a TLS handshake stands for: its id and
  // binding, when it is an operator certificate of a CA core trusts, valid
  // now. UNAUTHENTICATED saying what is wrong.
  struct Presented {
    std::string token_id;
    std::string binding;
  };
  virtual absl::StatusOr<Presented> OperatorOf(
      const std::string& chain_pem) const = 0;
};

// Lifetimes of operators' client certificates: unset, and at most.
inline constexpr absl::Duration kDefaultOperatorCertLifetime = absl::Hours(24);
inline constexpr absl::Duration kMaxOperatorCertLifetime = absl::Hours(24 * 30);

// Admin.IssueClientCertificate for the caller's `token` at `now`: the
// lifetime asked (kDefaultOperatorCertLifetime when unset), at most
// kMaxOperatorCertLifetime and never beyond the token's expiry.
// INVALID_ARGUMENT for a negative lifetime or a bad request; FAILED_
// PRECONDITION for a token that already expired.
absl::StatusOr<varan::v1::IssueClientCertificateResponse>
IssueClientCertificate(const OperatorCertificates& certificates,
                       const TokenIdentity& token,
                       const varan::v1::IssueClientCertificateRequest& request,
                       absl::Time now);

}  // namespace varan::core
