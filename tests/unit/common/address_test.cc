// Tests for common/address.h: parsing, formatting and classifying the
// addresses both daemons and varanctl accept.
#include "common/address.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan {
namespace {

using ::testing::HasSubstr;

class AddressTest : public ::testing::Test {};

struct ParseCase {
  std::string text;
  HostPort want;
};

TEST_F(AddressTest, ParseListenAddressAcceptsEveryDocumentedForm) {
  const std::vector<ParseCase> cases = {
      {"[::]:7700", {"::", 7700}},
      {"[fd00::1]:7700", {"fd00::1", 7700}},
      {"[::ffff:10.0.0.1]:80", {"::ffff:10.0.0.1", 80}},
      {"[fe80::1%eth0]:7700", {"fe80::1%eth0", 7700}},
      {"0.0.0.0:7700", {"0.0.0.0", 7700}},
      {"127.0.0.1:0", {"127.0.0.1", 0}},
      {"10.0.0.5:65535", {"10.0.0.5", 65535}},
      {"host.example:7700", {"host.example", 7700}},
      {"localhost:1", {"localhost", 1}},
      {"under_score.example:7700", {"under_score.example", 7700}},
      {":7700", {"::", 7700}},
      {"7700", {"::", 7700}},
      {":0", {"::", 0}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<HostPort> got = ParseListenAddress(c.text);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->host, c.want.host);
    EXPECT_EQ(got->port, c.want.port);
  }
}

struct RejectCase {
  std::string text;
  std::string message_part;  // besides the quoted input
};

TEST_F(AddressTest, ParseListenAddressRejectsMalformedInput) {
  const std::vector<RejectCase> cases = {
      {"fd00::1:7700", "\"[fd00::1]:7700\""},
      {"[::1]", "missing port"},
      {":", "empty host"},
      {"", "empty"},
      {"host:70000", "out of range"},
      {"host:abc", "not a number"},
      {"host:-1", "not a number"},
      {"host:", "missing port"},
      {"[::1]:", "missing port"},
      {"[fd00::1", "without matching ']'"},
      {"[fd00::1]7700", "expected ':'"},
      {"[nothost]:1", "not an IPv6 address"},
      {"[10.0.0.1]:1", "not an IPv6 address"},
      {"999.1.1.1:80", "not a valid IPv4 address"},
      {"1.2.3:80", "not a valid IPv4 address"},
      {"a b:1", "whitespace"},
      {"host\t:1", "whitespace"},
      {"-host:1", "not a valid host name"},
      {"host-.example:1", "not a valid host name"},
      {"a..b:1", "not a valid host name"},
      {"host.example", "missing port"},
      {"99999", "out of range"},
      {"a:b:c", "too many ':'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<HostPort> got = ParseListenAddress(c.text);
    ASSERT_FALSE(got.ok()) << "parsed as " << got->host << " port "
                           << got->port;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()),
                HasSubstr("\"" + c.text + "\""));
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message_part));
  }
}

TEST_F(AddressTest, UnbracketedIPv6WithPortSuggestsTheBracketedForm) {
  absl::StatusOr<HostPort> got = ParseListenAddress("fd00::1:7700");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("did you mean \"[fd00::1]:7700\"?"));
  got = ParseDialAddress("2001:db8::5:443");
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()),
              HasSubstr("\"[2001:db8::5]:443\""));
}

TEST_F(AddressTest, ParseDialAddressAppliesTheDefaultPortOnlyWhenMissing) {
  const std::vector<ParseCase> cases = {
      {"core.example", {"core.example", 7700}},
      {"[fd00::1]", {"fd00::1", 7700}},
      {"fd00::1", {"fd00::1", 7700}},
      {"::1", {"::1", 7700}},
      {"10.0.0.1", {"10.0.0.1", 7700}},
      {"core.example:9000", {"core.example", 9000}},
      {"[fd00::1]:9000", {"fd00::1", 9000}},
      {"10.0.0.1:1", {"10.0.0.1", 1}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<HostPort> got = ParseDialAddress(c.text, 7700);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, c.want);
  }
}

TEST_F(AddressTest, ParseDialAddressRejectsWhatCannotBeDialed) {
  const std::vector<RejectCase> cases = {
      {"core.example:0", "port 0 cannot be dialed"},
      {"[fd00::1]:0", "port 0 cannot be dialed"},
      {"[::]:7700", "wildcard"},
      {"[::0]:7700", "wildcard"},
      {"0.0.0.0:7700", "wildcard"},
      {"::", "wildcard"},
      {":7700", "empty host"},
      {"", "empty"},
      {"core.example:65536", "out of range"},
      {"fd00::1:7700", "\"[fd00::1]:7700\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<HostPort> got = ParseDialAddress(c.text, 7700);
    ASSERT_FALSE(got.ok()) << "parsed as " << got->host << " port "
                           << got->port;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message_part));
  }
}

TEST_F(AddressTest, ParseDialAddressWithoutDefaultPortRequiresOne) {
  for (const std::string text : {"core.example", "[fd00::1]", "10.0.0.1"}) {
    SCOPED_TRACE(text);
    absl::StatusOr<HostPort> got = ParseDialAddress(text);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr("missing port"));
  }
}

TEST_F(AddressTest, ParseDialAddressListKeepsOrderAndDefaultPorts) {
  struct ListCase {
    std::string text;
    std::vector<HostPort> want;
  };
  const std::vector<ListCase> cases = {
      {"core.example", {{"core.example", 7700}}},
      {"[fd00::1]:7701,10.0.0.1", {{"fd00::1", 7701}, {"10.0.0.1", 7700}}},
      {" core-a:1 , core-b:2,core-c ",
       {{"core-a", 1}, {"core-b", 2}, {"core-c", 7700}}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto got = ParseDialAddressList(c.text, 7700);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, c.want);
  }
}

TEST_F(AddressTest, ParseDialAddressListNamesTheBadElement) {
  const std::vector<RejectCase> cases = {
      {"", "no address given"},
      {" ", "no address given"},
      {"a:7700,,b:7700", "address 2 of 3 in \"a:7700,,b:7700\" is empty"},
      {"a:7700,", "address 2 of 2 in \"a:7700,\" is empty"},
      {",a:7700", "address 1 of 2"},
      {"a:7700,b:99999", "invalid address \"b:99999\": port 99999 is out"},
      {"a:7700,fd00::1:7700", "\"[fd00::1]:7700\""},
      {"a:7700,[::]:7700", "wildcard"},
      {"core-a,core-a:7700", "\"core-a:7700\" is listed twice"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto got = ParseDialAddressList(c.text, 7700);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.message_part));
  }
}

TEST_F(AddressTest, FormatHostPortBracketsOnlyIPv6) {
  EXPECT_EQ(FormatHostPort({"fd00::1", 7701}), "[fd00::1]:7701");
  EXPECT_EQ(FormatHostPort({"::", 0}), "[::]:0");
  EXPECT_EQ(FormatHostPort({"10.0.0.5", 7701}), "10.0.0.5:7701");
  EXPECT_EQ(FormatHostPort({"core.example", 7700}), "core.example:7700");
  EXPECT_EQ(FormatHost("::1"), "[::1]");
  EXPECT_EQ(FormatHost("10.0.0.1"), "10.0.0.1");
  EXPECT_EQ(FormatHost("core.example"), "core.example");
}

TEST_F(AddressTest, FormattedAddressesParseBack) {
  const std::vector<HostPort> cases = {
      {"10.0.0.5", 7701},     {"127.0.0.1", 1},       {"fd00::1", 7701},
      {"::1", 65535},         {"2001:db8::a:b", 443}, {"::ffff:10.1.2.3", 80},
      {"core.example", 7700}, {"localhost", 22},      {"a-b.c-d.example", 8080},
  };
  for (const auto& hp : cases) {
    const std::string text = FormatHostPort(hp);
    SCOPED_TRACE(text);
    absl::StatusOr<HostPort> listen = ParseListenAddress(text);
    ASSERT_TRUE(listen.ok()) << listen.status();
    EXPECT_EQ(*listen, hp);
    absl::StatusOr<HostPort> dial = ParseDialAddress(text);
    ASSERT_TRUE(dial.ok()) << dial.status();
    EXPECT_EQ(*dial, hp);
  }
  // Wildcards and port 0 are listen-only, and still round trip there, as
  // does a zoned link-local address.
  for (const HostPort& hp : std::vector<HostPort>{
           {"::", 7700}, {"0.0.0.0", 0}, {"fe80::1%eth0", 7700}}) {
    absl::StatusOr<HostPort> listen = ParseListenAddress(FormatHostPort(hp));
    ASSERT_TRUE(listen.ok()) << listen.status();
    EXPECT_EQ(*listen, hp);
  }
}

TEST_F(AddressTest, NormalizePeerAddressGivesTheBareClientAddress) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ipv4:127.0.0.1:5000", "127.0.0.1"},
      {"ipv4:10.1.2.3:65535", "10.1.2.3"},
      {"ipv6:%5B::1%5D:5000", "::1"},
      {"ipv6:%5b::1%5d:5000", "::1"},
      {"ipv6:[::1]:5000", "::1"},
      {"ipv6:%5Bfd00::5%5D:43210", "fd00::5"},
      {"ipv6:%5B::ffff:10.1.2.3%5D:80", "10.1.2.3"},
      {"ipv6:%5B::ffff:127.0.0.1%5D:80", "127.0.0.1"},
      {"ipv6:%5Bfe80::1%25eth0%5D:80", "fe80::1%eth0"},
      {"unix:/x", "unix:/x"},
      {"unix:/run/varan.sock", "unix:/run/varan.sock"},
      {"", ""},
  };
  for (const auto& [peer, want] : cases) {
    SCOPED_TRACE(peer);
    EXPECT_EQ(NormalizePeerAddress(peer), want);
  }
}

TEST_F(AddressTest, IsLoopbackHost) {
  for (const std::string host :
       {"127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "localhost",
        "LocalHost", "::ffff:127.0.0.1", "::1%lo"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const std::string host :
       {"10.0.0.1", "128.0.0.1", "::", "0.0.0.0", "fd00::1", "::2",
        "localhost.example", "127.example", "::ffff:10.0.0.1", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

TEST_F(AddressTest, IsWildcardHost) {
  for (const std::string host : {"::", "0.0.0.0", "0:0:0:0:0:0:0:0", "::0"}) {
    EXPECT_TRUE(IsWildcardHost(host)) << host;
  }
  for (const std::string host : {"::1", "127.0.0.1", "0.0.0.1", "[::]", "",
                                 "host.example", "fd00::", "fe80::1%eth0"}) {
    EXPECT_FALSE(IsWildcardHost(host)) << host;
  }
  // A zoned link-local address can be dialed.
  auto zoned = ParseDialAddress("[fe80::1%eth0]:7700");
  ASSERT_TRUE(zoned.ok()) << zoned.status();
  EXPECT_EQ(FormatHostPort(*zoned), "[fe80::1%eth0]:7700");
}

TEST_F(AddressTest, LiteralClassification) {
  EXPECT_TRUE(IsIPv6Literal("fd00::1"));
  EXPECT_TRUE(IsIPv6Literal("fe80::1%eth0"));
  EXPECT_FALSE(IsIPv6Literal("fe80::1%"));
  EXPECT_FALSE(IsIPv6Literal("[fd00::1]"));
  EXPECT_FALSE(IsIPv6Literal("10.0.0.1"));
  EXPECT_TRUE(IsIPv4Literal("10.0.0.1"));
  EXPECT_FALSE(IsIPv4Literal("10.0.0"));
  EXPECT_FALSE(IsIPv4Literal("256.0.0.1"));
  EXPECT_FALSE(IsIPv4Literal("::1"));
}

}  // namespace
}  // namespace varan

namespace varan {
namespace {

TEST(AddressCanonicalTest, Ipv6LiteralsComeBackCanonical) {
  // One address, one spelling: what is stored and compared is RFC 5952.
  auto listen = ParseListenAddress("[FD00:0:0::1]:7700");
  ASSERT_TRUE(listen.ok()) << listen.status();
  EXPECT_EQ(FormatHostPort(*listen), "[fd00::1]:7700");
  auto dial = ParseDialAddress("[0:0:0:0:0:ffff:a00:5]", 7701);
  ASSERT_TRUE(dial.ok()) << dial.status();
  EXPECT_EQ(FormatHostPort(*dial), "[::ffff:10.0.0.5]:7701");
  auto zoned = ParseDialAddress("[FE80:0::1%eth0]:1");
  ASSERT_TRUE(zoned.ok()) << zoned.status();
  EXPECT_EQ(FormatHostPort(*zoned), "[fe80::1%eth0]:1");
}

}  // namespace
}  // namespace varan
