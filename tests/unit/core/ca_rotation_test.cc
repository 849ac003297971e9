// Tests for core/daemon/ca_rotation.h on a real data directory: the steps
// of a rotation of the built-in cluster CA and the files each leaves, the
// phase found again after a restart, a switch a crash interrupted
// completed, and the steps refused.
#include "core/daemon/ca_rotation.h"

#include <filesystem>
#include <string>

#include "absl/time/clock.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/ca_files.h"
#include "tests/unit/temp_dir.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using varan::v1::CA_ROTATION_PHASE_STARTED;
using varan::v1::CA_ROTATION_PHASE_STEADY;
using varan::v1::CA_ROTATION_PHASE_SWITCHED;
using varan::v1::CA_ROTATION_STEP_ABORT;
using varan::v1::CA_ROTATION_STEP_FINISH;
using varan::v1::CA_ROTATION_STEP_START;
using varan::v1::CA_ROTATION_STEP_SWITCH;

using testing::PinOf;
using testing::Slurp;

class CaRotationTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  // Core (re)started on the data directory: its CA and the rotation.
  void Start() {
    rotation_.reset();
    ASSERT_TRUE(CaRotation::Recover(pki()).ok());
    auto tls = BuiltinTls::Create(dir_.path(), {}, absl::Now());
    ASSERT_TRUE(tls.ok()) << tls.status();
    tls_ = *std::move(tls);
    peripheries_ =
        std::make_unique<PeripheryCa>(tls_->authority(), absl::Hours(1));
    CaRotation::Parts parts;
    parts.tls = tls_.get();
    parts.peripheries = peripheries_.get();
    parts.changed = [this] { ++changed_; };
    auto rotation = CaRotation::Open(pki(), std::move(parts));
    ASSERT_TRUE(rotation.ok()) << rotation.status();
    rotation_ = *std::move(rotation);
  }
  std::string pki() const { return dir_.path() + "/pki"; }
  absl::StatusOr<varan::v1::ClusterCa> Step(varan::v1::CaRotationStep step) {
    return rotation_->Step(step, /*force=*/false, absl::Now());
  }

  varan::testing::UnitTempDir dir_;
  std::unique_ptr<BuiltinTls> tls_;
  std::unique_ptr<PeripheryCa> peripheries_;
  std::unique_ptr<CaRotation> rotation_;
  int changed_ = 0;
};

TEST_F(CaRotationTest, StartSwitchFinishLeaveTheNewCaAlone) {
  const std::string old_pin = tls_->pin();
  EXPECT_EQ(rotation_->State().phase(), CA_ROTATION_PHASE_STEADY);

  auto started = Step(CA_ROTATION_STEP_START);
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string new_pin = started->other_pin();
  EXPECT_EQ(started->phase(), CA_ROTATION_PHASE_STARTED);
  EXPECT_EQ(started->pin(), old_pin);
  EXPECT_EQ(PinOf(pki() + "/next/ca.crt"), new_pin);
  EXPECT_THAT(peripheries_->pins(), ElementsAre(old_pin, new_pin));
  EXPECT_EQ(tls_->pin(), old_pin);  // core still serves the old one

  auto switched = Step(CA_ROTATION_STEP_SWITCH);
  ASSERT_TRUE(switched.ok()) << switched.status();
  EXPECT_EQ(switched->phase(), CA_ROTATION_PHASE_SWITCHED);
  EXPECT_EQ(switched->pin(), new_pin);
  EXPECT_EQ(switched->other_pin(), old_pin);
  EXPECT_EQ(PinOf(pki() + "/ca.crt"), new_pin);
  EXPECT_EQ(PinOf(pki() + "/previous/ca.crt"), old_pin);
  EXPECT_FALSE(std::filesystem::exists(pki() + "/next"));
  EXPECT_EQ(tls_->pin(), new_pin);
  // Core's serving certificate is the new CA's.
  EXPECT_TRUE(pki::Verify(Slurp(pki() + "/ca.crt"), Slurp(pki() + "/core.crt"),
                          absl::Now(), pki::Usage::kServerAuth)
                  .ok());
  EXPECT_THAT(peripheries_->pins(), ElementsAre(new_pin, old_pin));

  auto finished = Step(CA_ROTATION_STEP_FINISH);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->phase(), CA_ROTATION_PHASE_STEADY);
  EXPECT_THAT(finished->trusted_pins(), ElementsAre(new_pin));
  EXPECT_FALSE(std::filesystem::exists(pki() + "/previous"));
  EXPECT_THAT(peripheries_->pins(), ElementsAre(new_pin));
  EXPECT_EQ(changed_, 3);

  // A restart finds the new CA, steady.
  Start();
  EXPECT_EQ(tls_->pin(), new_pin);
  EXPECT_EQ(rotation_->State().phase(), CA_ROTATION_PHASE_STEADY);
}

TEST_F(CaRotationTest, ARestartFindsWhereTheRotationStood) {
  const std::string old_pin = tls_->pin();
  auto started = Step(CA_ROTATION_STEP_START);
  ASSERT_TRUE(started.ok()) << started.status();
  Start();
  auto state = rotation_->State();
  EXPECT_EQ(state.phase(), CA_ROTATION_PHASE_STARTED);
  EXPECT_EQ(state.other_pin(), started->other_pin());
  EXPECT_THAT(peripheries_->pins(), ElementsAre(old_pin, started->other_pin()));
  ASSERT_TRUE(Step(CA_ROTATION_STEP_SWITCH).ok());
  Start();
  state = rotation_->State();
  EXPECT_EQ(state.phase(), CA_ROTATION_PHASE_SWITCHED);
  EXPECT_EQ(state.pin(), started->other_pin());
  EXPECT_EQ(state.other_pin(), old_pin);
}

TEST_F(CaRotationTest, AnInterruptedSwitchIsCompletedAtTheNextStart) {
  auto started = Step(CA_ROTATION_STEP_START);
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string new_pin = started->other_pin();
  // The crash: the old CA was kept in previous/, and only the new key
  // replaced ca.key (ca.crt still the old one's: they do not match).
  rotation_.reset();
  std::filesystem::create_directory(pki() + "/previous");
  for (const char* f : {"/ca.crt", "/ca.key"}) {
    std::filesystem::copy_file(pki() + f, pki() + "/previous" + f);
  }
  ASSERT_TRUE(
      WritePrivateFile(pki() + "/ca.key", Slurp(pki() + "/next/ca.key")).ok());
  ASSERT_NO_FATAL_FAILURE(Start());
  EXPECT_EQ(tls_->pin(), new_pin);
  EXPECT_EQ(rotation_->State().phase(), CA_ROTATION_PHASE_SWITCHED);
  EXPECT_FALSE(std::filesystem::exists(pki() + "/next"));
}

TEST_F(CaRotationTest, StepsOutOfOrderAreRefused) {
  auto wrong = Step(CA_ROTATION_STEP_SWITCH);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr("cannot switch: the rotation is steady"));
  EXPECT_EQ(Step(CA_ROTATION_STEP_FINISH).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Step(varan::v1::CA_ROTATION_STEP_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Abort forgets the new CA.
  ASSERT_TRUE(Step(CA_ROTATION_STEP_START).ok());
  EXPECT_EQ(Step(CA_ROTATION_STEP_START).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto aborted = Step(CA_ROTATION_STEP_ABORT);
  ASSERT_TRUE(aborted.ok()) << aborted.status();
  EXPECT_EQ(aborted->phase(), CA_ROTATION_PHASE_STEADY);
  EXPECT_FALSE(std::filesystem::exists(pki() + "/next"));
  EXPECT_EQ(changed_, 2);
}

}  // namespace
}  // namespace varan::core
