// Tests for periphery/host/facts.h against what the kernel reports directly.
#include "periphery/host/facts.h"

#include <limits.h>
#include <sys/statvfs.h>
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
  StatsCollector collector;
  varan::v1::HostStats stats = collector.Collect();
  EXPECT_GE(stats.load1(), 0.0);
  EXPECT_GE(stats.load5(), 0.0);
  EXPECT_GE(stats.load15(), 0.0);
  EXPECT_GT(stats.uptime_seconds(), 0u);
  EXPECT_GT(stats.memory_available_bytes(), 0u);
  EXPECT_LE(stats.memory_available_bytes(), stats.memory_total_bytes());
  ExpectWithinOnePercent(stats.memory_total_bytes(), SysinfoTotalRam());
  EXPECT_EQ(stats.running_executions(), 0u);
}

TEST_F(FactsTest, FilesystemsMatchStatvfs) {
  varan::v1::HostFacts facts = CollectFacts();
  ASSERT_GT(facts.filesystems_size(), 0);
  bool has_root = false;
  for (const auto& fs : facts.filesystems()) {
    struct statvfs st {};
    ASSERT_EQ(statvfs(fs.mount_point().c_str(), &st), 0) << fs.mount_point();
    EXPECT_EQ(fs.size_bytes(), static_cast<uint64_t>(st.f_blocks) * st.f_frsize)
        << fs.mount_point();
    EXPECT_FALSE(fs.type().empty());
    EXPECT_NE(fs.type(), "proc");
    EXPECT_NE(fs.type(), "tmpfs");
    if (fs.mount_point() == "/") has_root = true;
  }
  EXPECT_TRUE(has_root);
}

TEST_F(FactsTest, DiskUsageAgreesWithDf) {
  StatsCollector collector;
  varan::v1::HostStats stats = collector.Collect();
  const varan::v1::DiskUsage* root = nullptr;
  for (const auto& d : stats.disks()) {
    if (d.mount_point() == "/") root = &d;
  }
  ASSERT_NE(root, nullptr);
  // df -B1 --output=size,used,avail / : the same numbers, from another tool.
  FILE* df = popen("df -B1 --output=size,used,avail / | tail -1", "r");
  ASSERT_NE(df, nullptr);
  unsigned long long size = 0, used = 0, avail = 0;
  ASSERT_EQ(fscanf(df, "%llu %llu %llu", &size, &used, &avail), 3);
  pclose(df);
  EXPECT_EQ(root->size_bytes(), size);
  // Other processes write to the disk meanwhile: allow 64 MiB of drift.
  EXPECT_NEAR(static_cast<double>(root->used_bytes()),
              static_cast<double>(used), 64.0 * 1024 * 1024);
  EXPECT_NEAR(static_cast<double>(root->available_bytes()),
              static_cast<double>(avail), 64.0 * 1024 * 1024);
}

TEST_F(FactsTest, CpuPercentComesFromTheInterval) {
  StatsCollector collector;
  collector.Collect();
  // Keep one CPU busy for a while: the next sample cannot be idle.
  absl::Time until = absl::Now() + absl::Milliseconds(300);
  volatile uint64_t spin = 0;
  while (absl::Now() < until) spin = spin + 1;
  varan::v1::HostStats stats = collector.Collect();
  EXPECT_GT(stats.cpu_percent(), 100.0 / (2.0 * sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_LE(stats.cpu_percent(), 100.0);
}

TEST_F(FactsTest, SnapshotKeepsFactsAndTheLatestSample) {
  varan::v1::HostFacts facts;
  facts.set_hostname("given");
  HostSnapshot host(facts);
  EXPECT_EQ(host.facts().hostname(), "given");
  // Nothing is read from the host until someone samples.
  EXPECT_EQ(host.Latest().uptime_seconds(), 0u);
  varan::v1::HostStats sampled = host.Sample();
  EXPECT_GT(sampled.uptime_seconds(), 0u);
  EXPECT_EQ(host.Latest().SerializeAsString(), sampled.SerializeAsString());
}

}  // namespace
}  // namespace varan::periphery
