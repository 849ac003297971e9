// Making keys, requests and certificates, and the CA pin (see pki.h).
#include "common/pki.h"

#include <arpa/inet.h>
#include <time.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/openssl_ptr.h"
#include "common/pki_internal.h"
#include "common/status_macros.h"
#include "openssl/bn.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/obj_mac.h"
#include "openssl/pem.h"
#include "openssl/x509.h"
#include "openssl/x509v3.h"

namespace varan::pki {
namespace internal {

std::string OpenSslError() {
  const unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) return "no further detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

absl::Status Internal(absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("cannot ", what, ": ", OpenSslError()));
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> GetTime(const ASN1_TIME* field) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(field, &tm) != 1) {
    return absl::InvalidArgumentError("certificate has a malformed validity");
  }
  return absl::FromTimeT(timegm(&tm));
}

namespace {

// Never prompts for a passphrase (OpenSSL's default callback reads the
// terminal): encrypted keys are refused instead.
int NoPassphrase(char*, int, int, void*) { return 0; }

BioPtr ReadBio(absl::string_view pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

}  // namespace

absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(absl::string_view pem,
                                                       absl::string_view what) {
  BioPtr bio = ReadBio(pem);
  std::vector<X509Ptr> out;
  while (X509* x =
             PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr)) {
    out.emplace_back(x);
  }
  ERR_clear_error();  // the end of the input reads as an error
  if (out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"));
  }
  return out;
}

absl::StatusOr<X509Ptr> ParseCertificate(absl::string_view pem,
                                         absl::string_view what) {
  VARAN_ASSIGN_OR_RETURN(std::vector<X509Ptr> certs,
                         ParseCertificates(pem, what));
  return std::move(certs.front());
}

absl::StatusOr<PkeyPtr> ParsePrivateKey(absl::string_view pem,
                                        absl::string_view what) {
  BioPtr bio = ReadBio(pem);
  EVP_PKEY* key =
      PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " holds no usable PEM private key (", OpenSslError(),
                     "; encrypted keys are not supported)"));
  }
  return PkeyPtr(key);
}

absl::Status CheckAuthority(X509* cert, EVP_PKEY* key,
                            absl::string_view cert_what,
                            absl::string_view key_what) {
  if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat(key_what, " does not belong to ", cert_what));
  }
  // EXFLAG_CA is basicConstraints CA:TRUE; X509_check_ca alone would also
  // accept old v1 certificates.
  if ((X509_get_extension_flags(cert) & EXFLAG_CA) == 0 ||
      X509_check_ca(cert) != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(cert_what,
                     " is not a CA (no basicConstraints CA:TRUE with "
                     "keyCertSign)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CertificatePem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return Internal("encode a certificate");
  }
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio.get(), &mem);
  return mem == nullptr ? std::string() : std::string(mem->data, mem->length);
}

}  // namespace internal

namespace {

using internal::BioPtr;
using internal::CertificatePem;
using internal::GetTime;
using internal::Internal;
using internal::OpenSslError;
using internal::PkeyPtr;
using internal::TimeText;
using internal::X509Ptr;

using Asn1StringPtr = OpenSslPtr<ASN1_STRING, ASN1_STRING_free>;
using ReqPtr = OpenSslPtr<X509_REQ, X509_REQ_free>;

// What a BIO holds, as a string. Private keys are written into BIO_s_secmem
// so the buffer is wiped when freed.
std::string BioContents(BIO* bio) {
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio, &mem);
  return mem == nullptr ? std::string() : std::string(mem->data, mem->length);
}

absl::StatusOr<std::string> PrivateKeyPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY").
  if (bio == nullptr ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return Internal("encode a private key");
  }
  return BioContents(bio.get());
}

absl::StatusOr<PkeyPtr> NewKey() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (key == nullptr) return Internal("generate a P-256 key");
  return key;
}

// Ed25519/Ed448 sign the message itself; every other key type signs a
// SHA-256 digest.
const EVP_MD* DigestFor(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_id(key);
  return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? nullptr
                                                        : EVP_sha256();
}

absl::Status SetCommonName(X509_NAME* name, const std::string& cn) {
  if (X509_NAME_add_entry_by_NID(
          name, NID_commonName, MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(cn.data()),
          static_cast<int>(cn.size()), -1, 0) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "common name \"", cn, "\" is not usable (", OpenSslError(), ")"));
  }
  return absl::OkStatus();
}

// A positive random 128-bit serial: RFC 5280 allows up to 20 octets, and
// randomness keeps serials unique without keeping a counter.
absl::Status SetRandomSerial(X509* cert) {
  OpenSslPtr<BIGNUM, BN_free> bn(BN_new());
  if (bn == nullptr) return Internal("allocate a serial");
  do {
    if (BN_rand(bn.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
      return Internal("draw a random serial");
    }
  } while (BN_is_zero(bn.get()));
  if (BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return Internal("set a serial");
  }
  return absl::OkStatus();
}

absl::Status SetTime(ASN1_TIME* field, absl::Time t, absl::string_view what) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture() ||
      ASN1_TIME_set(field, absl::ToTimeT(t)) == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", TimeText(t), " cannot be encoded"));
  }
  return absl::OkStatus();
}

// Adds an extension written in OpenSSL's configuration syntax. Only for
// constant values: names from callers go through AddNames, so a comma in a
// name cannot add an entry.
absl::Status AddExtension(X509V3_CTX* ctx, X509* cert, int nid,
                          const char* value) {
  OpenSslPtr<X509_EXTENSION, X509_EXTENSION_free> ext(
      X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return Internal(absl::StrCat("add extension ", OBJ_nid2sn(nid)));
  }
  return absl::OkStatus();
}

// A host name as a certificate can carry it: letters, digits, '-', '_',
// dots between labels, and a leading "*." wildcard.
bool IsDnsName(absl::string_view name) {
  if (absl::StartsWith(name, "*.")) name.remove_prefix(2);
  if (name.empty() || name.size() > 253) return false;
  if (name.front() == '.' || name.back() == '.') return false;
  char prev = 0;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.') {
      return false;
    }
    if (c == '.' && prev == '.') return false;
    prev = c;
  }
  return true;
}

absl::Status AddNames(X509* cert, const CertificateProfile& profile) {
  if (profile.dns_names.empty() && profile.ip_addresses.empty()) {
    return absl::OkStatus();
  }
  OpenSslPtr<GENERAL_NAMES, GENERAL_NAMES_free> names(
      sk_GENERAL_NAME_new_null());
  if (names == nullptr) return Internal("allocate subjectAltName");
  // Appends a name of `type` holding `value`.
  auto push = [&](int type, Asn1StringPtr value) -> bool {
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (gn == nullptr) return false;
    GENERAL_NAME_set0_value(gn, type, value.release());
    if (sk_GENERAL_NAME_push(names.get(), gn) == 0) {
      GENERAL_NAME_free(gn);
      return false;
    }
    return true;
  };
  for (const std::string& dns : profile.dns_names) {
    if (!IsDnsName(dns)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", dns, "\" is not a DNS name"));
    }
    Asn1StringPtr s(ASN1_IA5STRING_new());
    if (s == nullptr ||
        ASN1_STRING_set(s.get(), dns.data(), static_cast<int>(dns.size())) !=
            1 ||
        !push(GEN_DNS, std::move(s))) {
      return Internal("add a DNS name");
    }
  }
  for (const std::string& ip : profile.ip_addresses) {
    // inet_pton, unlike OpenSSL's a2i_IPADDRESS, refuses trailing junk
    // ("10.0.0.1x").
    unsigned char bytes[16];
    int len = 0;
    if (inet_pton(AF_INET, ip.c_str(), bytes) == 1) {
      len = 4;
    } else if (inet_pton(AF_INET6, ip.c_str(), bytes) == 1) {
      len = 16;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", ip, "\" is not an IPv4 or IPv6 address"));
    }
    Asn1StringPtr s(ASN1_OCTET_STRING_new());
    if (s == nullptr || ASN1_OCTET_STRING_set(s.get(), bytes, len) != 1 ||
        !push(GEN_IPADD, std::move(s))) {
      return Internal("add an IP address");
    }
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return Internal("add subjectAltName");
  }
  return absl::OkStatus();
}

absl::Status CheckRequesterKey(EVP_PKEY* key) {
  const int id = EVP_PKEY_get_id(key);
  if (id != EVP_PKEY_EC && id != EVP_PKEY_RSA && id != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(
        absl::StrCat("key type ", OBJ_nid2sn(id),
                     " is not supported (use EC, RSA or Ed25519)"));
  }
  if (EVP_PKEY_get_security_bits(key) < 112) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ", OBJ_nid2sn(id), " key is too weak (",
                     EVP_PKEY_get_security_bits(key),
                     "-bit security; at least 112 needed, e.g. RSA 2048)"));
  }
  return absl::OkStatus();
}

// The one place certificates for others are made: SignRequest and
// IssueCertificate differ only in where `subject_key` comes from.
absl::StatusOr<std::string> Issue(const Authority& ca, EVP_PKEY* subject_key,
                                  const CertificateProfile& profile) {
  if (profile.common_name.empty()) {
    return absl::InvalidArgumentError("the profile has no common name");
  }
  if (!profile.server_auth && !profile.client_auth) {
    return absl::InvalidArgumentError(
        "the profile allows neither server nor client authentication");
  }
  if (profile.not_after <= profile.not_before) {
    return absl::InvalidArgumentError(
        absl::StrCat("the profile's validity is empty (not_before ",
                     TimeText(profile.not_before), ", not_after ",
                     TimeText(profile.not_after), ")"));
  }
  VARAN_RETURN_IF_ERROR(CheckRequesterKey(subject_key));
  VARAN_ASSIGN_OR_RETURN(
      X509Ptr ca_cert,
      internal::ParseCertificate(ca.cert_pem, "the CA certificate"));
  VARAN_ASSIGN_OR_RETURN(PkeyPtr ca_key,
                         internal::ParsePrivateKey(ca.key_pem, "the CA key"));
  VARAN_RETURN_IF_ERROR(internal::CheckAuthority(
      ca_cert.get(), ca_key.get(), "the CA certificate", "the CA key"));
  VARAN_ASSIGN_OR_RETURN(absl::Time ca_not_after,
                         GetTime(X509_get0_notAfter(ca_cert.get())));
  if (profile.not_after > ca_not_after) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CA expires at ", TimeText(ca_not_after),
                     ", before the requested not_after ",
                     TimeText(profile.not_after), "; rotate the CA"));
  }

  X509Ptr cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      X509_set_pubkey(cert.get(), subject_key) != 1 ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get())) !=
          1) {
    return Internal("start a certificate");
  }
  VARAN_RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  VARAN_RETURN_IF_ERROR(
      SetCommonName(X509_get_subject_name(cert.get()), profile.common_name));
  VARAN_RETURN_IF_ERROR(SetTime(X509_getm_notBefore(cert.get()),
                                profile.not_before, "not_before"));
  VARAN_RETURN_IF_ERROR(
      SetTime(X509_getm_notAfter(cert.get()), profile.not_after, "not_after"));

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert.get(), cert.get(), nullptr, nullptr, 0);
  VARAN_RETURN_IF_ERROR(AddExtension(&ctx, cert.get(), NID_basic_constraints,
                                     "critical,CA:FALSE"));
  VARAN_RETURN_IF_ERROR(AddExtension(&ctx, cert.get(), NID_key_usage,
                                     "critical,digitalSignature"));
  const char* eku = profile.server_auth && profile.client_auth
                        ? "serverAuth,clientAuth"
                    : profile.server_auth ? "serverAuth"
                                          : "clientAuth";
  VARAN_RETURN_IF_ERROR(AddExtension(&ctx, cert.get(), NID_ext_key_usage, eku));
  VARAN_RETURN_IF_ERROR(
      AddExtension(&ctx, cert.get(), NID_subject_key_identifier, "hash"));
  // keyid:always: verifiers pick among CAs of the same name (old and new
  // during rotation) by this key identifier.
  VARAN_RETURN_IF_ERROR(AddExtension(
      &ctx, cert.get(), NID_authority_key_identifier, "keyid:always"));
  VARAN_RETURN_IF_ERROR(AddNames(cert.get(), profile));

  if (X509_sign(cert.get(), ca_key.get(), DigestFor(ca_key.get())) <= 0) {
    return Internal("sign the certificate");
  }
  return CertificatePem(cert.get());
}

}  // namespace

absl::StatusOr<std::string> NewPrivateKey() {
  VARAN_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  return PrivateKeyPem(key.get());
}

absl::StatusOr<Authority> CreateAuthority(const std::string& common_name,
                                          absl::Time now,
                                          absl::Duration validity) {
  if (common_name.empty()) {
    return absl::InvalidArgumentError("the CA needs a common name");
  }
  if (validity <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the CA's validity must be positive, not ",
                     absl::FormatDuration(validity)));
  }
  VARAN_ASSIGN_OR_RETURN(PkeyPtr key, NewKey());
  X509Ptr cert(X509_new());
  if (cert == nullptr || X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      X509_set_pubkey(cert.get(), key.get()) != 1) {
    return Internal("start a CA certificate");
  }
  VARAN_RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  VARAN_RETURN_IF_ERROR(
      SetCommonName(X509_get_subject_name(cert.get()), common_name));
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) !=
      1) {
    return Internal("name the CA's issuer");
  }
  // An hour back: a peer whose clock lags a little must not see the
  // certificates of a CA created a moment ago as not yet valid.
  VARAN_RETURN_IF_ERROR(SetTime(X509_getm_notBefore(cert.get()),
                                now - absl::Hours(1), "not_before"));
  VARAN_RETURN_IF_ERROR(
      SetTime(X509_getm_notAfter(cert.get()), now + validity, "not_after"));

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  VARAN_RETURN_IF_ERROR(AddExtension(&ctx, cert.get(), NID_basic_constraints,
                                     "critical,CA:TRUE"));
  VARAN_RETURN_IF_ERROR(AddExtension(&ctx, cert.get(), NID_key_usage,
                                     "critical,keyCertSign,cRLSign"));
  VARAN_RETURN_IF_ERROR(
      AddExtension(&ctx, cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) {
    return Internal("sign the CA certificate");
  }
  Authority out;
  VARAN_ASSIGN_OR_RETURN(out.cert_pem, CertificatePem(cert.get()));
  VARAN_ASSIGN_OR_RETURN(out.key_pem, PrivateKeyPem(key.get()));
  return out;
}

absl::StatusOr<std::string> CreateRequest(const std::string& key_pem,
                                          const std::string& common_name) {
  VARAN_ASSIGN_OR_RETURN(PkeyPtr key,
                         internal::ParsePrivateKey(key_pem, "the key"));
  ReqPtr req(X509_REQ_new());
  if (req == nullptr || X509_REQ_set_version(req.get(), 0) != 1 ||
      X509_REQ_set_pubkey(req.get(), key.get()) != 1) {
    return Internal("start a certificate request");
  }
  if (!common_name.empty()) {
    VARAN_RETURN_IF_ERROR(
        SetCommonName(X509_REQ_get_subject_name(req.get()), common_name));
  }
  if (X509_REQ_sign(req.get(), key.get(), DigestFor(key.get())) <= 0) {
    return Internal("sign the certificate request");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509_REQ(bio.get(), req.get()) != 1) {
    return Internal("encode the certificate request");
  }
  return BioContents(bio.get());
}

namespace {

// The request in `csr_pem`, its signature checked with the key it carries.
absl::StatusOr<ReqPtr> ReadRequest(const std::string& csr_pem) {
  BioPtr bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
  ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (req == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the CSR holds no PEM certificate request (\"-----BEGIN CERTIFICATE "
        "REQUEST-----\")");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());  // owned by req
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the CSR's public key does not parse");
  }
  // Proof of possession: only the holder of the private key could have
  // signed the request with it.
  if (X509_REQ_verify(req.get(), key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the CSR's signature does not verify with its public key (tampered "
        "or forged request)");
  }
  return req;
}

}  // namespace

absl::Status CheckRequest(const std::string& csr_pem) {
  VARAN_ASSIGN_OR_RETURN(ReqPtr req, ReadRequest(csr_pem));
  return CheckRequesterKey(X509_REQ_get0_pubkey(req.get()));
}

absl::StatusOr<std::string> SignRequest(const Authority& ca,
                                        const std::string& csr_pem,
                                        const CertificateProfile& profile) {
  VARAN_ASSIGN_OR_RETURN(ReqPtr req, ReadRequest(csr_pem));
  return Issue(ca, X509_REQ_get0_pubkey(req.get()), profile);
}

absl::StatusOr<std::string> IssueCertificate(
    const Authority& ca, const std::string& key_pem,
    const CertificateProfile& profile) {
  VARAN_ASSIGN_OR_RETURN(PkeyPtr key,
                         internal::ParsePrivateKey(key_pem, "the key"));
  return Issue(ca, key.get(), profile);
}

}  // namespace varan::pki
