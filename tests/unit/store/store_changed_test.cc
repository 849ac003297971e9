// The Store contract for re-reading only the peripheries that changed
// (Store::LoadChangedPeripheries, what core replicas sharing a database
// re-read every few seconds), in the contract suite (StoreContractTest,
// store_contract.h), so every backend runs it: a backend may return more
// than what changed, never less.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_contract.h"
#include "tests/unit/store/store_test_util.h"

namespace varan::core {
namespace {

using ::testing::Contains;
using ::testing::IsSupersetOf;
using namespace store_test;  // NOLINT: the shared test records and fixture

// "id=name/state/credential" of each periphery, to compare saves and reads.
std::vector<std::string> Rows(const std::vector<StoredPeriphery>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps) {
    out.push_back(p.info.id() + "=" + p.info.name() + "/" +
                  varan::v1::PeripheryState_Name(p.info.state()) + "/" +
                  p.credential);
  }
  return out;
}

TEST_P(StoreContractTest, ChangedPeripheriesHoldEverySaveSinceTheLastRead) {
  Store& store = Open();
  const auto online = varan::v1::PERIPHERY_STATE_ONLINE;
  StoredPeriphery a = MakePeriphery("a1", "alpha", online);
  StoredPeriphery b = MakePeriphery("b2", "beta", online);
  store.SavePeriphery(a);
  store.SavePeriphery(b);
  ASSERT_TRUE(store.Sync().ok());

  // From the start: all of them, ordered by id.
  uint64_t cursor = 0;
  auto first = store.LoadChangedPeripheries(&cursor);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(Rows(*first), Rows({a, b}));

  // A change, a removal and a new one since: all three are read again.
  StoredPeriphery a2 = a;
  a2.info.set_state(varan::v1::PERIPHERY_STATE_OFFLINE);
  a2.credential = "rotated";
  StoredPeriphery removed = b;
  removed.info.set_state(varan::v1::PERIPHERY_STATE_REMOVED);
  removed.credential.clear();
  StoredPeriphery c = MakePeriphery("c3", "gamma", online);
  store.SavePeriphery(a2);
  store.SavePeriphery(removed);
  store.SavePeriphery(c);
  ASSERT_TRUE(store.Sync().ok());
  auto second = store.LoadChangedPeripheries(&cursor);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(Rows(*second), IsSupersetOf(Rows({a2, removed, c})));
  // Whatever else it reads is current too.
  auto all = store.LoadPeripheries();
  ASSERT_TRUE(all.ok()) << all.status();
  for (const std::string& row : Rows(*second)) {
    EXPECT_THAT(Rows(*all), Contains(row));
  }

  // One more change after that read is not missed either.
  StoredPeriphery c2 = c;
  c2.info.set_name("gamma-2");
  store.SavePeriphery(c2);
  ASSERT_TRUE(store.Sync().ok());
  auto third = store.LoadChangedPeripheries(&cursor);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_THAT(Rows(*third), Contains(Rows({c2})[0]));
}

}  // namespace
}  // namespace varan::core
