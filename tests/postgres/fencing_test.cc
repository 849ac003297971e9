// Fencing (#19): a core replica cut off from the database while the others
// reach it is taken for dead after its membership's ttl, fenced by the
// replica taking over its jobs (Cluster::Fence); once it reaches the
// database again it writes nothing more and stops, and with the real
// binaries it steps down before that, seeing another replica reach the
// database while it cannot — on a real PostgreSQL 15.
//
// "Cut off" is a role of the replica's own (CutOffRole): the test forbids
// it to log in and ends its sessions, which is what a network partition
// between that replica and the database does, except that its reconnects
// are refused at once instead of timing out.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/cluster/postgres_cluster.h"
#include "core/daemon/core_server.h"
#include "core/store/postgres_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/replica_fleet.h"
#include "tests/postgres/test_postgres.h"

namespace varan::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using Rows = std::vector<std::vector<std::string>>;

// A login role for one replica on the database at `url` (a superuser, as
// the test's own role is), which the test can cut off and let back.
class CutOffRole {
 public:
  explicit CutOffRole(std::string url)
      : url_(std::move(url)), role_("cut_" + DatabaseName(url_)) {
    QueryDatabase(url_,
                  absl::StrCat("CREATE ROLE ", role_, " LOGIN SUPERUSER"));
  }
  ~CutOffRole() { Restore(); }

  // The database's URL as this role.
  std::string url() const {
    return absl::StrReplaceAll(
        url_, {{"://varan@", absl::StrCat("://", role_, "@")}});
  }
  // No new session, and the open ones end.
  void Cut() {
    QueryDatabase(url_, absl::StrCat("ALTER ROLE ", role_, " NOLOGIN"));
    QueryDatabase(url_, absl::StrCat("SELECT pg_terminate_backend(pid) FROM "
                                     "pg_stat_activity WHERE usename = '",
                                     role_, "'"));
  }
  void Restore() {
    QueryDatabase(url_, absl::StrCat("ALTER ROLE ", role_, " LOGIN"));
  }

 private:
  const std::string url_;
  const std::string role_;
};

core::ClusterOptions Options(const std::string& id, absl::Duration ttl) {
  core::ClusterOptions options;
  options.replica_id = id;
  options.address = "addr-of-" + id;
  options.ttl = ttl;
  options.refresh_interval = absl::Milliseconds(200);
  return options;
}

core::StoredToken Token(const std::string& name) {
  core::StoredToken t;
  t.info.set_id("t-" + name);
  t.info.set_name(name);
  t.info.set_role(varan::v1::ROLE_OPERATOR);
  t.info.set_state(varan::v1::TOKEN_STATE_ACTIVE);
  t.hash = "hash-" + name;
  return t;
}

// A write's outcome, once it has one.
struct Outcome {
  absl::Notification done;
  absl::Status status;
  core::CommitCallback callback() {
    return [this](const absl::Status& s) {
      status = s;
      done.Notify();
    };
  }
};

TEST(FencingTest, AReplicaFencedWhileCutOffWritesNothingOnceBack) {
  const std::string url = NewTestDatabase("fencing");
  CutOffRole cut(url);
  constexpr absl::Duration kTtl = absl::Seconds(2);
  const std::string a_id = "r-0000000a00000001";
  const std::string b_id = "r-0000000b00000001";
  absl::Notification fenced;
  core::ClusterOptions a_options = Options(a_id, kTtl);
  a_options.on_fenced = [&fenced] { fenced.Notify(); };
  auto a = core::PostgresCluster::Open(cut.url(), a_options);
  ASSERT_TRUE(a.ok()) << a.status();
  core::PostgresStoreOptions store_options;
  store_options.lock = core::DatabaseLock::kShared;
  store_options.fence_tag = core::ReplicaTag(a_id);
  store_options.shutdown_grace = absl::Seconds(1);
  auto store = core::PostgresStore::Open(cut.url(), store_options);
  ASSERT_TRUE(store.ok()) << store.status();
  auto b = core::PostgresCluster::Open(url, Options(b_id, kTtl));
  ASSERT_TRUE(b.ok()) << b.status();
  Outcome before;
  (*store)->SaveToken(Token("before"), before.callback());
  ASSERT_TRUE(before.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(before.status.ok()) << before.status;

  cut.Cut();
  // A write made while cut off waits for the database.
  Outcome during;
  (*store)->SaveToken(Token("during"), during.callback());
  absl::SleepFor(kTtl + absl::Milliseconds(500));
  ASSERT_TRUE((*b)->Sync().ok());
  ASSERT_EQ((*b)->Replicas().size(), 1u) << "a's membership lapsed";
  // A live replica is not fenced; this one is not live any more.
  const absl::Status b_live = (*a)->Fence(core::ReplicaTag(b_id));
  EXPECT_FALSE(b_live.ok());
  ASSERT_TRUE((*b)->Fence(core::ReplicaTag(a_id)).ok());
  EXPECT_FALSE((*a)->Fenced()) << "it cannot know yet";
  EXPECT_FALSE(during.done.HasBeenNotified());

  cut.Restore();
  ASSERT_TRUE(fenced.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE((*a)->Fenced());
  EXPECT_EQ((*a)->Sync().code(), absl::StatusCode::kFailedPrecondition);
  // What it wrote while cut off, and anything after, is refused.
  ASSERT_TRUE(during.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(during.status.code(), absl::StatusCode::kFailedPrecondition)
      << during.status;
  EXPECT_THAT(during.status.message(),
              HasSubstr(absl::StrCat("fenced by replica ", b_id)));
  Outcome after;
  (*store)->SaveToken(Token("after"), after.callback());
  ASSERT_TRUE(after.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(after.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(QueryDatabase(url, "SELECT name FROM tokens ORDER BY name"),
            (Rows{{"before"}}));
  // It never renews again.
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE((*b)->Sync().ok());
  EXPECT_EQ((*b)->Replicas().size(), 1u);
  EXPECT_EQ(QueryDatabase(url, absl::StrCat("SELECT count(*) FROM "
                                            "cluster_replicas WHERE id = '",
                                            a_id, "' AND expires_at > now()")),
            (Rows{{"0"}}));
}

// The state of job `id`'s first target as replica `i` reads it, and its
// stdout.
std::string TargetState(ReplicaFleet& fleet, int i, const std::string& id) {
  auto job = fleet.client(i)->GetJob(id);
  if (!job.ok() || job->targets_size() == 0) return "";
  return varan::v1::TargetState_Name(job->targets(0).state());
}

// The real binaries: replica 0 is cut off while it runs a job on its
// tunnel periphery. Replica 1 fences it and takes the job over; replica 0,
// seeing replica 1 reach the database while it cannot, steps down (exits
// with kExitFenced) without waiting to reach the database again; the
// periphery moves to replica 1, which records the command's real outcome,
// whether the command ended after the move or while replica 0 was cut off
// (replica 0 then had the result, but could not store it, so the
// periphery kept it).
class FencingReplicasTest : public ReplicasTest {
 protected:
  void CutOffWhileRunning(bool end_while_cut_off) {
    const std::string url = NewTestDatabase("replicas");
    CutOffRole cut(url);
    fleet_ = std::make_unique<ReplicaFleet>(url, 2);
    fleet_->UseDatabaseUrl(0, cut.url());
    ASSERT_NO_FATAL_FAILURE(fleet_->StartAll());
    Daemon* p = fleet_->StartPeriphery(
        "cut-1", {.cores = {0, 1}, .tunnel = true, .env = CountEnv("cut-1")});
    ASSERT_TRUE(WaitFor([&] { return fleet_->Holder("cut-1") == 0; }))
        << p->Log();
    ASSERT_TRUE(fleet_->WaitOnline({"cut-1"}, {0, 1}));
    const std::string release = fleet_->dir().File("release");
    const std::string id = MustDispatch(
        fleet_->client(0), Names({"cut-1"}),
        absl::StrCat("echo ran >> \"$REPLICA_TEST_COUNT\"; echo start; "
                     "while [ ! -e '",
                     release, "' ]; do sleep 0.1; done; echo end"));
    ASSERT_FALSE(id.empty());
    ASSERT_TRUE(WaitFor(
        [&] { return TargetState(*fleet_, 0, id) == "TARGET_STATE_RUNNING"; }));

    cut.Cut();
    if (end_while_cut_off) {
      WriteFile(release, "");
      // Replica 0 has the end, and cannot store it.
      ASSERT_TRUE(WaitFor([&] {
        return TargetState(*fleet_, 0, id) == "TARGET_STATE_EXITED";
      }));
    }
    // Replica 1 takes replica 0 for dead after its ttl (10 s) and fences it
    // before taking its job over.
    ASSERT_TRUE(WaitFor(
        [&] {
          return QueryDatabase(url, "SELECT count(*) FROM cluster_fences") ==
                 Rows{{"1"}};
        },
        absl::Seconds(30)))
        << fleet_->replica(1)->Log();
    // Replica 0 cannot read the fence, but sees replica 1 reach the
    // database while it cannot: after the ttl more it steps down, still
    // cut off, and its periphery moves to replica 1.
    const int code = fleet_->replica(0)->Wait(absl::Seconds(30));
    EXPECT_EQ(code, core::kExitFenced) << fleet_->replica(0)->Log();
    EXPECT_THAT(fleet_->replica(0)->Log(),
                HasSubstr("this replica is cut off from the database while "
                          "replica"));
    fleet_->Stop(0, SIGKILL);  // exited: only marks it stopped
    ASSERT_TRUE(WaitFor([&] { return fleet_->Holder("cut-1") == 1; },
                        absl::Seconds(20)))
        << p->Log();
    cut.Restore();

    if (!end_while_cut_off) WriteFile(release, "");
    ASSERT_TRUE(WaitFor(
        [&] { return TargetState(*fleet_, 1, id) == "TARGET_STATE_EXITED"; },
        absl::Seconds(30)))
        << TargetState(*fleet_, 1, id) << "\nreplica 1:\n"
        << fleet_->replica(1)->Log();
    std::string other;
    EXPECT_EQ(
        Succeeded(WaitAllFinal(fleet_->client(1), {id}, absl::Seconds(10)),
                  "start\nend\n", &other),
        1u)
        << other;
    EXPECT_EQ(CountLines(CountFile("cut-1")),
              (std::map<std::string, int>{{"ran", 1}}));
  }
};

TEST_F(FencingReplicasTest, ACutOffReplicaIsFencedAndStops) {
  CutOffWhileRunning(/*end_while_cut_off=*/false);
}

TEST_F(FencingReplicasTest, AnEndOnlyTheCutOffReplicaHeardIsNotLost) {
  CutOffWhileRunning(/*end_while_cut_off=*/true);
}

// The database down for every replica for longer than the membership's
// ttl and the grace after it: each replica asks the others whether they
// reach it, none does, and none steps down; all serve again once it is
// back.
TEST_F(ReplicasTest, AnOutageForEveryoneStopsNoReplica) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  RestartGuard postgres;
  postgres.Stop();
  absl::SleepFor(absl::Seconds(25));
  EXPECT_TRUE(fleet_->AllRunning());
  ASSERT_TRUE(postgres.Start().ok());
  for (int r = 0; r < fleet_->size(); ++r) {
    EXPECT_TRUE(WaitFor([&] { return ReadyServing(fleet_->address(r)); },
                        absl::Seconds(30)))
        << "replica " << r;
    const std::string log = fleet_->replica(r)->Log();
    EXPECT_THAT(log, HasSubstr("asking them whether they reach the database"))
        << "replica " << r;
    EXPECT_THAT(log, Not(HasSubstr("is cut off from the database while")));
  }
  EXPECT_TRUE(fleet_->AllRunning());
}

}  // namespace
}  // namespace varan::testing
