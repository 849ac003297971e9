// Tests for core/fleet/periphery_ca.h with a real CA in memory: what the
// certificates core issues peripheries say, and which presented
// certificates core takes for which periphery (calls and renewals).
#include "core/fleet/periphery_ca.h"

#include <string>

#include "absl/time/clock.h"
#include "common/pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

pki::Authority NewCa(const std::string& name) {
  auto ca = pki::CreateAuthority(name, absl::Now(), absl::Hours(24));
  EXPECT_TRUE(ca.ok()) << ca.status();
  return ca.ok() ? *ca : pki::Authority{};
}

std::string NewRequest() {
  auto key = pki::NewPrivateKey();
  EXPECT_TRUE(key.ok());
  auto csr = pki::CreateRequest(*key, "whatever the periphery asks");
  EXPECT_TRUE(csr.ok());
  return *csr;
}

class PeripheryCaTest : public ::testing::Test {
 protected:
  pki::Authority authority_ = NewCa("cluster CA");
  PeripheryCa ca_{authority_, absl::Hours(6)};
};

TEST_F(PeripheryCaTest, TheCertificateNamesThePeripheryAndTheCaFollows) {
  const absl::Time before = absl::Now();
  auto chain = ca_.Issue("0123abcd", NewRequest());
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto info = pki::Inspect(*chain);
  ASSERT_TRUE(info.ok()) << info.status();
  // The issuer decides the names, not the request.
  EXPECT_EQ(info->common_name, "0123abcd");
  EXPECT_THAT(info->dns_names, ElementsAre(pki::kPeripheryName));
  EXPECT_TRUE(info->client_auth);
  EXPECT_TRUE(info->server_auth);
  EXPECT_FALSE(info->is_ca);
  EXPECT_GE(info->not_after, before + absl::Hours(6) - absl::Seconds(1));
  EXPECT_LE(info->not_after, absl::Now() + absl::Hours(6) + absl::Seconds(1));
  EXPECT_THAT(*chain, HasSubstr(authority_.cert_pem));
  EXPECT_TRUE(ca_.CheckPresented("0123abcd", *chain).ok());
  EXPECT_TRUE(pki::Verify(authority_.cert_pem, *chain, absl::Now(),
                          pki::Usage::kServerAuth)
                  .ok());
}

TEST_F(PeripheryCaTest, ACallMustPresentThatPeripherysCertificate) {
  auto chain = ca_.Issue("0123abcd", NewRequest());
  ASSERT_TRUE(chain.ok()) << chain.status();

  absl::Status none = ca_.CheckPresented("0123abcd", "");
  EXPECT_TRUE(absl::IsUnauthenticated(none));
  EXPECT_THAT(none.message(), HasSubstr("presented no certificate"));

  absl::Status other = ca_.CheckPresented("ffff0000", *chain);
  EXPECT_TRUE(absl::IsUnauthenticated(other));
  EXPECT_THAT(other.message(), HasSubstr("0123abcd, not ffff0000"));

  // The same id from another CA.
  PeripheryCa stranger(NewCa("another CA"), absl::Hours(6));
  auto foreign = stranger.Issue("0123abcd", NewRequest());
  ASSERT_TRUE(foreign.ok());
  absl::Status s = ca_.CheckPresented("0123abcd", *foreign);
  EXPECT_TRUE(absl::IsUnauthenticated(s));
  EXPECT_THAT(s.message(), HasSubstr("not issued by a CA in the bundle"));

  // Core's own certificate, from the same CA, is not a periphery's.
  pki::CertificateProfile core;
  core.common_name = "0123abcd";
  core.dns_names = {pki::kCoreName};
  core.client_auth = true;
  core.not_before = absl::Now() - absl::Minutes(1);
  core.not_after = absl::Now() + absl::Hours(1);
  auto core_cert = pki::SignRequest(authority_, NewRequest(), core);
  ASSERT_TRUE(core_cert.ok());
  s = ca_.CheckPresented("0123abcd", *core_cert);
  EXPECT_TRUE(absl::IsUnauthenticated(s));
  EXPECT_THAT(s.message(), HasSubstr("is not a varan-periphery's"));
}

TEST_F(PeripheryCaTest, AnExpiredCertificateServesOnlyToRenewIt) {
  pki::CertificateProfile expired;
  expired.common_name = "0123abcd";
  expired.dns_names = {pki::kPeripheryName};
  expired.client_auth = true;
  expired.server_auth = true;
  // (The CA itself is valid from an hour ago.)
  expired.not_before = absl::Now() - absl::Minutes(50);
  expired.not_after = absl::Now() - absl::Minutes(10);
  auto cert = pki::SignRequest(authority_, NewRequest(), expired);
  ASSERT_TRUE(cert.ok()) << cert.status();

  absl::Status call = ca_.CheckPresented("0123abcd", *cert);
  EXPECT_TRUE(absl::IsUnauthenticated(call));
  EXPECT_THAT(call.message(), HasSubstr("expired"));
  EXPECT_TRUE(ca_.CheckForRenewal("0123abcd", *cert).ok());
  // Everything else still holds for a renewal.
  EXPECT_TRUE(absl::IsUnauthenticated(ca_.CheckForRenewal("ffff0000", *cert)));
  EXPECT_TRUE(absl::IsUnauthenticated(ca_.CheckForRenewal("0123abcd", "")));
}

TEST_F(PeripheryCaTest, BadRequestsAreRefusedNamingTheCsr) {
  absl::Status missing = ca_.CheckRequest("");
  EXPECT_TRUE(absl::IsInvalidArgument(missing));
  EXPECT_THAT(missing.message(), HasSubstr("no certificate request"));
  absl::Status garbage = ca_.CheckRequest("-----BEGIN NONSENSE-----");
  EXPECT_TRUE(absl::IsInvalidArgument(garbage));
  EXPECT_THAT(garbage.message(), HasSubstr("csr: "));
  EXPECT_TRUE(ca_.CheckRequest(NewRequest()).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ca_.Issue("0123abcd", "x").status()));
}

// A rotation: certificates of both CAs are accepted, the issuing one's pin
// comes first, certificates of the other are told apart, and once the old
// CA is forgotten its certificates are refused.
TEST_F(PeripheryCaTest, DuringARotationBothCasAreTrustedAndThenOnlyTheNew) {
  auto old_chain = ca_.Issue("p1", NewRequest());
  ASSERT_TRUE(old_chain.ok()) << old_chain.status();
  const std::string old_pin = *pki::AuthorityPin(authority_.cert_pem);
  EXPECT_THAT(ca_.pins(), ElementsAre(old_pin));
  EXPECT_FALSE(ca_.IssuedByOther(*old_chain));

  const pki::Authority next = NewCa("next CA");
  const std::string new_pin = *pki::AuthorityPin(next.cert_pem);
  // STARTED: still issuing with the old one; the new one trusted.
  ca_.Trust(authority_, next.cert_pem);
  EXPECT_THAT(ca_.pins(), ElementsAre(old_pin, new_pin));
  // SWITCHED: issuing with the new one; the old one's still accepted, and
  // told apart.
  ca_.Trust(next, authority_.cert_pem);
  EXPECT_THAT(ca_.pins(), ElementsAre(new_pin, old_pin));
  auto new_chain = ca_.Issue("p1", NewRequest());
  ASSERT_TRUE(new_chain.ok()) << new_chain.status();
  EXPECT_THAT(*new_chain, HasSubstr(next.cert_pem));
  EXPECT_TRUE(ca_.CheckPresented("p1", *old_chain).ok());
  EXPECT_TRUE(ca_.CheckPresented("p1", *new_chain).ok());
  EXPECT_TRUE(ca_.IssuedByOther(*old_chain));
  EXPECT_FALSE(ca_.IssuedByOther(*new_chain));
  EXPECT_THAT(ca_.trusted_pem(), HasSubstr(authority_.cert_pem));
  // FINISH: the old one forgotten.
  ca_.Trust(next, "");
  EXPECT_THAT(ca_.pins(), ElementsAre(new_pin));
  EXPECT_EQ(ca_.CheckPresented("p1", *old_chain).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_TRUE(ca_.CheckPresented("p1", *new_chain).ok());
  EXPECT_FALSE(ca_.IssuedByOther(*old_chain));
}

}  // namespace
}  // namespace varan::core
