// Tests for the advertise-address rules of periphery/uplink/uplink.h.
#include "periphery/uplink/uplink.h"

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::periphery {
namespace {

using ::testing::HasSubstr;

TEST(AdvertiseAddressTest, ExplicitFlagIsNormalisedAndWins) {
  auto a = AdvertiseAddress("[fd00:0::5]:7701", {"::", 7701}, {"::1", 7700});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "[fd00::5]:7701");
  auto named =
      AdvertiseAddress("web-1.example:9000", {"::", 7701}, {"::1", 7700});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(*named, "web-1.example:9000");
}

TEST(AdvertiseAddressTest, BadFlagNamesTheFlag) {
  auto a = AdvertiseAddress("fd00::5:7701", {"::", 7701}, {"::1", 7700});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("--advertise"));
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("[fd00::5]:7701"));
}

TEST(AdvertiseAddressTest, SpecificListenerIsAdvertisedAsBound) {
  auto a = AdvertiseAddress("", {"10.1.2.3", 7801}, {"10.1.2.1", 7700});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "10.1.2.3:7801");
}

TEST(AdvertiseAddressTest, WildcardBecomesTheAddressTowardCoreInItsFamily) {
  // Loopback routes exist on every test host: toward an IPv4 core the
  // periphery advertises IPv4, toward an IPv6 core bracketed IPv6.
  auto v4 = AdvertiseAddress("", {"::", 7701}, {"127.0.0.1", 7700});
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(*v4, "127.0.0.1:7701");
  auto v6 = AdvertiseAddress("", {"0.0.0.0", 7702}, {"::1", 7700});
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(*v6, "[::1]:7702");
}

}  // namespace
}  // namespace varan::periphery
