// OpenSSL helpers shared by pki.cc (making keys and certificates),
// pki_verify.cc (reading and verifying them) and pki_store.cc (the CA on
// disk). Not part of the API: it exposes OpenSSL types, which pki.h keeps
// out of its users.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"
#include "openssl/bio.h"
#include "openssl/evp.h"
#include "openssl/x509.h"

namespace varan::pki::internal {

using ::varan::BioPtr;
using ::varan::PkeyPtr;
using ::varan::X509Ptr;

// The reason of OpenSSL's last error (never data), and clears the queue.
std::string OpenSslError();

// INTERNAL "cannot <what>: <OpenSSL's reason>", for calls that fail only
// when the library breaks or memory runs out.
absl::Status Internal(absl::string_view what);

// The certificates in `pem` (at least one); otherwise INVALID_ARGUMENT
// naming `what` ("the CA bundle").
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(absl::string_view pem,
                                                       absl::string_view what);
// The first certificate in `pem`.
absl::StatusOr<X509Ptr> ParseCertificate(absl::string_view pem,
                                         absl::string_view what);
// An unencrypted PEM private key; INVALID_ARGUMENT naming `what` otherwise.
absl::StatusOr<PkeyPtr> ParsePrivateKey(absl::string_view pem,
                                        absl::string_view what);

// FAILED_PRECONDITION unless `key` belongs to `cert` and `cert` is a CA
// (basicConstraints CA:TRUE). `cert_what`/`key_what` name them in errors.
absl::Status CheckAuthority(X509* cert, EVP_PKEY* key,
                            absl::string_view cert_what,
                            absl::string_view key_what);

// `cert` as PEM.
absl::StatusOr<std::string> CertificatePem(X509* cert);

// The pin (see AuthorityPin) of `cert`'s public key.
absl::StatusOr<std::string> PinOf(X509* cert);

// `t` as RFC 3339 in UTC ("2026-01-01T00:00:00+00:00"), for messages.
std::string TimeText(absl::Time t);

// A certificate time as absl::Time.
absl::StatusOr<absl::Time> GetTime(const ASN1_TIME* field);

}  // namespace varan::pki::internal
