// The Store contract for join-token uses (StoreContractTest, fixture in
// store_contract.h): UseJoinToken counts them atomically and alone, so that
// replicas sharing a database give a token's last use to one registration.
// Instantiated on every backend with the rest of the suite.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_contract.h"
#include "tests/unit/store/store_test_util.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using namespace store_test;  // NOLINT: the shared test records and fixture

StoredJoinToken JoinToken(const std::string& id, uint32_t max_uses) {
  StoredJoinToken t;
  t.info.set_id(id);
  t.info.set_name("rack-" + id);
  t.info.set_max_uses(max_uses);
  SetTimestamp(kT0, t.info.mutable_create_time());
  t.hash = "hash-" + id;
  return t;
}

// UseJoinToken, waited for.
absl::StatusOr<JoinUses> Use(Store& store, const std::string& id, JoinUse use) {
  absl::Notification done;
  absl::StatusOr<JoinUses> out;
  store.UseJoinToken(id, use, [&](absl::StatusOr<JoinUses> r) {
    out = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

uint32_t StoredUses(Store& store, const std::string& id) {
  auto joins = store.LoadJoinTokens();
  EXPECT_TRUE(joins.ok()) << joins.status();
  if (!joins.ok()) return 0;
  for (const StoredJoinToken& t : *joins) {
    if (t.info.id() == id) return t.info.uses();
  }
  ADD_FAILURE() << "no join token " << id;
  return 0;
}

TEST_P(StoreContractTest, JoinTokenUsesAreTakenUpToTheLimitAndGivenBack) {
  Store& store = Open();
  store.SaveJoinToken(JoinToken("j1", 2), nullptr);
  ASSERT_TRUE(store.Sync().ok());

  for (uint32_t want = 1; want <= 2; ++want) {
    auto taken = Use(store, "j1", JoinUse::kTake);
    ASSERT_TRUE(taken.ok()) << taken.status();
    EXPECT_TRUE(taken->taken);
    EXPECT_EQ(taken->token.uses(), want);
    EXPECT_EQ(taken->token.name(), "rack-j1");
  }
  // The third is refused, and nothing changes.
  auto refused = Use(store, "j1", JoinUse::kTake);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_FALSE(refused->taken);
  EXPECT_EQ(refused->token.uses(), 2u);
  EXPECT_EQ(StoredUses(store, "j1"), 2u);

  // A use given back can be taken again.
  auto back = Use(store, "j1", JoinUse::kGiveBack);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->token.uses(), 1u);
  auto again = Use(store, "j1", JoinUse::kTake);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->taken);

  // Never below zero.
  store.SaveJoinToken(JoinToken("j2", 0), nullptr);
  auto none = Use(store, "j2", JoinUse::kGiveBack);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->token.uses(), 0u);
  // No limit: always taken, and counted.
  for (int i = 0; i < 3; ++i) {
    auto r = Use(store, "j2", JoinUse::kTake);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->taken);
  }
  EXPECT_EQ(StoredUses(store, "j2"), 3u);

  auto unknown = Use(store, "nope", JoinUse::kTake);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("nope"));
  // That error is also the next Sync's, like any failed write.
  EXPECT_FALSE(store.Sync().ok());
}

// A replica saving its copy of a token (revoking it) after another replica
// counted registrations does not undo them; a revoked token gives no use.
TEST_P(StoreContractTest, SavingAJoinTokenKeepsItsStoredUses) {
  Store& store = Open();
  StoredJoinToken copy = JoinToken("j1", 5);
  store.SaveJoinToken(copy, nullptr);
  ASSERT_TRUE(Use(store, "j1", JoinUse::kTake).ok());
  ASSERT_TRUE(Use(store, "j1", JoinUse::kTake).ok());

  SetTimestamp(kT0 + absl::Minutes(1), copy.info.mutable_revoke_time());
  copy.info.set_revoked_by("admin");
  ASSERT_EQ(copy.info.uses(), 0u);
  store.SaveJoinToken(copy, nullptr);
  ASSERT_TRUE(store.Sync().ok());
  auto joins = store.LoadJoinTokens();
  ASSERT_TRUE(joins.ok()) << joins.status();
  ASSERT_EQ(joins->size(), 1u);
  EXPECT_EQ((*joins)[0].info.uses(), 2u);
  EXPECT_EQ((*joins)[0].info.revoked_by(), "admin");

  auto revoked = Use(store, "j1", JoinUse::kTake);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_FALSE(revoked->taken);
  EXPECT_TRUE(revoked->token.has_revoke_time());
  EXPECT_EQ(StoredUses(store, "j1"), 2u);
}

// Many registrations racing for the last uses: exactly the limit is taken,
// whatever the threads and the batches they land in.
TEST_P(StoreContractTest, RacingUsesTakeExactlyTheLimit) {
  Store& store = Open();
  constexpr uint32_t kLimit = 7;
  store.SaveJoinToken(JoinToken("j1", kLimit), nullptr);
  ASSERT_TRUE(store.Sync().ok());
  std::atomic<int> taken{0}, refused{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto r = Use(store, "j1", JoinUse::kTake);
        if (!r.ok()) {
          ++failed;
        } else if (r->taken) {
          ++taken;
        } else {
          ++refused;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(taken.load(), static_cast<int>(kLimit));
  EXPECT_EQ(refused.load(), 30 - static_cast<int>(kLimit));
  EXPECT_EQ(StoredUses(store, "j1"), kLimit);
}

}  // namespace
}  // namespace varan::core
