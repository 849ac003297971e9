// How a periphery decides to trust core (periphery/core_trust.h): the pin
// it was given once is kept in its state directory and used on the next
// start, when the join token may be gone; conflicting or missing settings
// are refused; the pins core sends during a rotation of its CA replace it
// (CorePins).
#include "periphery/core_trust.h"

#include <string>

#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "periphery/core_pins.h"
#include "tests/unit/temp_dir.h"

namespace varan::periphery {
namespace {

using ::testing::ElementsAre;
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

const std::string kNext = "sha256:" + std::string(64, 'd');
const std::string kThird = "sha256:" + std::string(64, 'e');

// Core rotates its CA: the set core sends replaces the kept one, the pins
// it drops are remembered as retired, and both survive a restart.
TEST(CorePinsTest, CoreSendsThePinsOfARotationAndTheyAreKept) {
  varan::testing::UnitTempDir dir;
  auto pins = CorePins::Open(dir.path(), kPin);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_THAT((*pins)->Get(), ElementsAre(kPin));
  // START: both.
  EXPECT_EQ((*pins)->Replace({kPin, kNext}).value_or(false), true);
  // The same set again, in another order: nothing changes.
  EXPECT_EQ((*pins)->Replace({kNext, kPin}).value_or(true), false);
  // FINISH: the new one alone.
  EXPECT_EQ((*pins)->Replace({kNext}).value_or(false), true);
  EXPECT_THAT((*pins)->Get(), ElementsAre(kNext));
  EXPECT_EQ(ReadSecretFile(dir.path() + "/core-ca.pin").value_or(""), kNext);
  EXPECT_EQ(ReadSecretFile(dir.path() + "/core-ca.retired").value_or(""), kPin);
  // Nothing core sent that is empty or malformed changes anything.
  EXPECT_FALSE((*pins)->Replace({}).ok());
  EXPECT_FALSE((*pins)->Replace({kNext, "sha256:zz"}).ok());
  EXPECT_THAT((*pins)->Get(), ElementsAre(kNext));

  // Restarted with the join token that still names the retired CA: the
  // kept pin wins. With a pin never seen (another core): that one.
  auto again = CorePins::Open(dir.path(), kPin);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_THAT((*again)->Get(), ElementsAre(kNext));
  auto other = CorePins::Open(dir.path(), kThird);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_THAT((*other)->Get(), ElementsAre(kThird));
  EXPECT_EQ(ReadSecretFile(dir.path() + "/core-ca.pin").value_or(""), kThird);
}

TEST(CoreTrustTest, APinThatARotationRetiredDoesNotUndoIt) {
  varan::testing::UnitTempDir dir;
  ASSERT_TRUE(WriteSecretFile(dir.path() + "/core-ca.pin", kNext).ok());
  ASSERT_TRUE(WriteSecretFile(dir.path() + "/core-ca.retired", kPin).ok());
  CoreTrustInputs in;
  in.state_dir = dir.path();
  in.join_token_pin = kPin;
  auto trust = DecideCoreTrust(in);
  ASSERT_TRUE(trust.ok()) << trust.status();
  ASSERT_NE(trust->pins, nullptr);
  EXPECT_THAT(trust->pins->Get(), ElementsAre(kNext));
  EXPECT_THAT(trust->description, HasSubstr(kNext));
}

}  // namespace
}  // namespace varan::periphery
