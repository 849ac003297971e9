// The Cluster contract (core/cluster/cluster.h) for every backend; see
// cluster_contract.h.
#include "tests/unit/store/cluster_contract.h"

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core::cluster_test {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

std::vector<std::string> Ids(const std::vector<ReplicaInfo>& replicas) {
  std::vector<std::string> ids;
  for (const ReplicaInfo& r : replicas) ids.push_back(r.id);
  return ids;
}

void SyncAll(std::initializer_list<Cluster*> replicas) {
  for (Cluster* c : replicas) ASSERT_TRUE(c->Sync().ok());
  // A second round: each sees what the others recorded in the first.
  for (Cluster* c : replicas) ASSERT_TRUE(c->Sync().ok());
}

TEST_P(ClusterContractTest, LiveReplicasSeeEachOtherAndALeaverGoes) {
  auto b = backend().Join("r-b", {});
  auto a = backend().Join("r-a", {});
  SyncAll({a.get(), b.get()});
  EXPECT_EQ(a->self().id, "r-a");
  EXPECT_THAT(Ids(a->Replicas()), ElementsAre("r-a", "r-b"));
  EXPECT_THAT(Ids(b->Replicas()), ElementsAre("r-a", "r-b"));
  EXPECT_THAT(a->Replicas(),
              ElementsAre(Field(&ReplicaInfo::address, "addr-of-r-a"),
                          Field(&ReplicaInfo::address, "addr-of-r-b")));
  b.reset();
  ASSERT_TRUE(a->Sync().ok());
  EXPECT_THAT(Ids(a->Replicas()), ElementsAre("r-a"));
}

TEST_P(ClusterContractTest, ALeaseIsHeldByOneReplicaAndMovesWhenItLeaves) {
  auto a = backend().Join("r-a", {"sweep"});
  auto b = backend().Join("r-b", {"sweep"});
  SyncAll({a.get(), b.get()});
  ASSERT_NE(a->Holds("sweep"), b->Holds("sweep"));
  EXPECT_FALSE(a->Holds("retention"));  // nobody wants it
  std::unique_ptr<Cluster>& holder = a->Holds("sweep") ? a : b;
  std::unique_ptr<Cluster>& other = a->Holds("sweep") ? b : a;
  // Held on: renewals keep it with its holder.
  SyncAll({a.get(), b.get()});
  EXPECT_TRUE(holder->Holds("sweep"));
  EXPECT_FALSE(other->Holds("sweep"));
  // Both know who holds it (where a duty's work is to be sent).
  for (Cluster* c : {a.get(), b.get()}) {
    auto h = c->HolderOf("sweep");
    ASSERT_TRUE(h.has_value()) << c->self().id;
    EXPECT_EQ(h->id, holder->self().id);
    EXPECT_EQ(h->address, "addr-of-" + holder->self().id);
    EXPECT_FALSE(c->HolderOf("retention").has_value());
  }
  const std::string gone = holder->self().id;
  holder.reset();
  ASSERT_TRUE(other->Sync().ok());
  EXPECT_TRUE(other->Holds("sweep"));
  ASSERT_TRUE(other->Sync().ok());
  auto h = other->HolderOf("sweep");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->id, other->self().id) << "still " << gone;
}

TEST_P(ClusterContractTest, ADeadReplicasLeaseMovesOnlyAfterItsTtl) {
  auto a = backend().Join("r-a", {"sweep"});
  ASSERT_TRUE(a->Sync().ok());
  ASSERT_TRUE(a->Holds("sweep"));
  auto b = backend().Join("r-b", {"sweep"});
  ASSERT_TRUE(b->Sync().ok());
  EXPECT_FALSE(b->Holds("sweep"));
  backend().Crash(*a);
  EXPECT_FALSE(a->Holds("sweep"));  // a dead replica holds nothing
  ASSERT_TRUE(b->Sync().ok());
  EXPECT_FALSE(b->Holds("sweep")) << "taken before the holder's ttl ran out";
  EXPECT_THAT(Ids(b->Replicas()), ElementsAre("r-a", "r-b"));
  backend().Advance(backend().ttl() + absl::Milliseconds(500));
  ASSERT_TRUE(b->Sync().ok());
  EXPECT_TRUE(b->Holds("sweep"));
  EXPECT_THAT(Ids(b->Replicas()), ElementsAre("r-b"));
}

TEST_P(ClusterContractTest, TheNewestConnectionWinsWithAGreaterEpoch) {
  auto a = backend().Join("r-a", {});
  auto b = backend().Join("r-b", {});
  EXPECT_EQ(a->OwnerOf("p-1"), std::nullopt);
  a->Connected("p-1");
  SyncAll({a.get(), b.get()});
  std::optional<PeripheryOwner> first = b->OwnerOf("p-1");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->replica.id, "r-a");
  EXPECT_EQ(first->replica.address, "addr-of-r-a");
  EXPECT_EQ(a->HoldingOf("p-1"), Holding::kHere);
  EXPECT_EQ(b->HoldingOf("p-1"), Holding::kElsewhere);
  // The periphery moves to b.
  b->Connected("p-1");
  SyncAll({b.get(), a.get()});
  std::optional<PeripheryOwner> second = a->OwnerOf("p-1");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->replica.id, "r-b");
  EXPECT_GT(second->epoch, first->epoch);
  EXPECT_EQ(a->HoldingOf("p-1"), Holding::kElsewhere);
  EXPECT_EQ(b->HoldingOf("p-1"), Holding::kHere);
  // a noticing its old connection closed does not undo b's claim.
  a->Disconnected("p-1");
  SyncAll({a.get(), b.get()});
  ASSERT_TRUE(b->OwnerOf("p-1").has_value());
  EXPECT_EQ(b->OwnerOf("p-1")->replica.id, "r-b");
  b->Disconnected("p-1");
  SyncAll({b.get(), a.get()});
  EXPECT_EQ(a->OwnerOf("p-1"), std::nullopt);
  EXPECT_EQ(b->OwnerOf("p-1"), std::nullopt);
  EXPECT_EQ(a->HoldingOf("p-1"), Holding::kNowhere);
  EXPECT_EQ(b->HoldingOf("p-1"), Holding::kNowhere);
}

TEST_P(ClusterContractTest, ConnectionsOfALeaverOrADeadReplicaHaveNoOwner) {
  auto a = backend().Join("r-a", {});
  auto b = backend().Join("r-b", {});
  auto c = backend().Join("r-c", {});
  a->Connected("p-a");
  b->Connected("p-b");
  SyncAll({a.get(), b.get(), c.get()});
  ASSERT_TRUE(c->OwnerOf("p-a").has_value());
  ASSERT_TRUE(c->OwnerOf("p-b").has_value());
  a.reset();  // leaves: at once
  ASSERT_TRUE(c->Sync().ok());
  EXPECT_EQ(c->OwnerOf("p-a"), std::nullopt);
  EXPECT_EQ(c->HoldingOf("p-a"), Holding::kNowhere);
  backend().Crash(*b);  // dies: after its ttl
  ASSERT_TRUE(c->Sync().ok());
  ASSERT_TRUE(c->OwnerOf("p-b").has_value());
  EXPECT_EQ(c->HoldingOf("p-b"), Holding::kElsewhere);
  backend().Advance(backend().ttl() + absl::Milliseconds(500));
  ASSERT_TRUE(c->Sync().ok());
  EXPECT_EQ(c->OwnerOf("p-b"), std::nullopt);
  EXPECT_EQ(c->HoldingOf("p-b"), Holding::kNowhere);
  // A new claim after that is owned again.
  c->Connected("p-b");
  ASSERT_TRUE(c->Sync().ok());
  ASSERT_TRUE(c->OwnerOf("p-b").has_value());
  EXPECT_EQ(c->OwnerOf("p-b")->replica.id, "r-c");
}

// Thousands of peripheries connecting at once (a replica starting, or the
// fleet moving to it): every claim is recorded, and the claimer stays live
// for the others meanwhile.
TEST_P(ClusterContractTest, ThousandsOfClaimsAtOnceAreAllRecorded) {
  auto a = backend().Join("r-a", {});
  auto b = backend().Join("r-b", {});
  SyncAll({a.get(), b.get()});
  for (int i = 0; i < 1500; ++i) a->Connected(absl::StrCat("p", i));
  ASSERT_TRUE(a->Sync().ok());
  ASSERT_TRUE(b->Sync().ok());
  EXPECT_THAT(Ids(b->Replicas()), ElementsAre("r-a", "r-b"));
  int owned = 0;
  for (int i = 0; i < 1500; ++i) {
    auto owner = b->OwnerOf(absl::StrCat("p", i));
    if (owner.has_value() && owner->replica.id == "r-a") ++owned;
  }
  EXPECT_EQ(owned, 1500);
}

TEST_P(ClusterContractTest, ManyLeasesNoneHeldTwice) {
  const std::vector<std::string> names = {"l1", "l2", "l3", "l4", "l5"};
  std::vector<std::unique_ptr<Cluster>> replicas;
  for (int i = 0; i < 3; ++i) {
    replicas.push_back(backend().Join("r-" + std::to_string(i), names));
  }
  for (int round = 0; round < 2; ++round) {
    for (auto& r : replicas) ASSERT_TRUE(r->Sync().ok());
  }
  for (const std::string& name : names) {
    int holders = 0;
    for (auto& r : replicas) holders += r->Holds(name) ? 1 : 0;
    EXPECT_EQ(holders, 1) << name;
  }
}

TEST_P(ClusterContractTest, OnlyAReplicaWhoseMembershipLapsedIsFenced) {
  auto a = backend().Join("r-0000000a00000001", {});
  auto b = backend().Join("r-0000000b00000001", {});
  SyncAll({a.get(), b.get()});
  const std::string tag = ReplicaTag(b->self().id);
  ASSERT_EQ(tag, "0000000b");
  // Live: never fenced.
  const absl::Status live = a->Fence(tag);
  EXPECT_EQ(live.code(), absl::StatusCode::kFailedPrecondition) << live;
  SyncAll({a.get(), b.get()});
  EXPECT_FALSE(b->Fenced());
  EXPECT_THAT(Ids(a->Replicas()), ElementsAre(a->self().id, b->self().id));
  // Dead once its ttl passed.
  backend().Crash(*b);
  backend().Advance(backend().ttl() + absl::Milliseconds(500));
  EXPECT_TRUE(a->Fence(tag).ok());
  EXPECT_TRUE(a->Fence(tag).ok()) << "fenced before";
  EXPECT_TRUE(a->Fence("0000000c").ok()) << "no replica has that tag";
  // The one that fenced it goes on.
  ASSERT_TRUE(a->Sync().ok());
  EXPECT_FALSE(a->Fenced());
  EXPECT_THAT(Ids(a->Replicas()), ElementsAre(a->self().id));
}

TEST_P(ClusterContractTest, TheFirstProposalOfASettingIsKeptForEveryone) {
  auto a = backend().Join("r-a", {});
  auto b = backend().Join("r-b", {});
  // Both propose at once; one proposal wins, and both get that one.
  absl::StatusOr<std::string> from_a, from_b;
  std::thread ta([&] { from_a = a->Agree("ca", "proposed by a"); });
  std::thread tb([&] { from_b = b->Agree("ca", "proposed by b"); });
  ta.join();
  tb.join();
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  EXPECT_EQ(*from_a, *from_b);
  EXPECT_THAT(*from_a, ::testing::AnyOf("proposed by a", "proposed by b"));
  // Kept for good: later proposals, and replicas joining later, get it.
  auto c = backend().Join("r-c", {});
  EXPECT_EQ(c->Agree("ca", "proposed by c").value_or(""), *from_a);
  EXPECT_EQ(a->Agree("ca", "again").value_or(""), *from_a);
  // Settings are independent of each other, and values are kept whole.
  const std::string lines = "multi\nline\n-----END-----\n";
  EXPECT_EQ(b->Agree("other", lines).value_or(""), lines);
  EXPECT_EQ(a->Agree("other", "x").value_or(""), lines);
}

TEST_P(ClusterContractTest, ASettingIsReplacedOnlyFromTheValueItHolds) {
  auto a = backend().Join("r-a", {});
  auto b = backend().Join("r-b", {});
  EXPECT_EQ(a->Setting("rotation").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(a->Replace("rotation", "", "x").code(),
            absl::StatusCode::kNotFound);
  ASSERT_EQ(a->Agree("rotation", "v1").value_or(""), "v1");
  // Two replicas replace v1 at once: exactly one wins.
  absl::Status from_a, from_b;
  std::thread ta([&] { from_a = a->Replace("rotation", "v1", "v2 by a"); });
  std::thread tb([&] { from_b = b->Replace("rotation", "v1", "v2 by b"); });
  ta.join();
  tb.join();
  ASSERT_NE(from_a.ok(), from_b.ok()) << from_a << " / " << from_b;
  const absl::Status& lost = from_a.ok() ? from_b : from_a;
  EXPECT_EQ(lost.code(), absl::StatusCode::kAborted) << lost;
  const std::string won = from_a.ok() ? "v2 by a" : "v2 by b";
  // Everyone reads the new value, and Agree answers it from now on.
  EXPECT_EQ(b->Setting("rotation").value_or(""), won);
  auto c = backend().Join("r-c", {});
  EXPECT_EQ(c->Setting("rotation").value_or(""), won);
  EXPECT_EQ(c->Agree("rotation", "proposed by c").value_or(""), won);
  // From the value it holds, whole (lines, PEM-like text).
  const std::string pem = "phase\n-----BEGIN X-----\nAAA\n-----END X-----\n";
  EXPECT_TRUE(c->Replace("rotation", won, pem).ok());
  EXPECT_EQ(a->Setting("rotation").value_or(""), pem);
  EXPECT_EQ(a->Replace("rotation", won, "stale").code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(b->Setting("rotation").value_or(""), pem);
}

}  // namespace
}  // namespace varan::core::cluster_test
