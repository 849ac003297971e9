// The CA pin: computing it (AuthorityPin), reading it from users
// (ParsePin) and checking a server's chain against it (VerifyPinned).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/openssl_ptr.h"
#include "common/pki.h"
#include "common/pki_internal.h"
#include "common/status_macros.h"
#include "openssl/evp.h"
#include "openssl/x509.h"
#include "openssl/x509v3.h"

namespace varan::pki {

namespace internal {

absl::StatusOr<std::string> PinOf(X509* cert) {
  // The SubjectPublicKeyInfo exactly as the certificate encodes it.
  unsigned char* der = nullptr;
  const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  if (len <= 0) return Internal("encode the CA's public key");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  const int ok = EVP_Digest(der, static_cast<size_t>(len), digest, &digest_len,
                            EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1) return Internal("hash the CA's public key");
  return absl::StrCat("sha256:",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(digest), digest_len)));
}

}  // namespace internal

namespace {

using internal::X509Ptr;

bool IsCa(X509* cert) { return (X509_get_extension_flags(cert) & EXFLAG_CA); }

}  // namespace

absl::StatusOr<std::string> AuthorityPin(const std::string& ca_cert_pem) {
  VARAN_ASSIGN_OR_RETURN(X509Ptr cert, internal::ParseCertificate(
                                           ca_cert_pem, "the CA certificate"));
  return internal::PinOf(cert.get());
}

absl::StatusOr<std::string> ParsePin(const std::string& text,
                                     const std::string& what) {
  constexpr absl::string_view kPrefix = "sha256:";
  const std::string lower = absl::AsciiStrToLower(text);
  absl::string_view hex = lower;
  const bool prefixed = absl::ConsumePrefix(&hex, kPrefix);
  bool hex_digits = hex.size() == 64;
  for (char c : hex) hex_digits = hex_digits && absl::ascii_isxdigit(c);
  if (!prefixed || !hex_digits) {
    return absl::InvalidArgumentError(absl::StrCat(
        what,
        ": expected a CA pin, \"sha256:\" and 64 hex digits (the SHA-256 of "
        "the CA's public key, as varan-core logs it at start)"));
  }
  return lower;
}

absl::StatusOr<std::vector<std::string>> ParsePins(const std::string& text,
                                                   const std::string& what) {
  std::vector<std::string> pins;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    VARAN_ASSIGN_OR_RETURN(
        std::string pin,
        ParsePin(std::string(absl::StripAsciiWhitespace(part)), what));
    if (std::find(pins.begin(), pins.end(), pin) == pins.end()) {
      pins.push_back(std::move(pin));
    }
  }
  return pins;
}

absl::StatusOr<std::vector<std::string>> ChainAuthorityPins(
    const std::string& chain_pem) {
  VARAN_ASSIGN_OR_RETURN(
      std::vector<X509Ptr> chain,
      internal::ParseCertificates(chain_pem, "the server's chain"));
  std::vector<std::string> pins;
  for (const X509Ptr& cert : chain) {
    if (!IsCa(cert.get())) continue;
    VARAN_ASSIGN_OR_RETURN(std::string pin, internal::PinOf(cert.get()));
    pins.push_back(std::move(pin));
  }
  return pins;
}

absl::Status VerifyPinned(const std::string& chain_pem, const std::string& pin,
                          const std::string& name, absl::Time now) {
  return VerifyPinned(chain_pem, pin, name, now, Usage::kServerAuth);
}

absl::Status VerifyPinned(const std::string& chain_pem, const std::string& pin,
                          const std::string& name, absl::Time now,
                          Usage usage) {
  return VerifyPinned(chain_pem, std::vector<std::string>{pin}, name, now,
                      usage);
}

absl::Status VerifyPinned(const std::string& chain_pem,
                          const std::vector<std::string>& pins,
                          const std::string& name, absl::Time now,
                          Usage usage) {
  const std::string pin = absl::StrJoin(pins, ", ");
  const char* const who =
      usage == Usage::kServerAuth ? "the server" : "the client";
  VARAN_ASSIGN_OR_RETURN(
      std::vector<X509Ptr> chain,
      internal::ParseCertificates(chain_pem, absl::StrCat(who, "'s chain")));
  std::vector<std::string> offered;
  for (const X509Ptr& cert : chain) {
    if (!IsCa(cert.get())) continue;
    VARAN_ASSIGN_OR_RETURN(std::string cert_pin, internal::PinOf(cert.get()));
    if (std::find(pins.begin(), pins.end(), cert_pin) == pins.end()) {
      offered.push_back(std::move(cert_pin));
      continue;
    }
    VARAN_ASSIGN_OR_RETURN(std::string ca_pem,
                           internal::CertificatePem(cert.get()));
    VARAN_RETURN_IF_ERROR(Verify(ca_pem, chain_pem, now, usage));
    VARAN_ASSIGN_OR_RETURN(CertificateInfo leaf, Inspect(chain_pem));
    for (const std::string& dns : leaf.dns_names) {
      if (dns == name) return absl::OkStatus();
    }
    return absl::UnauthenticatedError(
        absl::StrCat(who, "'s certificate (", leaf.common_name,
                     ") is issued by the pinned CA but not to \"", name, "\""));
  }
  if (offered.empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat(who, " sent no CA certificate to check against the ",
                     "pinned CA ", pin));
  }
  return absl::UnauthenticatedError(absl::StrCat(
      who, "'s CA is not the pinned one: it offered ",
      absl::StrJoin(offered, ", "),
      pins.size() == 1 ? ", the pin is " : ", the pins are ", pin));
}

absl::Status VerifyIssued(const std::string& ca_pem,
                          const std::string& chain_pem, const std::string& name,
                          const std::string& common_name, Usage usage,
                          absl::Time now) {
  VARAN_RETURN_IF_ERROR(Verify(ca_pem, chain_pem, now, usage));
  VARAN_ASSIGN_OR_RETURN(CertificateInfo leaf, Inspect(chain_pem));
  if (std::find(leaf.dns_names.begin(), leaf.dns_names.end(), name) ==
      leaf.dns_names.end()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the certificate (", leaf.common_name, ") is not a ", name, "'s"));
  }
  if (leaf.common_name != common_name) {
    return absl::UnauthenticatedError(absl::StrCat("the certificate names ",
                                                   name, " ", leaf.common_name,
                                                   ", not ", common_name));
  }
  return absl::OkStatus();
}

}  // namespace varan::pki
