// Tests for the fleet shared by core replicas (core/fleet/registry.h,
// "Replicas"): two FleetRegistry on one store and one MemoryCluster, on a
// fake clock.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"
#include "core/cluster/memory_cluster.h"
#include "core/fleet/registry.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kInterval = absl::Seconds(10);  // fleet TTL: 30 s
constexpr absl::Duration kClusterTtl = absl::Seconds(10);

struct Replica {
  std::unique_ptr<MemoryCluster> cluster;
  std::unique_ptr<FleetRegistry> fleet;
  std::vector<std::pair<std::string, std::string>> gone;
  // Crashed: its process is gone, so it neither ticks nor refreshes.
  bool dead = false;
};

class SharedFleetTest : public ::testing::Test {
 protected:
  SharedFleetTest() {
    state_ = std::make_shared<MemoryClusterState>(&clock_);
    for (const char* id : {"r-a", "r-b"}) {
      auto r = std::make_unique<Replica>();
      ClusterOptions options;
      options.replica_id = id;
      options.address = std::string(id) + ":7700";
      options.ttl = kClusterTtl;
      options.leases = {kLivenessLease};
      r->cluster = std::make_unique<MemoryCluster>(state_, options);
      r->fleet = std::make_unique<FleetRegistry>(
          &clock_, FleetOptions{kInterval, /*ttl_intervals=*/3}, &store_,
          r->cluster.get());
      EXPECT_TRUE(r->fleet->Load().ok());
      Replica* raw = r.get();
      r->fleet->SetGoneListener(
          [raw](const std::string& who, const std::string& reason) {
            raw->gone.emplace_back(who, reason);
          });
      replicas_.push_back(std::move(r));
    }
  }

  void Crash(size_t i) {
    replicas_[i]->cluster->Crash();
    replicas_[i]->dead = true;
  }

  FleetRegistry& a() { return *replicas_[0]->fleet; }
  FleetRegistry& b() { return *replicas_[1]->fleet; }

  void RefreshAll() {
    for (auto& r : replicas_) {
      if (r->dead) continue;
      ASSERT_TRUE(r->fleet->Refresh().ok());
    }
  }
  void TickAll() {
    for (auto& r : replicas_) {
      if (!r->dead) r->fleet->Tick();
    }
  }

  // Registers `name` on `fleet` and heartbeats it there once.
  FleetRegistry::Registration Join(FleetRegistry& fleet,
                                   const std::string& name) {
    varan::v1::RegisterRequest req;
    req.set_name(name);
    (*req.mutable_labels())["env"] = "prod";
    auto reg = fleet.Register(req, "10.0.0.9", varan::v1::CONNECTION_TUNNEL);
    EXPECT_TRUE(reg.ok()) << reg.status();
    if (!reg.ok()) return {};
    EXPECT_TRUE(Beat(fleet, *reg).ok());
    return *reg;
  }
  absl::Status Beat(FleetRegistry& fleet,
                    const FleetRegistry::Registration& reg) {
    return fleet.Heartbeat(reg.id, reg.credential, varan::v1::HostStats(),
                           "10.0.0.9");
  }

  varan::v1::PeripheryState StateOn(FleetRegistry& fleet,
                                    const std::string& name) {
    auto p = fleet.Get(name);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? p->state() : varan::v1::PERIPHERY_STATE_UNSPECIFIED;
  }

  // Advances `total` in steps, ticking and refreshing every replica.
  void Run(absl::Duration total, absl::Duration step = absl::Seconds(2)) {
    for (absl::Duration t; t < total; t += step) {
      clock_.Advance(step);
      RefreshAll();
      TickAll();
    }
  }

  FakeClock clock_;
  MemoryStore store_;
  std::shared_ptr<MemoryClusterState> state_;
  std::vector<std::unique_ptr<Replica>> replicas_;
};

TEST_F(SharedFleetTest, APeripheryRegisteredOnOneReplicaIsServedByTheOther) {
  auto reg = Join(a(), "web-1");
  // Not known to b until it re-reads the store.
  EXPECT_FALSE(b().Get("web-1").ok());
  RefreshAll();
  EXPECT_EQ(StateOn(b(), "web-1"), varan::v1::PERIPHERY_STATE_ONLINE);
  auto resolved = b().Resolve(varan::v1::Target());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  ASSERT_EQ(resolved->size(), 1u);
  EXPECT_EQ((*resolved)[0].credential, reg.credential);
  EXPECT_TRUE((*resolved)[0].online);
  // Replica a holds its connection.
  auto owner = replicas_[1]->cluster->OwnerOf(reg.id);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->replica.id, "r-a");
}

TEST_F(SharedFleetTest, StaysOnlineEverywhereWhileItsHeartbeatsGoToOneReplica) {
  auto reg = Join(a(), "web-1");
  // A minute and more: far past the TTL for b, which never hears from it.
  for (int i = 0; i < 10; ++i) {
    Run(absl::Seconds(8));
    ASSERT_TRUE(Beat(a(), reg).ok());
  }
  EXPECT_EQ(StateOn(b(), "web-1"), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_THAT(replicas_[1]->gone, IsEmpty());
}

TEST_F(SharedFleetTest, MovingToAnotherReplicaIsNotGoingOffline) {
  auto reg = Join(a(), "web-1");
  RefreshAll();
  // Its replica stops answering; it heartbeats to the other one instead.
  Crash(0);
  for (int i = 0; i < 10; ++i) {
    Run(absl::Seconds(8));
    ASSERT_TRUE(Beat(b(), reg).ok());
  }
  EXPECT_EQ(StateOn(b(), "web-1"), varan::v1::PERIPHERY_STATE_ONLINE);
  EXPECT_THAT(replicas_[1]->gone, IsEmpty());
  auto owner = replicas_[1]->cluster->OwnerOf(reg.id);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->replica.id, "r-b");
}

TEST_F(SharedFleetTest, APeripheryThatStopsGoesOfflineOnEveryReplica) {
  auto reg = Join(a(), "web-1");
  RefreshAll();
  Run(absl::Seconds(80));
  EXPECT_EQ(StateOn(a(), "web-1"), varan::v1::PERIPHERY_STATE_OFFLINE);
  EXPECT_EQ(StateOn(b(), "web-1"), varan::v1::PERIPHERY_STATE_OFFLINE);
  for (auto& r : replicas_) {
    ASSERT_EQ(r->gone.size(), 1u) << r->cluster->self().id;
    EXPECT_EQ(r->gone[0].first, reg.id);
  }
  EXPECT_FALSE(replicas_[1]->cluster->OwnerOf(reg.id).has_value());
  // What was stored says so too (written once, by the replica that held it).
  auto stored = store_.LoadPeripheries();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].info.state(), varan::v1::PERIPHERY_STATE_OFFLINE);
}

TEST_F(SharedFleetTest, WhenItsReplicaDiesItGoesOfflineAfterTheTtls) {
  auto reg = Join(a(), "web-1");
  RefreshAll();
  Crash(0);
  // b counts one fleet TTL from the last refresh that saw a's claim before
  // giving it up.
  Run(absl::Seconds(28));
  EXPECT_EQ(StateOn(b(), "web-1"), varan::v1::PERIPHERY_STATE_ONLINE);
  Run(absl::Seconds(20));
  EXPECT_EQ(StateOn(b(), "web-1"), varan::v1::PERIPHERY_STATE_OFFLINE);
  ASSERT_EQ(replicas_[1]->gone.size(), 1u);
  EXPECT_THAT(replicas_[1]->gone[0].second,
              HasSubstr("no core replica holds its connection"));
  // b holds the liveness lease now and writes it down.
  auto stored = store_.LoadPeripheries();
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ((*stored)[0].info.state(), varan::v1::PERIPHERY_STATE_OFFLINE);
}

TEST_F(SharedFleetTest, LabelsSetThroughOneReplicaSurviveTheOthersWrites) {
  auto reg = Join(a(), "web-1");
  RefreshAll();
  varan::v1::UpdateLabelsRequest update;
  update.set_name_or_id("web-1");
  (*update.mutable_set())["tier"] = "db";
  ASSERT_TRUE(b().UpdateLabels(update).ok());
  // a keeps receiving heartbeats and writing stats: the label stays.
  for (int i = 0; i < 10; ++i) {
    Run(absl::Seconds(8));
    ASSERT_TRUE(Beat(a(), reg).ok());
  }
  for (FleetRegistry* fleet : {&a(), &b()}) {
    auto p = fleet->Get("web-1");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->labels().at("tier"), "db");
  }
  auto selected = a().List([] {
    varan::v1::Target t;
    t.set_selector("tier=db");
    return t;
  }());
  ASSERT_TRUE(selected.ok());
  ASSERT_EQ(selected->size(), 1u);
}

TEST_F(SharedFleetTest, RemovedThroughOneReplicaIsGoneFromTheOther) {
  auto reg = Join(a(), "web-1");
  RefreshAll();
  ASSERT_TRUE(b().Remove("web-1").ok());
  RefreshAll();
  EXPECT_FALSE(a().Get("web-1").ok());
  EXPECT_EQ(Beat(a(), reg).code(), absl::StatusCode::kNotFound);
  ASSERT_EQ(replicas_[0]->gone.size(), 1u);
  EXPECT_THAT(replicas_[0]->gone[0].second, HasSubstr("removed"));
  EXPECT_FALSE(replicas_[1]->cluster->OwnerOf(reg.id).has_value());
}

TEST_F(SharedFleetTest, ThePinsAPeripheryTrustsAreKnownToEveryReplica) {
  const FleetRegistry::Registration p1 = Join(a(), "p1");
  const FleetRegistry::Registration p2 = Join(b(), "p2");
  a().Trusts(p1.id, {"sha256:old"});
  b().Trusts(p2.id, {"sha256:old"});
  RefreshAll();
  EXPECT_THAT(a().NotTrusting({"sha256:old"}), IsEmpty());
  // A rotation adds a pin: p1 says it trusts it, to replica a only (b
  // lists the peripheries not trusting it by name).
  a().Trusts(p1.id, {"sha256:new", "sha256:old"});
  EXPECT_THAT(b().NotTrusting({"sha256:new", "sha256:old"}),
              ::testing::ElementsAre(p1.id, p2.id));
  RefreshAll();
  EXPECT_THAT(b().NotTrusting({"sha256:new", "sha256:old"}),
              ::testing::ElementsAre(p2.id));
  // What b receives from p2 itself is not undone by a refresh.
  b().Trusts(p2.id, {"sha256:new", "sha256:old"});
  RefreshAll();
  EXPECT_THAT(b().NotTrusting({"sha256:new", "sha256:old"}), IsEmpty());
  EXPECT_THAT(a().NotTrusting({"sha256:new", "sha256:old"}), IsEmpty());
  auto got = a().Get("p2");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_THAT(got->trusted_ca_pins(),
              ::testing::ElementsAre("sha256:new", "sha256:old"));
  // A removed periphery is not waited for.
  ASSERT_TRUE(a().Remove("p1").ok());
  EXPECT_THAT(a().NotTrusting({"sha256:newer"}), ::testing::ElementsAre(p2.id));
}

}  // namespace
}  // namespace varan::core
