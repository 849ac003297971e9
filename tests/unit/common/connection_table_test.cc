#include "common/connection_table.h"

#include <map>

#include "gtest/gtest.h"

namespace varan {
namespace {

// Stands in for the process's descriptor table: fd -> inode of the socket
// it refers to now (absent: closed).
class FakeDescriptors {
 public:
  ConnectionTable::Alive alive() {
    return [this](int fd, uint64_t inode) {
      auto it = open_.find(fd);
      return it != open_.end() && it->second == inode;
    };
  }
  void Open(int fd, uint64_t inode) { open_[fd] = inode; }
  void Close(int fd) { open_.erase(fd); }

 private:
  std::map<int, uint64_t> open_;
};

TEST(ConnectionTableTest, CapRefusesTheExcessPerAddressOnly) {
  FakeDescriptors fds;
  ConnectionTable table(2, fds.alive());
  for (int fd : {10, 11}) {
    ASSERT_TRUE(table.Admit("10.0.0.1"));
    fds.Open(fd, 100 + fd);
    table.Add("10.0.0.1", fd, 100 + fd);
  }
  EXPECT_FALSE(table.Admit("10.0.0.1"));
  EXPECT_TRUE(table.Admit("10.0.0.2"));
  EXPECT_TRUE(table.Admit("fd00::1"));
  EXPECT_EQ(table.Count("10.0.0.1"), 2u);
}

TEST(ConnectionTableTest, ClosedConnectionsFreeTheirPlaceAtTheCap) {
  FakeDescriptors fds;
  ConnectionTable table(2, fds.alive());
  fds.Open(10, 1);
  table.Add("::1", 10, 1);
  fds.Open(11, 2);
  table.Add("::1", 11, 2);
  EXPECT_FALSE(table.Admit("::1"));
  fds.Close(10);  // gRPC closed one
  EXPECT_TRUE(table.Admit("::1"));
  EXPECT_EQ(table.Count("::1"), 1u);
}

TEST(ConnectionTableTest, ADescriptorNumberReusedForAnotherSocketIsNotCounted) {
  FakeDescriptors fds;
  ConnectionTable table(1, fds.alive());
  fds.Open(10, 1);
  table.Add("10.0.0.1", 10, 1);
  // gRPC closed it and opened something else under the same number.
  fds.Open(10, 99);
  EXPECT_TRUE(table.Admit("10.0.0.1"));
  EXPECT_EQ(table.size(), 0u);
}

TEST(ConnectionTableTest, AddingAReusedNumberDropsTheOldEntry) {
  FakeDescriptors fds;
  ConnectionTable table(5, fds.alive());
  table.Add("10.0.0.1", 10, 1);
  table.Add("10.0.0.2", 10, 2);  // the kernel handed 10 out again
  EXPECT_EQ(table.Count("10.0.0.1"), 0u);
  EXPECT_EQ(table.Count("10.0.0.2"), 1u);
  EXPECT_EQ(table.size(), 1u);
}

TEST(ConnectionTableTest, ReapDropsEveryEndedConnection) {
  FakeDescriptors fds;
  ConnectionTable table(0, fds.alive());
  for (int fd = 10; fd < 20; ++fd) {
    fds.Open(fd, static_cast<uint64_t>(fd));
    table.Add(fd % 2 == 0 ? "a" : "b", fd, static_cast<uint64_t>(fd));
  }
  for (int fd = 10; fd < 16; ++fd) fds.Close(fd);
  EXPECT_EQ(table.Reap(), 6u);
  EXPECT_EQ(table.size(), 4u);
  EXPECT_EQ(table.Count("a"), 2u);
  EXPECT_EQ(table.Count("b"), 2u);
}

TEST(ConnectionTableTest, ZeroMeansNoCap) {
  FakeDescriptors fds;
  ConnectionTable table(0, fds.alive());
  for (int fd = 10; fd < 1010; ++fd) {
    ASSERT_TRUE(table.Admit("10.0.0.1"));
    fds.Open(fd, static_cast<uint64_t>(fd));
    table.Add("10.0.0.1", fd, static_cast<uint64_t>(fd));
  }
  EXPECT_TRUE(table.Admit("10.0.0.1"));
}

TEST(LogThrottleTest, OneLinePerPeriodCountingWhatItStandsFor) {
  LogThrottle throttle(absl::Seconds(10));
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  uint64_t events = 0;
  ASSERT_TRUE(throttle.Record(t0, 1, &events));
  EXPECT_EQ(events, 1u);
  EXPECT_FALSE(throttle.Record(t0 + absl::Seconds(1), 5, &events));
  EXPECT_FALSE(throttle.Record(t0 + absl::Seconds(9), 1, &events));
  ASSERT_TRUE(throttle.Record(t0 + absl::Seconds(10), 1, &events));
  EXPECT_EQ(events, 7u);
  ASSERT_TRUE(throttle.Record(t0 + absl::Seconds(30), 2, &events));
  EXPECT_EQ(events, 2u);
}

}  // namespace
}  // namespace varan
