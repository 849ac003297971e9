// How a periphery decides to trust core (periphery/core_trust.h): the pin
// it was given once is kept in its state directory and used on the next
// start, when the join token may be gone; conflicting or missing settings
// are refused.
#include "periphery/core_trust.h"

#include <string>

#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/temp_dir.h"

namespace varan::periphery {
namespace {

using ::testing::HasSubstr;

const std::string kPin = "sha256:" + std::string(64, 'c');

TEST(CoreTrustTest, AJoinTokensPinIsKeptForTheNextStart) {
  varan::testing::UnitTempDir dir;
  CoreTrustInputs first;
  first.state_dir = dir.path();
  first.join_token_pin = "SHA256:" + std::string(64, 'C');  // either case
  auto trust = DecideCoreTrust(first);
  ASSERT_TRUE(trust.ok()) << trust.status();
  EXPECT_TRUE(trust->security.tls);
  EXPECT_THAT(trust->description, HasSubstr(kPin));

  // Registered; the join token is gone.
  CoreTrustInputs later;
  later.state_dir = dir.path();
  trust = DecideCoreTrust(later);
  ASSERT_TRUE(trust.ok()) << trust.status();
  EXPECT_THAT(trust->description, HasSubstr(kPin));
}

TEST(CoreTrustTest, NothingToVerifyCoreByIsRefused) {
  varan::testing::UnitTempDir dir;
  CoreTrustInputs in;
  in.state_dir = dir.path();
  auto trust = DecideCoreTrust(in);
  ASSERT_FALSE(trust.ok());
  EXPECT_THAT(std::string(trust.status().message()),
              HasSubstr("no way to verify core"));
}

TEST(CoreTrustTest, PlaintextWithAPinIsRefusedAndAloneIsPlaintext) {
  varan::testing::UnitTempDir dir;
  CoreTrustInputs in;
  in.state_dir = dir.path();
  in.insecure_plaintext = true;
  auto plain = DecideCoreTrust(in);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->security.tls);
  in.ca_hash = kPin;
  auto both = DecideCoreTrust(in);
  ASSERT_FALSE(both.ok());
  EXPECT_THAT(std::string(both.status().message()),
              HasSubstr("--insecure-plaintext contradicts"));
}

TEST(CoreTrustTest, ACorruptSavedPinNamesItsFile) {
  varan::testing::UnitTempDir dir;
  ASSERT_TRUE(WriteSecretFile(dir.path() + "/core-ca.pin", "sha256:zz").ok());
  CoreTrustInputs in;
  in.state_dir = dir.path();
  auto trust = DecideCoreTrust(in);
  ASSERT_FALSE(trust.ok());
  EXPECT_THAT(std::string(trust.status().message()),
              HasSubstr("core-ca.pin: expected a CA pin"));
}

}  // namespace
}  // namespace varan::periphery
