// The Cluster contract suite (cluster_contract_test.cc) on MemoryCluster:
// replicas in one process sharing a MemoryClusterState, on a fake clock.
// PostgresCluster's instantiation is in tests/postgres/.
#include "core/cluster/memory_cluster.h"

#include "tests/unit/store/cluster_contract.h"

namespace varan::core::cluster_test {
namespace {

class MemoryClusterBackend final : public ClusterBackend {
 public:
  static std::unique_ptr<ClusterBackend> Make() {
    return std::make_unique<MemoryClusterBackend>();
  }
  std::unique_ptr<Cluster> Join(const std::string& id,
                                std::vector<std::string> leases) override {
    ClusterOptions options;
    options.replica_id = id;
    options.address = "addr-of-" + id;
    options.ttl = ttl();
    options.leases = std::move(leases);
    return std::make_unique<MemoryCluster>(state_, options);
  }
  absl::Duration ttl() const override { return absl::Seconds(10); }
  void Advance(absl::Duration d) override { clock_.Advance(d); }
  void Crash(Cluster& replica) override {
    dynamic_cast<MemoryCluster&>(replica).Crash();
  }

 private:
  FakeClock clock_;
  std::shared_ptr<MemoryClusterState> state_ =
      std::make_shared<MemoryClusterState>(&clock_);
};

INSTANTIATE_TEST_SUITE_P(Memory, ClusterContractTest,
                         ::testing::Values(&MemoryClusterBackend::Make),
                         [](const auto&) { return std::string("Memory"); });

TEST(MemoryClusterTest, OneReplicaAloneHoldsWhatItWantsAndEveryConnection) {
  FakeClock clock;
  ClusterOptions options;
  options.leases = {"retention"};
  auto alone = MemoryCluster::Alone(&clock, options);
  EXPECT_TRUE(alone->Holds("retention"));
  EXPECT_EQ(alone->self().id.substr(0, 2), "r-");
  EXPECT_EQ(alone->self().id.size(), 18u);
  alone->Connected("p");
  ASSERT_TRUE(alone->OwnerOf("p").has_value());
  EXPECT_EQ(alone->OwnerOf("p")->replica.id, alone->self().id);
  clock.Advance(absl::Hours(1));  // nothing lapses while it lives
  EXPECT_TRUE(alone->Holds("retention"));
  EXPECT_TRUE(alone->OwnerOf("p").has_value());
}

}  // namespace
}  // namespace varan::core::cluster_test
