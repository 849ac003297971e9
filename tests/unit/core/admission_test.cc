// Tests for core/server/admission.h: the token bucket that paces
// registrations and tunnel hellos, and the retry-after hints it gives.
#include "core/server/admission.h"

#include "common/clock.h"
#include "common/grpc_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;

class HandshakeAdmissionTest : public ::testing::Test {
 protected:
  // The hint of a shed handshake (fails the test if it was admitted).
  absl::Duration ShedHint(HandshakeAdmission& a) {
    absl::Status s = a.Admit("registration");
    EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
    auto hint = RetryAfter(s);
    EXPECT_TRUE(hint.has_value()) << s;
    return hint.value_or(absl::ZeroDuration());
  }

  FakeClock clock_;
};

TEST_F(HandshakeAdmissionTest, BurstIsAdmittedThenShedWithAHint) {
  HandshakeAdmission a(&clock_, {.rate = 10, .burst = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(a.Admit("registration").ok()) << i;
  absl::Status s = a.Admit("tunnel");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tunnel"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("retry after 100ms"));
  // The next token comes in 1/rate.
  EXPECT_EQ(RetryAfter(s), absl::Milliseconds(100));
  EXPECT_EQ(a.shed(), 1u);
}

TEST_F(HandshakeAdmissionTest, HintsGrowWithTheBacklogOneTokenApart) {
  HandshakeAdmission a(&clock_, {.rate = 10, .burst = 1});
  ASSERT_TRUE(a.Admit("registration").ok());
  // Five callers shed at the same moment get consecutive slots.
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(ShedHint(a), absl::Milliseconds(100 * i)) << i;
  }
  // Later callers queue behind them: 50 ms on, the next free slot is 600 ms
  // after the start.
  clock_.Advance(absl::Milliseconds(50));
  EXPECT_EQ(ShedHint(a), absl::Milliseconds(550));
  EXPECT_EQ(a.shed(), 6u);
}

TEST_F(HandshakeAdmissionTest, TokensComeBackAtTheRateUpToTheBurst) {
  HandshakeAdmission a(&clock_, {.rate = 100, .burst = 5});
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(a.Admit("registration").ok());
  ShedHint(a);
  clock_.Advance(absl::Milliseconds(20));  // two tokens
  EXPECT_TRUE(a.Admit("registration").ok());
  EXPECT_TRUE(a.Admit("registration").ok());
  ShedHint(a);
  // A long quiet time refills to the burst, no further.
  clock_.Advance(absl::Hours(1));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(a.Admit("registration").ok()) << i;
  EXPECT_GT(ShedHint(a), absl::ZeroDuration());
}

TEST_F(HandshakeAdmissionTest, CallersHonouringTheirHintsAreAdmitted) {
  // 20 callers arrive at once against rate 10, burst 4: the 16 shed come
  // back at their hints (the way peripheries do) and all are admitted
  // within the time the rate allows, none shed twice.
  HandshakeAdmission a(&clock_, {.rate = 10, .burst = 4});
  std::vector<absl::Duration> hints;
  int admitted = 0;
  for (int i = 0; i < 20; ++i) {
    absl::Status s = a.Admit("registration");
    if (s.ok()) {
      ++admitted;
    } else {
      hints.push_back(*RetryAfter(s));
    }
  }
  ASSERT_EQ(admitted, 4);
  ASSERT_EQ(hints.size(), 16u);
  std::sort(hints.begin(), hints.end());
  absl::Duration elapsed;
  for (absl::Duration h : hints) {
    clock_.Advance(h - elapsed);
    elapsed = h;
    EXPECT_TRUE(a.Admit("registration").ok()) << h;
  }
  EXPECT_EQ(a.shed(), 16u);
  EXPECT_LE(elapsed, absl::Milliseconds(1600));
}

TEST_F(HandshakeAdmissionTest, RateZeroMeansNoLimit) {
  HandshakeAdmission a(&clock_, {.rate = 0, .burst = 1});
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(a.Admit("registration").ok());
  EXPECT_EQ(a.shed(), 0u);
}

TEST(RetryAfterTest, HintSurvivesAsPayloadAndIsRoundedUpToAMillisecond) {
  absl::Status s = RetryAfterError("busy", absl::Microseconds(1500));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfter(s), absl::Milliseconds(2));
  EXPECT_EQ(RetryAfter(absl::ResourceExhaustedError("too many failures")),
            std::nullopt);
  EXPECT_EQ(RetryAfter(absl::UnavailableError("down")), std::nullopt);
}

}  // namespace
}  // namespace varan::core
