// Tests for core/jobs/tail_ring.h: the last bytes of a stream, in order,
// whatever the sizes of the appends.
#include "core/jobs/tail_ring.h"

#include <string>

#include "gtest/gtest.h"

namespace varan::core {
namespace {

TEST(TailRingTest, KeepsEverythingUntilFullThenTheLastBytesInOrder) {
  TailRing ring(5);
  ring.Append("ab");
  EXPECT_EQ(ring.size(), 2u);
  ring.Append("cd");
  ring.Append("efg");  // wraps
  EXPECT_EQ(ring.size(), 5u);
  ring.Append("h");
  ring.Append("ijk");
  EXPECT_EQ(ring.Take(), "ghijk");
  EXPECT_TRUE(ring.empty());
  ring.Append("xy");
  EXPECT_EQ(ring.Take(), "xy");
}

TEST(TailRingTest, AnAppendLargerThanTheCapacityKeepsItsEnd) {
  TailRing ring(4);
  ring.Append("ab");
  ring.Append("0123456789");
  EXPECT_EQ(ring.Take(), "6789");
}

TEST(TailRingTest, MatchesTheLastBytesOfAStreamForManyAppendSizes) {
  for (uint64_t capacity : {1u, 3u, 7u, 64u}) {
    TailRing ring(capacity);
    std::string all;
    for (int i = 0; i < 200; ++i) {
      const std::string piece((i * 7) % 23, static_cast<char>('a' + i % 26));
      ring.Append(piece);
      all += piece;
      if (i % 37 == 0) {
        const uint64_t keep = std::min<uint64_t>(capacity, all.size());
        EXPECT_EQ(ring.Take(), all.substr(all.size() - keep))
            << "capacity " << capacity << " append " << i;
        all.clear();
      }
    }
    const uint64_t keep = std::min<uint64_t>(capacity, all.size());
    EXPECT_EQ(ring.Take(), all.substr(all.size() - keep));
  }
}

TEST(TailRingTest, ZeroCapacityHoldsNothingAndClearForgets) {
  TailRing none(0);
  none.Append("abc");
  EXPECT_TRUE(none.empty());
  TailRing ring(3);
  ring.Append("abcd");
  ring.Clear();
  EXPECT_TRUE(ring.empty());
  ring.Append("e");
  EXPECT_EQ(ring.Take(), "e");
}

}  // namespace
}  // namespace varan::core
