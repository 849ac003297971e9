// Helpers for the common/pki.h tests: fixed times, profiles, and OpenSSL
// access to what the API does not expose (the key inside a certificate).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"
#include "common/pki.h"
#include "gtest/gtest.h"
#include "openssl/bio.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace varan::pki::pki_testing {

// 2026-01-01 00:00:00 UTC: tests use fixed times, not the wall clock.
inline const absl::Time kNow = absl::FromUnixSeconds(1767225600);

// As std::string, so gMock prints it as text on failure.
inline std::string Message(const absl::Status& s) {
  return std::string(s.message());
}

inline BioPtr ReadBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

inline X509Ptr ParseCert(const std::string& pem) {
  auto bio = ReadBio(pem);
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

inline PkeyPtr ParseKey(const std::string& pem) {
  auto bio = ReadBio(pem);
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

// A one-hour profile starting at `from`.
inline CertificateProfile Profile(const std::string& cn, bool server,
                                  bool client, absl::Time from = kNow) {
  CertificateProfile p;
  p.common_name = cn;
  p.server_auth = server;
  p.client_auth = client;
  p.not_before = from;
  p.not_after = from + absl::Hours(1);
  return p;
}

// A CA valid for a year from kNow (less an hour).
inline Authority NewCa(const std::string& cn = "varan cluster CA",
                       absl::Time now = kNow) {
  absl::StatusOr<Authority> ca =
      CreateAuthority(cn, now, absl::Hours(24 * 365));
  EXPECT_TRUE(ca.ok()) << ca.status();
  return ca.ok() ? *ca : Authority{};
}

}  // namespace varan::pki::pki_testing
