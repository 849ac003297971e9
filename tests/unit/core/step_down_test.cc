// StepDown (core/daemon/step_down.h): when a replica cut off from the
// database takes itself out — only once another has reached the database
// for the whole grace, and never while none does.
#include "core/daemon/step_down.h"

#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);
constexpr absl::Duration kGrace = absl::Seconds(10);

class StepDownTest : public ::testing::Test {
 protected:
  // One check at kT0 + `at` in the lapse since kT0 - 10 s, with "b"
  // reaching the database or not.
  std::optional<ReplicaInfo> CheckAt(absl::Duration at, bool b_reaches) {
    return step_down_.Check(others_, kRenewed, kT0 + at,
                            [&](const ReplicaInfo& r) {
                              probed_.push_back(r.id);
                              return b_reaches && r.id == "b";
                            });
  }

  static constexpr absl::Duration kTtl = absl::Seconds(10);
  const absl::Time kRenewed = kT0 - kTtl;

  StepDown step_down_{kGrace};
  const std::vector<ReplicaInfo> others_ = {{"a", "[::1]:1"}, {"b", "[::1]:2"}};
  std::vector<std::string> probed_;
};

TEST_F(StepDownTest, StepsDownOnceAnotherReachedTheDatabaseForTheGrace) {
  for (int s = 0; s < 10; ++s) {
    EXPECT_FALSE(CheckAt(absl::Seconds(s), true)) << s;
  }
  auto reaching = CheckAt(absl::Seconds(10), true);
  ASSERT_TRUE(reaching.has_value());
  EXPECT_EQ(reaching->id, "b");
  EXPECT_EQ(reaching->address, "[::1]:2");
  // Every replica is asked until one answers.
  EXPECT_EQ(probed_.size(), 22u);
}

TEST_F(StepDownTest, NeverWhileNoneReachesIt) {
  for (int s = 0; s < 60; ++s) EXPECT_FALSE(CheckAt(absl::Seconds(s), false));
  EXPECT_FALSE(step_down_.Check({}, kRenewed, kT0 + absl::Seconds(61),
                                [](const ReplicaInfo&) { return true; }));
}

// The others coming back one after another from an outage of everyone's:
// the wait starts when one is seen reaching the database, and over when
// none is again, or this replica renewed in between (a new lapse). Checks
// may come seconds apart (a refresh waits for its connection's timeout).
TEST_F(StepDownTest, TheWaitStartsOverWhenNoneReachesItOrALapseEnds) {
  EXPECT_FALSE(CheckAt(absl::Seconds(0), true));
  EXPECT_FALSE(CheckAt(absl::Seconds(9), true));
  EXPECT_FALSE(CheckAt(absl::Seconds(10), false));
  EXPECT_FALSE(CheckAt(absl::Seconds(11), true));
  EXPECT_FALSE(CheckAt(absl::Seconds(17), true));
  EXPECT_TRUE(CheckAt(absl::Seconds(21), true).has_value());

  StepDown other(kGrace);
  auto reaches = [](const ReplicaInfo&) { return true; };
  EXPECT_FALSE(other.Check(others_, kRenewed, kT0, reaches));
  // Renewed meanwhile, and lapsed again: a new wait.
  const absl::Time again = kT0 + absl::Seconds(20);
  EXPECT_FALSE(other.Check(others_, again, kT0 + absl::Seconds(30), reaches));
  EXPECT_FALSE(other.Check(others_, again, kT0 + absl::Seconds(39), reaches));
  EXPECT_TRUE(other.Check(others_, again, kT0 + absl::Seconds(40), reaches));
}

}  // namespace
}  // namespace varan::core
