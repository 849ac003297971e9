// Tests for common/allowlist.h and common/peer_guard.h: CIDR rules over
// IPv4, IPv6 and IPv4-mapped IPv6 clients; the failed-authentication budget
// with a fake clock.
#include "common/allowlist.h"

#include <string>
#include <vector>

#include "common/clock.h"
#include "common/peer_guard.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan {
namespace {

using ::testing::HasSubstr;

Allowlist MustParse(const std::vector<std::string>& rules) {
  auto a = Allowlist::Parse(rules);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *std::move(a) : Allowlist();
}

TEST(AllowlistTest, EmptyAllowsEveryone) {
  Allowlist a;
  EXPECT_TRUE(a.empty());
  for (const char* peer : {"10.0.0.1", "::1", "unix:/x", ""}) {
    EXPECT_TRUE(a.Allows(peer)) << peer;
  }
}

TEST(AllowlistTest, MatchesIpv4Ipv6AndMappedClients) {
  Allowlist a = MustParse(
      {"10.0.0.0/8", "192.0.2.7", "fd00:1::/32", "::1", "0.0.0.0/32"});
  struct Case {
    const char* peer;
    bool allowed;
  } cases[] = {
      {"10.1.2.3", true},
      {"10.255.255.255", true},
      {"11.0.0.1", false},
      {"192.0.2.7", true},
      {"192.0.2.8", false},
      // IPv4 clients of a [::] listener, as gRPC reports them (before or
      // after NormalizePeerAddress), match IPv4 rules.
      {"::ffff:10.9.9.9", true},
      {"::ffff:192.0.2.7", true},
      {"::ffff:11.0.0.1", false},
      {"fd00:1::5", true},
      {"fd00:1:ffff:ffff::1", true},
      {"fd00:2::5", false},
      {"::1", true},
      {"[::1]", true},
      {"::2", false},
      {"fe80::1%eth0", false},
      {"unix:/run/x.sock", false},
      {"garbage", false},
      {"", false},
  };
  for (const Case& c : cases) EXPECT_EQ(a.Allows(c.peer), c.allowed) << c.peer;
  EXPECT_EQ(a.ToStrings(),
            (std::vector<std::string>{"10.0.0.0/8", "192.0.2.7/32",
                                      "fd00:1::/32", "::1/128", "0.0.0.0/32"}));
}

TEST(AllowlistTest, Ipv6RulesOverTheMappedRangeMatchIpv4Clients) {
  Allowlist a = MustParse({"::ffff:10.0.0.0/104"});
  EXPECT_TRUE(a.Allows("10.3.4.5"));
  EXPECT_TRUE(a.Allows("::ffff:10.3.4.5"));
  EXPECT_FALSE(a.Allows("11.3.4.5"));
  Allowlist all = MustParse({"0.0.0.0/0"});
  EXPECT_TRUE(all.Allows("203.0.113.9"));
  EXPECT_TRUE(all.Allows("::ffff:203.0.113.9"));
  EXPECT_FALSE(all.Allows("2001:db8::1"));
  Allowlist all6 = MustParse({"::/0"});
  EXPECT_TRUE(all6.Allows("2001:db8::1"));
  EXPECT_TRUE(all6.Allows("203.0.113.9"));  // as ::ffff:203.0.113.9
}

TEST(AllowlistTest, BadRulesNameTheValue) {
  struct Case {
    const char* rule;
    const char* says;
  } cases[] = {
      {"10.0.0.0/33", "prefix length must be 0-32"},
      {"fd00::/129", "prefix length must be 0-128"},
      {"10.0.0.1/8", "did you mean \"10.0.0.0/8\"?"},
      {"fd00::1/16", "did you mean \"fd00::/16\"?"},
      {"10.0.0.0/x", "not a number"},
      {"host.example", "expected an IPv4 or IPv6 network"},
      {"", "expected an IPv4 or IPv6 network"},
  };
  for (const Case& c : cases) {
    auto a = Allowlist::Parse({c.rule});
    ASSERT_FALSE(a.ok()) << c.rule;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(a.status().message(), HasSubstr(c.says)) << c.rule;
    EXPECT_THAT(a.status().message(),
                HasSubstr(std::string("--allow \"") + c.rule + "\""));
  }
}

TEST(PeerGuardTest, RefusesAddressesOutsideTheAllowlist) {
  FakeClock clock;
  PeerGuardOptions options;
  options.allow = MustParse({"10.0.0.0/8"});
  PeerGuard guard(&clock, options);
  EXPECT_TRUE(guard.Admit("10.0.0.1").ok());
  EXPECT_TRUE(guard.Admit("::ffff:10.0.0.1").ok());
  absl::Status s = guard.Admit("192.0.2.1");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("192.0.2.1"));
}

TEST(PeerGuardTest, FailedAuthenticationsUseUpABudgetThatRefills) {
  FakeClock clock;
  PeerGuardOptions options;
  options.failures_per_minute = 6;  // one back every 10 s
  PeerGuard guard(&clock, options);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(guard.Admit("192.0.2.1").ok()) << i;
    guard.RecordFailure("192.0.2.1");
  }
  absl::Status s = guard.Admit("192.0.2.1");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("retry in 10s"));
  // Others are not affected; the same client over IPv4-mapped IPv6 is.
  EXPECT_TRUE(guard.Admit("192.0.2.2").ok());
  EXPECT_FALSE(guard.Admit("::ffff:192.0.2.1").ok());
  clock.Advance(absl::Seconds(9));
  EXPECT_FALSE(guard.Admit("192.0.2.1").ok());
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(guard.Admit("192.0.2.1").ok());
  // One failure later it is blocked again.
  guard.RecordFailure("192.0.2.1");
  EXPECT_FALSE(guard.Admit("192.0.2.1").ok());
  clock.Advance(absl::Minutes(1));
  for (int i = 0; i < 5; ++i) guard.RecordFailure("192.0.2.1");
  EXPECT_TRUE(guard.Admit("192.0.2.1").ok());
}

TEST(PeerGuardTest, Ipv6ClientsAreCountedPerSlash64) {
  FakeClock clock;
  PeerGuardOptions options;
  options.failures_per_minute = 3;
  PeerGuard guard(&clock, options);
  // Rotating through addresses of one /64 does not escape the limit.
  guard.RecordFailure("2001:db8:1:2::1");
  guard.RecordFailure("2001:db8:1:2::2");
  guard.RecordFailure("2001:db8:1:2:ffff::3");
  absl::Status s = guard.Admit("2001:db8:1:2::99");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("2001:db8:1:2::/64"));
  EXPECT_TRUE(guard.Admit("2001:db8:1:3::1").ok());
}

TEST(PeerGuardTest, ZeroTurnsTheLimitOff) {
  FakeClock clock;
  PeerGuardOptions options;
  options.failures_per_minute = 0;
  PeerGuard guard(&clock, options);
  for (int i = 0; i < 1000; ++i) guard.RecordFailure("192.0.2.1");
  EXPECT_TRUE(guard.Admit("192.0.2.1").ok());
}

}  // namespace
}  // namespace varan
