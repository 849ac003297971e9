// PostgresCluster (core/cluster/postgres_cluster.h) on a real PostgreSQL
// 15: the Cluster contract suite (tests/unit/store/cluster_contract_test.cc,
// compiled into this binary), with a short ttl and real time passing, and
// what only a server has: its restart.
#include "core/cluster/postgres_cluster.h"

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/postgres/test_postgres.h"
#include "tests/unit/store/cluster_contract.h"

namespace varan::core::cluster_test {
namespace {

using varan::testing::TestPostgres;

TestPostgres& Server() { return varan::testing::SharedTestPostgres(); }
std::string NewDatabase() { return varan::testing::NewTestDatabase("cluster"); }

ClusterOptions OptionsFor(const std::string& id,
                          std::vector<std::string> leases, absl::Duration ttl) {
  ClusterOptions options;
  options.replica_id = id;
  options.address = "addr-of-" + id;
  options.ttl = ttl;
  options.refresh_interval = absl::Milliseconds(200);
  options.leases = std::move(leases);
  return options;
}

// Every replica of one backend on one new database.
class PostgresClusterBackend final : public ClusterBackend {
 public:
  static std::unique_ptr<ClusterBackend> Make() {
    return std::make_unique<PostgresClusterBackend>();
  }
  std::unique_ptr<Cluster> Join(const std::string& id,
                                std::vector<std::string> leases) override {
    auto cluster =
        PostgresCluster::Open(url_, OptionsFor(id, std::move(leases), ttl()));
    EXPECT_TRUE(cluster.ok()) << cluster.status();
    return cluster.ok() ? *std::move(cluster) : nullptr;
  }
  absl::Duration ttl() const override { return absl::Seconds(2); }
  void Advance(absl::Duration d) override { absl::SleepFor(d); }
  void Crash(Cluster& replica) override {
    dynamic_cast<PostgresCluster&>(replica).Crash();
  }

 private:
  const std::string url_ = NewDatabase();
};

// Sync() once the database is back (it fails until then): up to 10 s.
absl::Status SyncOnceBack(PostgresCluster& cluster) {
  absl::Status synced;
  for (int i = 0; i < 100; ++i) {
    synced = cluster.Sync();
    if (synced.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return synced;
}

INSTANTIATE_TEST_SUITE_P(Postgres, ClusterContractTest,
                         ::testing::Values(&PostgresClusterBackend::Make),
                         [](const auto&) { return std::string("Postgres"); });

TEST(PostgresClusterTest, TheDatabaseRestartingLapsesLeasesThenTheyComeBack) {
  const std::string url = NewDatabase();
  auto a = PostgresCluster::Open(
      url, OptionsFor("r-a", {"sweep"}, absl::Seconds(2)));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->Sync().ok());
  ASSERT_TRUE((*a)->Holds("sweep"));
  Server().Stop();
  // Renewals fail: the lease lapses by this replica's clock, so nobody
  // holds it twice once the database is back.
  EXPECT_FALSE((*a)->Sync().ok());
  absl::SleepFor(absl::Seconds(2) + absl::Milliseconds(300));
  EXPECT_FALSE((*a)->Holds("sweep"));
  (*a)->Connected("p-1");  // waits for the database
  ASSERT_TRUE(Server().Start().ok());
  const absl::Status back = SyncOnceBack(**a);
  ASSERT_TRUE(back.ok()) << back;
  EXPECT_TRUE((*a)->Holds("sweep"));
  ASSERT_TRUE((*a)->OwnerOf("p-1").has_value());
  EXPECT_EQ((*a)->OwnerOf("p-1")->replica.id, "r-a");
}

// Every replica loses the database for longer than the ttl. The first one
// back must not take the others for dead (and take over their jobs) before
// they had a ttl to reconnect too; one that does not come back leaves the
// view once that ttl has passed.
TEST(PostgresClusterTest, AfterAnOutageTheOthersHaveATtlToComeBack) {
  const std::string url = NewDatabase();
  constexpr absl::Duration kTtl = absl::Seconds(2);
  auto a = PostgresCluster::Open(url, OptionsFor("r-a", {}, kTtl));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = PostgresCluster::Open(url, OptionsFor("r-b", {}, kTtl));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*a)->Sync().ok());
  ASSERT_EQ((*a)->Replicas().size(), 2u);
  Server().Stop();
  (*b)->Crash();  // b never renews again
  absl::SleepFor(kTtl + absl::Milliseconds(500));
  // The view keeps its last answers meanwhile.
  EXPECT_EQ((*a)->Replicas().size(), 2u);
  ASSERT_TRUE(Server().Start().ok());
  const absl::Status back = SyncOnceBack(**a);
  ASSERT_TRUE(back.ok()) << back;
  const absl::Time since = absl::Now();
  // b's membership expired in the database, yet it still counts as live.
  auto replicas = (*a)->Replicas();
  EXPECT_EQ(replicas.size(), 2u);
  // Gone once the ttl passed without a renewal.
  bool gone = false;
  while (!gone && absl::Now() - since < kTtl + absl::Seconds(3)) {
    absl::SleepFor(absl::Milliseconds(100));
    gone = (*a)->Replicas().size() == 1u;
  }
  EXPECT_TRUE(gone);
  EXPECT_GE(absl::Now() - since, kTtl - absl::Milliseconds(500));
}

TEST(PostgresClusterTest,
     AnUnreachableDatabaseIsAClearErrorWithoutThePassword) {
  const std::string url =
      absl::StrCat("postgresql://varan:hunter2-secret@", Server().host(), ":",
                   Server().port() == 1 ? 2 : 1, "/x");
  auto cluster =
      PostgresCluster::Open(url, OptionsFor("r-a", {}, absl::Seconds(2)));
  ASSERT_FALSE(cluster.ok());
  EXPECT_EQ(cluster.status().code(), absl::StatusCode::kUnavailable)
      << cluster.status();
  EXPECT_EQ(cluster.status().message().find("hunter2"), std::string::npos)
      << cluster.status();
}

}  // namespace
}  // namespace varan::core::cluster_test
