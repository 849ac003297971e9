// Tests for periphery/host/facts.h against what the kernel reports directly.
#include "periphery/host/facts.h"

#include <limits.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "varan/version.h"

namespace varan::periphery {
namespace {

class FactsTest : public ::testing::Test {
 protected:
  static uint64_t SysinfoTotalRam() {
    struct sysinfo si {};
    EXPECT_EQ(sysinfo(&si), 0);
    return static_cast<uint64_t>(si.totalram) * si.mem_unit;
  }

  static void ExpectWithinOnePercent(uint64_t got, uint64_t want) {
    EXPECT_LE(std::fabs(static_cast<double>(got) - static_cast<double>(want)),
              0.01 * static_cast<double>(want))
        << "got " << got << ", want about " << want;
  }
};

TEST_F(FactsTest, IdentityMatchesTheKernel) {
  varan::v1::HostFacts facts = CollectFacts();
  char hostname[HOST_NAME_MAX + 1] = {};
  ASSERT_EQ(gethostname(hostname, sizeof(hostname)), 0);
  EXPECT_EQ(facts.hostname(), hostname);
  utsname u{};
  ASSERT_EQ(uname(&u), 0);
  EXPECT_EQ(facts.kernel(), u.release);
  EXPECT_EQ(facts.arch(), u.machine);
  EXPECT_EQ(facts.agent_version(), kVersion);
}

TEST_F(FactsTest, CpuAndMemoryMatchTheKernel) {
  varan::v1::HostFacts facts = CollectFacts();
  EXPECT_EQ(facts.cpu_count(),
            static_cast<uint32_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_GT(facts.memory_total_bytes(), 0u);
  ExpectWithinOnePercent(facts.memory_total_bytes(), SysinfoTotalRam());
}

TEST_F(FactsTest, BootTimeIsInThePast) {
  varan::v1::HostFacts facts = CollectFacts();
  ASSERT_TRUE(facts.has_boot_time());
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  EXPECT_GT(facts.boot_time().seconds(), 0);
  EXPECT_LE(facts.boot_time().seconds(), now);
}

TEST_F(FactsTest, AddressesExcludeLoopback) {
  varan::v1::HostFacts facts = CollectFacts();
  for (const auto& a : facts.addresses()) {
    EXPECT_NE(a.address(), "127.0.0.1") << a.interface();
    EXPECT_NE(a.address(), "::1") << a.interface();
    EXPECT_NE(a.interface(), "lo");
    EXPECT_FALSE(a.address().empty());
    EXPECT_LE(a.prefix_length(), 128u);
  }
}

TEST_F(FactsTest, StatsAreSane) {
  varan::v1::HostStats stats = CollectStats();
  EXPECT_GE(stats.load1(), 0.0);
  EXPECT_GE(stats.load5(), 0.0);
  EXPECT_GE(stats.load15(), 0.0);
  EXPECT_GT(stats.uptime_seconds(), 0u);
  EXPECT_GT(stats.memory_available_bytes(), 0u);
  EXPECT_LE(stats.memory_available_bytes(), stats.memory_total_bytes());
  ExpectWithinOnePercent(stats.memory_total_bytes(), SysinfoTotalRam());
  EXPECT_EQ(stats.running_executions(), 0u);
}

}  // namespace
}  // namespace varan::periphery
