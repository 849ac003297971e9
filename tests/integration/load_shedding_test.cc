// Load shedding (issue #6): a fleet that registers at once, and reconnects
// at once after core is killed with kill -9, is paced by core's handshake
// limit (--handshake-rate/--handshake-burst, set small here) instead of
// overwhelming it: core refuses the excess with RESOURCE_EXHAUSTED and a
// retry-after hint, the peripheries (dialed and tunneled) wait for it, and
// every one comes back without operator action.
#include <signal.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/time_util.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

constexpr char kWaitedForHint[] = "is shedding load: waiting";

// Lines of `log` from byte `from` on that say the periphery waited for a
// hint.
int HintWaits(const std::string& log, size_t from) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(
           absl::string_view(log).substr(std::min(from, log.size())), '\n')) {
    if (absl::StrContains(line, kWaitedForHint)) ++n;
  }
  return n;
}

TEST(LoadSheddingTest, FleetReconnectingAtOnceIsPacedByRetryAfterHints) {
  constexpr int kPeripheries = 40;  // half dialed, half tunneled
  // 5 handshakes a second, 3 at once: the 20 tunnels' hellos after the
  // restart come within about 1.5 s (their backoff is at most 1 s), more
  // than that admits.
  constexpr double kRate = 5;
  TestFleet fleet({"--heartbeat-interval", "1", "--restart-grace", "60",
                   "--handshake-rate", "5", "--handshake-burst", "3"});
  fleet.StartCore();
  std::vector<Daemon*> peripheries;
  const absl::Time launched = absl::Now();
  for (int i = 0; i < kPeripheries; ++i) {
    std::vector<std::string> args = {"--reconnect-max-backoff", "1"};
    if (i % 2 == 1) {
      args.push_back("--tunnel");
      args.push_back("--no-listen");
    }
    peripheries.push_back(
        fleet.LaunchPeriphery(absl::StrCat("p", i), {"shed=yes"}, args));
  }
  auto all_back_since = [&](absl::Time since) {
    auto list = fleet.client()->ListPeripheries({});
    if (!list.ok() || list->size() != kPeripheries) return false;
    for (const auto& p : *list) {
      if (p.state() != varan::v1::PERIPHERY_STATE_ONLINE ||
          FromTimestamp(p.last_seen()) < since) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(
      WaitFor([&] { return all_back_since(launched); }, absl::Seconds(60)))
      << "not every periphery registered";
  const absl::Duration registered = absl::Now() - launched;
  auto info = fleet.client()->GetInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->handshake_rate(), kRate);
  EXPECT_EQ(info->handshake_burst(), 3);
  const uint64_t shed_at_start = info->handshakes_shed();
  // 40 registrations against 3 at once and 5 a second: most were shed, and
  // both kinds of periphery waited for their hints.
  EXPECT_GT(shed_at_start, 0u);
  int dial_waited = 0, tunnel_waited = 0;
  std::vector<size_t> log_sizes;
  for (int i = 0; i < kPeripheries; ++i) {
    const std::string log = peripheries[i]->Log();
    log_sizes.push_back(log.size());
    if (HintWaits(log, 0) > 0) ++(i % 2 == 1 ? tunnel_waited : dial_waited);
  }
  EXPECT_GT(dial_waited, 0);
  EXPECT_GT(tunnel_waited, 0);

  // kill -9 and restart: the 20 tunnels all say hello again at once (the
  // dialed peripheries only heartbeat, which is never shed).
  ASSERT_EQ(fleet.StopCore(SIGKILL), 128 + SIGKILL);
  const std::string first_core_log = fleet.core()->Log();
  absl::SleepFor(absl::Milliseconds(500));
  fleet.StartCore();
  const absl::Time restarted = absl::Now();
  ASSERT_TRUE(
      WaitFor([&] { return all_back_since(restarted); }, absl::Seconds(60)))
      << "not every periphery came back after the restart";
  const absl::Duration back = absl::Now() - restarted;
  info = fleet.client()->GetInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  const uint64_t shed_after_restart = info->handshakes_shed();
  EXPECT_GT(shed_after_restart, 0u);
  // Peripheries that honour their hints come back when core has room, so
  // each is shed about once; ones retrying on their own 0.2-1 s backoff
  // would be shed several times each.
  EXPECT_LE(shed_after_restart, static_cast<uint64_t>(kPeripheries));
  int waited_after_restart = 0;
  for (int i = 1; i < kPeripheries; i += 2) {
    if (HintWaits(peripheries[i]->Log(), log_sizes[i]) > 0) {
      ++waited_after_restart;
    }
  }
  EXPECT_GT(waited_after_restart, 0);
  // Core logged the shedding, but not once per refusal.
  const std::string core_log = fleet.core()->Log();
  EXPECT_TRUE(absl::StrContains(core_log, "shedding load")) << core_log;
  int shed_lines = 0;
  for (absl::string_view line : absl::StrSplit(core_log, '\n')) {
    if (absl::StrContains(line, "shedding load")) ++shed_lines;
  }
  EXPECT_LE(shed_lines, 3) << core_log;
  EXPECT_TRUE(absl::StrContains(first_core_log, "shedding load"));
  std::cout << "load shedding: " << kPeripheries
            << " peripheries (20 dial, 20 tunnel), --handshake-rate 5 "
               "--handshake-burst 3: all registered in "
            << absl::FormatDuration(registered) << " (" << shed_at_start
            << " handshakes shed); after kill -9 all back in "
            << absl::FormatDuration(back) << " (" << shed_after_restart
            << " shed, " << waited_after_restart
            << " tunnels waited for a hint)\n";
}

}  // namespace
}  // namespace varan::testing
