// A dial-mode periphery that comes back on another address keeps its
// registration and is dialed at the new one: its heartbeats carry the
// address it advertises now, and core takes a changed one. Real core,
// periphery and varanctl on loopback, over IPv6 and then IPv4.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;

TEST(PeripheryAddressTest, ADialPeripheryBackOnAnotherPortIsDialedThere) {
  TestFleet fleet;
  fleet.StartCore();
  const std::string first = absl::StrCat("[::1]:", FreePort());
  Daemon* before = fleet.StartPeriphery(
      "mover", {}, {"--listen", first, "--advertise", first});
  RunResult one =
      fleet.Ctl({"exec", "-n", "mover", "--no-prefix", "--", "echo", "one"});
  EXPECT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(one.out, "one\n");
  const std::string id =
      Trimmed(ReadFile(fleet.dir().File("periphery-mover/periphery_id")));
  ASSERT_EQ(before->Stop(), 0);

  // Back with its state, on another port and address family.
  const std::string second = absl::StrCat("127.0.0.1:", FreePort());
  fleet.StartPeriphery("mover", {},
                       {"--listen", second, "--advertise", second});
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(fleet.core()->Log(),
                             absl::StrCat("periphery mover is now dialed at ",
                                          second, " (was ", first, ")"));
  })) << fleet.core()->Log();
  RunResult two =
      fleet.Ctl({"exec", "-n", "mover", "--no-prefix", "--", "echo", "two"});
  EXPECT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, "two\n");
  RunResult get = fleet.Ctl({"peripheries", "get", "mover"});
  EXPECT_THAT(get.out, HasSubstr(second));
  // The same registration: no second join, the same id.
  EXPECT_EQ(Trimmed(ReadFile(fleet.dir().File("periphery-mover/periphery_id"))),
            id);
  const std::string log = fleet.core()->Log();
  const std::string registered = "periphery mover registered from";
  const size_t at = log.find(registered);
  EXPECT_NE(at, std::string::npos) << log;
  EXPECT_EQ(log.find(registered, at + 1), std::string::npos) << log;
}

}  // namespace
}  // namespace varan::testing
