// Tests for core/jobs/job_owner.h: which replica answers for a job, from
// the tag at the end of its id.
#include "core/jobs/job_owner.h"

#include <memory>
#include <string>

#include "common/clock.h"
#include "core/cluster/memory_cluster.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

TEST(JobOwnerTest, TagsComeFromReplicaIdsAndJobIds) {
  EXPECT_EQ(ReplicaTag("r-0123456789abcdef"), "01234567");
  EXPECT_EQ(ReplicaTag("r-0123"), "");              // too short
  EXPECT_EQ(ReplicaTag("x-0123456789abcdef"), "");  // not a replica id
  EXPECT_EQ(ReplicaTag("r-0123456z89abcdef"), "");  // not hex
  // 11 digits of milliseconds, 3 of a counter, the 8 of the tag.
  EXPECT_EQ(JobTag("1a24d10fdbc00055205018"), "55205018");
  // A core alone's ids have 6 random characters instead: no tag.
  EXPECT_EQ(JobTag("1a24d10fdbc000a1b2c3"), "");
  EXPECT_EQ(JobTag(""), "");
}

class JobOwnersTest : public ::testing::Test {
 protected:
  std::unique_ptr<MemoryCluster> Join(const std::string& id) {
    ClusterOptions o;
    o.replica_id = id;
    o.address = id + ":7700";
    o.ttl = absl::Seconds(10);
    o.leases = {kJobsLease};
    return std::make_unique<MemoryCluster>(state_, o);
  }
  static std::string JobOf(const std::string& replica_id) {
    return "1a24d10fdbc000" + ReplicaTag(replica_id);
  }

  FakeClock clock_;
  std::shared_ptr<MemoryClusterState> state_ =
      std::make_shared<MemoryClusterState>(&clock_);
};

TEST_F(JobOwnersTest, ALiveCreatorAnswersForItsJobsAndNobodyElse) {
  auto a = Join("r-aaaaaaaa00000001");
  auto b = Join("r-bbbbbbbb00000002");
  JobOwners on_a(a.get()), on_b(b.get());
  ASSERT_TRUE(b->Holds(kJobsLease));  // even the jobs lease's holder
  const std::string job = JobOf(a->self().id);
  EXPECT_TRUE(on_a.OwnsHere(job));
  EXPECT_FALSE(on_b.OwnsHere(job));
  auto creator = on_b.CreatorOf(job);
  ASSERT_TRUE(creator.has_value());
  EXPECT_EQ(creator->address, "r-aaaaaaaa00000001:7700");
  EXPECT_EQ(on_a.tag(), "aaaaaaaa");
}

TEST_F(JobOwnersTest, TheJobsOfADeadReplicaGoToTheJobsLeaseHolder) {
  auto a = Join("r-aaaaaaaa00000001");
  auto b = Join("r-bbbbbbbb00000002");
  auto c = Join("r-cccccccc00000003");
  JobOwners on_b(b.get()), on_c(c.get());
  const std::string job = JobOf(a->self().id);
  a->Crash();
  // Live until its TTL runs out: nobody takes its jobs yet.
  EXPECT_FALSE(on_b.OwnsHere(job));
  clock_.Advance(absl::Seconds(11));
  EXPECT_FALSE(on_b.CreatorOf(job).has_value());
  ASSERT_TRUE(c->Holds(kJobsLease));
  EXPECT_TRUE(on_c.OwnsHere(job));
  EXPECT_FALSE(on_b.OwnsHere(job));
  auto adopter = on_b.Adopter();
  ASSERT_TRUE(adopter.has_value());
  EXPECT_EQ(adopter->id, c->self().id);
  // A core alone's jobs (no tag) have no live creator either.
  EXPECT_TRUE(on_c.OwnsHere("1a24d10fdbc000a1b2c3"));
}

TEST_F(JobOwnersTest,
       OrphansAreLookedForWhenSomethingChangedNotOnEveryRefresh) {
  auto a = Join("r-aaaaaaaa00000001");
  auto b = Join("r-bbbbbbbb00000002");
  ASSERT_TRUE(b->Holds(kJobsLease));
  AdoptionSchedule schedule(b.get(), absl::Minutes(1));
  // Just holding the lease: a first look.
  EXPECT_TRUE(schedule.Due(clock_.Now()));
  schedule.Scanned(absl::OkStatus(), clock_.Now());
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(schedule.Due(clock_.Now()));
  // A failed look is tried again at the next refresh.
  a->Crash();
  clock_.Advance(absl::Seconds(11));  // a's membership lapses
  EXPECT_TRUE(schedule.Due(clock_.Now()));
  schedule.Scanned(absl::UnavailableError("database down"), clock_.Now());
  clock_.Advance(absl::Seconds(2));
  EXPECT_TRUE(schedule.Due(clock_.Now()));
  schedule.Scanned(absl::OkStatus(), clock_.Now());
  clock_.Advance(absl::Seconds(2));
  EXPECT_FALSE(schedule.Due(clock_.Now()));
  // The backstop.
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(schedule.Due(clock_.Now()));
}

TEST_F(JobOwnersTest, OnlyTheJobsLeasesHolderLooksForOrphans) {
  auto a = Join("r-aaaaaaaa00000001");
  auto b = Join("r-bbbbbbbb00000002");
  ASSERT_TRUE(a->Holds(kJobsLease));
  AdoptionSchedule schedule(b.get());
  EXPECT_FALSE(schedule.Due(clock_.Now()));
  // a dies: b takes the lease and looks at once.
  a->Crash();
  clock_.Advance(absl::Seconds(11));
  EXPECT_TRUE(schedule.Due(clock_.Now()));
}

}  // namespace
}  // namespace varan::core
