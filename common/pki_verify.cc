// Reading and verifying certificates: Inspect and Verify (see pki.h).
#include <arpa/inet.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/openssl_ptr.h"
#include "common/pki.h"
#include "common/pki_internal.h"
#include "common/status_macros.h"
#include "openssl/bn.h"
#include "openssl/err.h"
#include "openssl/x509.h"
#include "openssl/x509_vfy.h"
#include "openssl/x509v3.h"

namespace varan::pki {
namespace {

using internal::GetTime;
using internal::Internal;
using internal::X509Ptr;

// Frees the stack only: its certificates are borrowed.
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};

std::string CertTimeText(const ASN1_TIME* field) {
  absl::StatusOr<absl::Time> t = GetTime(field);
  return t.ok() ? internal::TimeText(*t) : std::string("(unreadable)");
}

}  // namespace

absl::StatusOr<CertificateInfo> Inspect(const std::string& cert_pem) {
  VARAN_ASSIGN_OR_RETURN(
      X509Ptr cert, internal::ParseCertificate(cert_pem, "the certificate"));
  CertificateInfo info;
  X509_NAME* subject = X509_get_subject_name(cert.get());
  const int cn = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn >= 0) {
    unsigned char* utf8 = nullptr;
    const int len = ASN1_STRING_to_UTF8(
        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn)));
    if (len < 0) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          "the certificate's common name is not valid text");
    }
    info.common_name.assign(reinterpret_cast<char*>(utf8),
                            static_cast<size_t>(len));
    OPENSSL_free(utf8);
  }
  OpenSslPtr<GENERAL_NAMES, GENERAL_NAMES_free> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(
          cert.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names.get());
       ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS) {
      const ASN1_STRING* s = gn->d.dNSName;
      info.dns_names.emplace_back(
          reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (gn->type == GEN_IPADD) {
      const ASN1_STRING* s = gn->d.iPAddress;
      const int len = ASN1_STRING_length(s);
      char text[INET6_ADDRSTRLEN] = {};
      if ((len == 4 || len == 16) &&
          inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s),
                    text, sizeof(text)) != nullptr) {
        info.ip_addresses.emplace_back(text);
      }
    }
  }
  VARAN_ASSIGN_OR_RETURN(info.not_before,
                         GetTime(X509_get0_notBefore(cert.get())));
  VARAN_ASSIGN_OR_RETURN(info.not_after,
                         GetTime(X509_get0_notAfter(cert.get())));
  const uint32_t flags = X509_get_extension_flags(cert.get());
  info.is_ca = (flags & EXFLAG_CA) != 0;
  const uint32_t xku = X509_get_extended_key_usage(cert.get());
  info.server_auth = (xku & XKU_SSL_SERVER) != 0;
  info.client_auth = (xku & XKU_SSL_CLIENT) != 0;
  OpenSslPtr<BIGNUM, BN_free> serial(
      ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
  if (serial == nullptr) return Internal("read the serial number");
  char* hex = BN_bn2hex(serial.get());
  if (hex == nullptr) return Internal("format the serial number");
  info.serial_hex = absl::AsciiStrToLower(hex);
  OPENSSL_free(hex);
  ERR_clear_error();  // leave no stale entry for the next OpenSSL caller
  return info;
}

absl::Status Verify(const std::string& ca_bundle_pem,
                    const std::string& cert_pem, absl::Time now, Usage usage) {
  VARAN_ASSIGN_OR_RETURN(
      std::vector<X509Ptr> cas,
      internal::ParseCertificates(ca_bundle_pem, "the CA bundle"));
  VARAN_ASSIGN_OR_RETURN(
      std::vector<X509Ptr> chain,
      internal::ParseCertificates(cert_pem, "the certificate"));
  if (now == absl::InfinitePast() || now == absl::InfiniteFuture()) {
    return absl::InvalidArgumentError("cannot verify at an infinite time");
  }
  OpenSslPtr<X509_STORE, X509_STORE_free> store(X509_STORE_new());
  std::unique_ptr<STACK_OF(X509), ChainFree> untrusted(sk_X509_new_null());
  OpenSslPtr<X509_STORE_CTX, X509_STORE_CTX_free> ctx(X509_STORE_CTX_new());
  if (store == nullptr || untrusted == nullptr || ctx == nullptr) {
    return Internal("set up verification");
  }
  for (const X509Ptr& ca : cas) {
    if (X509_STORE_add_cert(store.get(), ca.get()) != 1) {  // takes a ref
      return Internal("add a CA to the trust store");
    }
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (sk_X509_push(untrusted.get(), chain[i].get()) == 0) {  // borrowed
      return Internal("add an intermediate certificate");
    }
  }
  X509* leaf = chain.front().get();
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return Internal("set up verification");
  }
  const int purpose = usage == Usage::kServerAuth ? X509_PURPOSE_SSL_SERVER
                                                  : X509_PURPOSE_SSL_CLIENT;
  const char* usage_name = usage == Usage::kServerAuth
                               ? "server authentication"
                               : "client authentication";
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, absl::ToTimeT(now));
  if (X509_STORE_CTX_set_purpose(ctx.get(), purpose) != 1) {
    return Internal("set the verification purpose");
  }
  if (X509_verify_cert(ctx.get()) == 1) return absl::OkStatus();
  ERR_clear_error();

  const int err = X509_STORE_CTX_get_error(ctx.get());
  const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  X509* bad = X509_STORE_CTX_get_current_cert(ctx.get());
  const std::string which =
      depth == 0 ? "the certificate"
                 : absl::StrCat("its issuer (depth ", depth, ")");
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return absl::UnauthenticatedError(absl::StrCat(
          which, " expired at ", CertTimeText(X509_get0_notAfter(bad)),
          " (now ", internal::TimeText(now), ")"));
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return absl::UnauthenticatedError(
          absl::StrCat(which, " is not valid before ",
                       CertTimeText(X509_get0_notBefore(bad)), " (now ",
                       internal::TimeText(now), ")"));
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return absl::UnauthenticatedError(
          "the certificate was not issued by a CA in the bundle (unknown CA)");
    case X509_V_ERR_INVALID_PURPOSE:
      return absl::UnauthenticatedError(
          absl::StrCat(which, " is not for ", usage_name, " (wrong purpose)"));
    default:
      return absl::UnauthenticatedError(absl::StrCat(
          which, " does not verify: ", X509_verify_cert_error_string(err)));
  }
}

}  // namespace varan::pki
