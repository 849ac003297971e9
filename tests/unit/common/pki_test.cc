// Tests for common/pki.h: the CA, issuing (only the issuer chooses names
// and usages), verification at a given time, and the pin kubeadm-style
// join tokens carry.
#include "common/pki.h"

#include <stdio.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/openssl_ptr.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "openssl/x509v3.h"
#include "tests/unit/common/pki_test_util.h"

namespace varan::pki {
namespace {

using pki_testing::kNow;
using pki_testing::Message;
using pki_testing::NewCa;
using pki_testing::ParseCert;
using pki_testing::ParseKey;
using pki_testing::Profile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using ::varan::PkeyPtr;

using ReqPtr = OpenSslPtr<X509_REQ, X509_REQ_free>;

std::string ReqPem(X509_REQ* req) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_X509_REQ(bio.get(), req), 1);
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio.get(), &mem);
  return std::string(mem->data, mem->length);
}

ReqPtr ParseReq(const std::string& pem) {
  auto bio = pki_testing::ReadBio(pem);
  return ReqPtr(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
}

// True when the certificate in `cert_pem` carries the public half of
// `key_pem`.
bool CertHoldsKey(const std::string& cert_pem, const std::string& key_pem) {
  auto cert = ParseCert(cert_pem);
  auto key = ParseKey(key_pem);
  return cert && key && X509_check_private_key(cert.get(), key.get()) == 1;
}

// Whether `nid` is present in the certificate and marked critical (-1:
// absent).
int Critical(const std::string& cert_pem, int nid) {
  auto cert = ParseCert(cert_pem);
  const int i = X509_get_ext_by_NID(cert.get(), nid, -1);
  if (i < 0) return -1;
  return X509_EXTENSION_get_critical(X509_get_ext(cert.get(), i));
}

std::string MustIssue(const Authority& ca, const std::string& key,
                      const CertificateProfile& p) {
  absl::StatusOr<std::string> cert = IssueCertificate(ca, key, p);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return cert.ok() ? *cert : "";
}

std::string MustKey() {
  absl::StatusOr<std::string> key = NewPrivateKey();
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *key : "";
}

TEST(PkiTest, NewPrivateKeyIsFreshPkcs8P256) {
  const std::string a = MustKey(), b = MustKey();
  EXPECT_THAT(a, StartsWith("-----BEGIN PRIVATE KEY-----"));
  EXPECT_NE(a, b);
  PkeyPtr key = ParseKey(a);
  ASSERT_NE(key, nullptr);
  char group[64] = {};
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(key.get(), group, sizeof(group), &len), 1);
  EXPECT_STREQ(group, "prime256v1");
}

TEST(PkiTest, AuthorityIsSelfSignedCaBackdatedAnHour) {
  const Authority ca = NewCa("test CA");
  absl::StatusOr<CertificateInfo> info = Inspect(ca.cert_pem);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "test CA");
  EXPECT_TRUE(info->is_ca);
  EXPECT_EQ(info->not_before, kNow - absl::Hours(1));
  EXPECT_EQ(info->not_after, kNow + absl::Hours(24 * 365));
  EXPECT_TRUE(CertHoldsKey(ca.cert_pem, ca.key_pem));
  EXPECT_EQ(Critical(ca.cert_pem, NID_basic_constraints), 1);
  EXPECT_EQ(Critical(ca.cert_pem, NID_key_usage), 1);
  EXPECT_EQ(Critical(ca.cert_pem, NID_subject_key_identifier), 0);
  auto cert = ParseCert(ca.cert_pem);
  EXPECT_EQ(X509_get_key_usage(cert.get()), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
  EXPECT_EQ(X509_check_issued(cert.get(), cert.get()), X509_V_OK);
  // A random serial up to 128 bits: two CAs never share one.
  EXPECT_LE(info->serial_hex.size(), 32u);
  EXPECT_NE(info->serial_hex, Inspect(NewCa("test CA").cert_pem)->serial_hex);
}

TEST(PkiTest, IssuedServerCertificateVerifiesAndCarriesTheProfile) {
  const Authority ca = NewCa();
  CertificateProfile p = Profile("core", /*server=*/true, /*client=*/false);
  p.dns_names = {"core.varan.test", "localhost"};
  p.ip_addresses = {"10.0.0.1", "::1", "2001:DB8::7"};
  const std::string key = MustKey();
  const std::string cert = MustIssue(ca, key, p);

  EXPECT_TRUE(Verify(ca.cert_pem, cert, kNow, Usage::kServerAuth).ok());
  absl::StatusOr<CertificateInfo> info = Inspect(cert);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "core");
  EXPECT_THAT(info->dns_names, ElementsAre("core.varan.test", "localhost"));
  EXPECT_THAT(info->ip_addresses,
              ElementsAre("10.0.0.1", "::1", "2001:db8::7"));
  EXPECT_EQ(info->not_before, p.not_before);
  EXPECT_EQ(info->not_after, p.not_after);
  EXPECT_FALSE(info->is_ca);
  EXPECT_TRUE(info->server_auth);
  EXPECT_FALSE(info->client_auth);
  EXPECT_TRUE(CertHoldsKey(cert, key));
  EXPECT_EQ(Critical(cert, NID_basic_constraints), 1);
  EXPECT_EQ(Critical(cert, NID_key_usage), 1);
  auto x = ParseCert(cert);
  EXPECT_EQ(X509_get_key_usage(x.get()), KU_DIGITAL_SIGNATURE);
  // The authority key identifier is what tells CAs of one name apart.
  auto ca_x = ParseCert(ca.cert_pem);
  ASSERT_NE(X509_get0_authority_key_id(x.get()), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x.get()),
                                  X509_get0_subject_key_id(ca_x.get())),
            0);
}

TEST(PkiTest, SignedRequestGetsTheRequestersKey) {
  const Authority ca = NewCa();
  const std::string key = MustKey();
  absl::StatusOr<std::string> csr = CreateRequest(key, "periphery-1");
  ASSERT_TRUE(csr.ok()) << csr.status();
  absl::StatusOr<std::string> cert =
      SignRequest(ca, *csr, Profile("periphery-1", false, true));
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_TRUE(CertHoldsKey(*cert, key));
  EXPECT_TRUE(Verify(ca.cert_pem, *cert, kNow, Usage::kClientAuth).ok());
}

TEST(PkiTest, UsageIsChecked) {
  const Authority ca = NewCa();
  const std::string key = MustKey();
  const std::string client = MustIssue(ca, key, Profile("p", false, true));
  const std::string server = MustIssue(ca, key, Profile("c", true, false));
  const std::string both = MustIssue(ca, key, Profile("b", true, true));

  absl::Status s = Verify(ca.cert_pem, client, kNow, Usage::kServerAuth);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(Message(s), HasSubstr("not for server authentication"));
  s = Verify(ca.cert_pem, server, kNow, Usage::kClientAuth);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(Message(s), HasSubstr("not for client authentication"));
  EXPECT_TRUE(Verify(ca.cert_pem, both, kNow, Usage::kServerAuth).ok());
  EXPECT_TRUE(Verify(ca.cert_pem, both, kNow, Usage::kClientAuth).ok());
}

TEST(PkiTest, ForeignCaIsRefusedAndABundleOfBothAccepted) {
  // The same name on purpose: during a rotation old and new CA share it.
  const Authority a = NewCa("varan cluster CA");
  const Authority b = NewCa("varan cluster CA");
  const std::string cert = MustIssue(a, MustKey(), Profile("c", true, false));

  absl::Status s = Verify(b.cert_pem, cert, kNow, Usage::kServerAuth);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(Message(s), HasSubstr("unknown CA"));
  EXPECT_TRUE(
      Verify(a.cert_pem + b.cert_pem, cert, kNow, Usage::kServerAuth).ok());
  EXPECT_TRUE(
      Verify(b.cert_pem + a.cert_pem, cert, kNow, Usage::kServerAuth).ok());
}

TEST(PkiTest, VerifyHonoursValidityAtTheGivenTime) {
  const Authority ca = NewCa();
  const std::string cert = MustIssue(ca, MustKey(), Profile("c", true, false));

  EXPECT_TRUE(
      Verify(ca.cert_pem, cert, kNow + absl::Minutes(30), Usage::kServerAuth)
          .ok());
  absl::Status s =
      Verify(ca.cert_pem, cert, kNow + absl::Hours(2), Usage::kServerAuth);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(Message(s), HasSubstr("expired"));
  s = Verify(ca.cert_pem, cert, kNow - absl::Minutes(1), Usage::kServerAuth);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(Message(s), HasSubstr("not valid before"));
}

TEST(PkiTest, RequestWithSwappedKeyIsRefused) {
  const Authority ca = NewCa();
  absl::StatusOr<std::string> csr = CreateRequest(MustKey(), "p");
  ASSERT_TRUE(csr.ok()) << csr.status();
  // Replace the key after signing, as someone who wants a certificate for a
  // key they do not hold would.
  ReqPtr req = ParseReq(*csr);
  PkeyPtr other = ParseKey(MustKey());
  ASSERT_EQ(X509_REQ_set_pubkey(req.get(), other.get()), 1);
  const std::string tampered = ReqPem(req.get());
  ASSERT_EQ(
      EVP_PKEY_eq(X509_REQ_get0_pubkey(ParseReq(tampered).get()), other.get()),
      1);

  absl::StatusOr<std::string> cert =
      SignRequest(ca, tampered, Profile("p", false, true));
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument)
      << cert.status();
  EXPECT_THAT(Message(cert.status()), HasSubstr("signature"));
}

TEST(PkiTest, RequestersWishesAreIgnored) {
  const Authority ca = NewCa();
  const std::string key_pem = MustKey();
  PkeyPtr key = ParseKey(key_pem);
  // A request asking for another name, SANs and a CA certificate.
  ReqPtr req(X509_REQ_new());
  X509_NAME_add_entry_by_txt(
      X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("admin"), -1, -1, 0);
  ASSERT_EQ(X509_REQ_set_pubkey(req.get(), key.get()), 1);
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  sk_X509_EXTENSION_push(
      exts, X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name,
                                "DNS:evil.example,IP:6.6.6.6"));
  sk_X509_EXTENSION_push(
      exts, X509V3_EXT_conf_nid(nullptr, nullptr, NID_basic_constraints,
                                "critical,CA:TRUE"));
  ASSERT_EQ(X509_REQ_add_extensions(req.get(), exts), 1);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  ASSERT_GT(X509_REQ_sign(req.get(), key.get(), EVP_sha256()), 0);

  CertificateProfile p = Profile("periphery-7", false, true);
  p.dns_names = {"p7.varan.test"};
  absl::StatusOr<std::string> cert = SignRequest(ca, ReqPem(req.get()), p);
  ASSERT_TRUE(cert.ok()) << cert.status();
  absl::StatusOr<CertificateInfo> info = Inspect(*cert);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->common_name, "periphery-7");
  EXPECT_THAT(info->dns_names, ElementsAre("p7.varan.test"));
  EXPECT_THAT(info->ip_addresses, ::testing::IsEmpty());
  EXPECT_FALSE(info->is_ca);
  EXPECT_FALSE(info->server_auth);
}

TEST(PkiTest, WeakRequestKeyIsRefused) {
  PkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  ASSERT_NE(rsa, nullptr);
  ReqPtr req(X509_REQ_new());
  ASSERT_EQ(X509_REQ_set_pubkey(req.get(), rsa.get()), 1);
  ASSERT_GT(X509_REQ_sign(req.get(), rsa.get(), EVP_sha256()), 0);
  absl::StatusOr<std::string> cert =
      SignRequest(NewCa(), ReqPem(req.get()), Profile("p", false, true));
  EXPECT_EQ(cert.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(cert.status()), HasSubstr("too weak"));
}

TEST(PkiTest, BadProfilesAreRefused) {
  const Authority ca = NewCa();
  const std::string key = MustKey();
  struct Case {
    const char* name;
    CertificateProfile profile;
    absl::StatusCode code;
    const char* message;
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, absl::StatusCode code, const char* message,
                 auto edit) {
    CertificateProfile p = Profile("c", true, false);
    edit(p);
    cases.push_back({name, p, code, message});
  };
  using C = absl::StatusCode;
  add("no usage", C::kInvalidArgument, "neither server nor client",
      [](auto& p) { p.server_auth = false; });
  add("empty validity", C::kInvalidArgument, "validity is empty",
      [](auto& p) { p.not_after = p.not_before; });
  add("no name", C::kInvalidArgument, "no common name",
      [](auto& p) { p.common_name.clear(); });
  add("outlives the CA", C::kFailedPrecondition, "rotate the CA",
      [](auto& p) { p.not_after = kNow + absl::Hours(24 * 400); });
  add("bad IPv4", C::kInvalidArgument, "\"10.0.0.256\"",
      [](auto& p) { p.ip_addresses = {"10.0.0.256"}; });
  add("IPv4 with junk", C::kInvalidArgument, "\"10.0.0.1x\"",
      [](auto& p) { p.ip_addresses = {"10.0.0.1x"}; });
  add("bad IPv6", C::kInvalidArgument, "\"::1::2\"", [](auto& p) {
    p.ip_addresses = {"::1", "::1::2"};
  });
  add("bad DNS name", C::kInvalidArgument, "\"a,DNS:b\"",
      [](auto& p) { p.dns_names = {"a,DNS:b"}; });
  for (const Case& c : cases) {
    absl::StatusOr<std::string> cert = IssueCertificate(ca, key, c.profile);
    EXPECT_EQ(cert.status().code(), c.code) << c.name << ": " << cert.status();
    EXPECT_THAT(Message(cert.status()), HasSubstr(c.message)) << c.name;
  }
}

TEST(PkiTest, MalformedInputsNameTheProblem) {
  const Authority ca = NewCa();
  const Authority other = NewCa();
  const std::string key = MustKey();
  const std::string cert = MustIssue(ca, key, Profile("c", true, false));
  const std::string csr = CreateRequest(key, "c").value();
  const std::string junk = "-----BEGIN CERTIFICATE-----\nnot base64\n";
  const auto p = Profile("c", true, false);
  struct Case {
    const char* name;
    absl::Status status;
    absl::StatusCode code;
    const char* message;
  };
  using C = absl::StatusCode;
  const Case cases[] = {
      {"Inspect", Inspect(junk).status(), C::kInvalidArgument,
       "the certificate holds no PEM certificate"},
      {"Verify bundle", Verify(junk, cert, kNow, Usage::kServerAuth),
       C::kInvalidArgument, "the CA bundle holds no PEM certificate"},
      {"Verify cert", Verify(ca.cert_pem, "", kNow, Usage::kServerAuth),
       C::kInvalidArgument, "the certificate holds no PEM certificate"},
      {"CSR", SignRequest(ca, cert, p).status(), C::kInvalidArgument,
       "the CSR holds no PEM certificate request"},
      {"CA cert", SignRequest({junk, ca.key_pem}, csr, p).status(),
       C::kInvalidArgument, "the CA certificate holds no PEM certificate"},
      {"CA key", SignRequest({ca.cert_pem, "x"}, csr, p).status(),
       C::kInvalidArgument, "the CA key holds no usable PEM private key"},
      {"CA key mismatch",
       IssueCertificate({ca.cert_pem, other.key_pem}, key, p).status(),
       C::kFailedPrecondition,
       "the CA key does not belong to the CA certificate"},
      {"leaf as CA", IssueCertificate({cert, key}, key, p).status(),
       C::kFailedPrecondition, "the CA certificate is not a CA"},
      {"key", IssueCertificate(ca, cert, p).status(), C::kInvalidArgument,
       "the key holds no usable PEM private key"},
      {"request key", CreateRequest("", "c").status(), C::kInvalidArgument,
       "the key holds no usable PEM private key"},
      {"pin", AuthorityPin(key).status(), C::kInvalidArgument,
       "the CA certificate holds no PEM certificate"},
  };
  // The base64 body of the keys: must never appear in a message.
  const std::string ca_key_body = ca.key_pem.substr(28, 40);
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), c.code) << c.name << ": " << c.status;
    EXPECT_THAT(Message(c.status), HasSubstr(c.message)) << c.name;
    EXPECT_THAT(Message(c.status), Not(HasSubstr(ca_key_body))) << c.name;
  }
}

// Runs a shell pipeline and returns its standard output.
std::string RunShell(const std::string& command) {
  FILE* f = popen(command.c_str(), "r");
  if (f == nullptr) return "";
  std::string out;
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(f), 0) << command;
  return out;
}

TEST(PkiTest, PinMatchesKubeadmsOpensslRecipe) {
  char tmpl[] = "/tmp/varan-pki-pin-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const Authority ca = NewCa();
  { std::ofstream(dir + "/ca.crt") << ca.cert_pem; }
  const std::string out = RunShell(absl::StrCat(
      "/usr/bin/openssl x509 -pubkey -noout -in ", dir,
      "/ca.crt | /usr/bin/openssl pkey -pubin -outform der | sha256sum"));
  std::filesystem::remove_all(dir);
  ASSERT_GE(out.size(), 64u) << out;

  absl::StatusOr<std::string> pin = AuthorityPin(ca.cert_pem);
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ(*pin, "sha256:" + out.substr(0, 64));
}

TEST(PkiTest, PinTellsAuthoritiesApart) {
  const Authority a = NewCa(), b = NewCa();
  absl::StatusOr<std::string> pin_a = AuthorityPin(a.cert_pem);
  absl::StatusOr<std::string> pin_b = AuthorityPin(b.cert_pem);
  ASSERT_TRUE(pin_a.ok() && pin_b.ok());
  EXPECT_NE(*pin_a, *pin_b);
  EXPECT_THAT(*pin_a, StartsWith("sha256:"));
  EXPECT_EQ(pin_a->size(), 7u + 64u);
}

}  // namespace
}  // namespace varan::pki
