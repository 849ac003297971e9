// Several core replicas on one PostgreSQL database (#19), with the real
// binaries on loopback and a real PostgreSQL 15 (tests/postgres/
// replica_fleet.h starts them): every replica serves the whole fleet, a job
// reaches a periphery whatever replica holds its connection, a job is
// watched through any replica, killing a replica (kill -9) loses nothing
// and runs nothing twice, the database restarting under load loses nothing,
// and replicas starting together on an empty database migrate it once.
//
// Commands count their own executions: each appends a line to a file the
// periphery names in its environment (REPLICA_TEST_COUNT), so "ran exactly
// once" is counted on the periphery side, not taken from core.
#include <signal.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/store/postgres_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/replica_fleet.h"
#include "tests/postgres/test_postgres.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using varan::v1::JobEvent;

// Peripheries on different replicas are online on every replica, and a job
// through one replica runs on all of them (dial mode).
TEST_F(ReplicasTest, AnyReplicaServesTheWholeFleet) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  // Each periphery lists the replicas from a different one, so each joins
  // a different replica.
  const std::vector<std::vector<int>> orders = {
      {0, 1, 2}, {1, 2, 0}, {2, 0, 1}};
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    names.push_back(absl::StrCat("any-", i));
    fleet_->StartPeriphery(names[i],
                           {.cores = orders[i],
                            .labels = {"fleet=any"},
                            .env = {{"REPLICA_TEST_NAME", names[i]},
                                    {"REPLICA_TEST_CODE", absl::StrCat(i)}}});
  }
  for (int i = 0; i < 3; ++i) {
    int holder = -1;
    EXPECT_TRUE(WaitFor([&] {
      holder = fleet_->Holder(names[i]);
      return holder == i;
    })) << names[i]
        << " is held by replica " << holder << "\n"
        << fleet_->periphery(names[i])->Log();
  }

  // Every replica lists all of them online, whichever holds them.
  EXPECT_TRUE(fleet_->WaitOnline(names, {0, 1, 2}));
  for (int r = 0; r < 3; ++r) {
    RunResult list = fleet_->Ctl(r, {"peripheries", "list", "-l", "fleet=any"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    for (const std::string& name : names) {
      bool online = false;
      for (absl::string_view line : absl::StrSplit(list.out, '\n')) {
        online |=
            absl::StrContains(line, name) && absl::StrContains(line, "online");
      }
      EXPECT_TRUE(online) << "replica " << r << " lists:\n" << list.out;
    }
  }

  // A job through replica 1 runs on every periphery (replica 1 dials each
  // itself) with each one's output and exit code.
  const std::string id = MustDispatch(
      fleet_->client(1), Selector("fleet=any"),
      "echo \"ran on $REPLICA_TEST_NAME\"; exit $REPLICA_TEST_CODE");
  ASSERT_FALSE(id.empty());
  std::vector<varan::v1::Job> jobs =
      WaitAllFinal(fleet_->client(1), {id}, absl::Seconds(20));
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].state(), varan::v1::JOB_STATE_FAILED);
  ASSERT_EQ(jobs[0].targets_size(), 3);
  for (int i = 0; i < 3; ++i) {
    const varan::v1::JobTarget& t = jobs[0].targets(i);
    EXPECT_EQ(t.name(), names[i]);
    EXPECT_EQ(t.state(), varan::v1::TARGET_STATE_EXITED) << t.error();
    EXPECT_EQ(t.exit_status().code(), i) << t.name();
    EXPECT_EQ(t.stdout_info().head(), absl::StrCat("ran on ", names[i], "\n"));
  }
  // The other replicas read the same finished job.
  for (int r : {0, 2}) {
    auto job = fleet_->client(r)->GetJob(id, kPreview);
    ASSERT_TRUE(job.ok()) << "replica " << r << ": " << job.status();
    EXPECT_EQ(job->state(), varan::v1::JOB_STATE_FAILED) << "replica " << r;
    ASSERT_EQ(job->targets_size(), 3);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(job->targets(i).exit_status().code(), i) << "replica " << r;
      EXPECT_EQ(job->targets(i).stdout_info().head(),
                absl::StrCat("ran on ", names[i], "\n"))
          << "replica " << r;
    }
  }
}

// A tunnel one replica holds runs commands dispatched through the others.
TEST_F(ReplicasTest, CrossReplicaDispatchToATunnel) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  Daemon* tunnel =
      fleet_->StartPeriphery("tunnel-1", {.cores = {0, 1, 2}, .tunnel = true});
  ASSERT_TRUE(WaitFor([&] { return fleet_->Holder("tunnel-1") == 0; }))
      << tunnel->Log();
  ASSERT_TRUE(fleet_->WaitOnline({"tunnel-1"}, {1, 2}));

  // varanctl through the replicas that do not hold the tunnel: output and
  // exit code come back.
  for (int r : {1, 2}) {
    RunResult e =
        fleet_->Ctl(r, {"exec", "-n", "tunnel-1", "--shell", "--",
                        absl::StrCat("echo out via ", r, "; echo err via ", r,
                                     " >&2; exit 3")});
    EXPECT_EQ(e.exit_code, 3) << "replica " << r << ": " << e.err;
    EXPECT_EQ(e.out, absl::StrCat("out via ", r, "\n")) << "replica " << r;
    EXPECT_THAT(e.err, HasSubstr(absl::StrCat("err via ", r, "\n")));
  }

  // Streamed live, not delivered at the end: the first line arrives through
  // replica 2 while the command still runs.
  varan::v1::DispatchRequest req;
  *req.mutable_target() = Names({"tunnel-1"});
  req.mutable_spec()->set_shell("echo first; sleep 1; echo second");
  std::vector<JobEvent> events;
  std::vector<absl::Time> arrived;
  const absl::Status exec =
      fleet_->client(2)->Exec(req, [&](const JobEvent& e) {
        events.push_back(e);
        arrived.push_back(absl::Now());
      });
  ASSERT_TRUE(exec.ok()) << exec;
  EXPECT_EQ(StreamProblem(events), "");
  EXPECT_EQ(StdoutOf(events, "tunnel-1"), "first\nsecond\n");
  for (size_t k = 0; k < events.size(); ++k) {
    if (!events[k].has_output()) continue;
    EXPECT_GT(arrived.back() - arrived[k], absl::Milliseconds(500))
        << "the first output arrived only with the end";
    break;
  }
  if (!events.empty() && events.back().has_job_finished()) {
    EXPECT_EQ(events.back().job_finished().state(),
              varan::v1::JOB_STATE_SUCCEEDED);
  }
  // The tunnel stayed where it was: replica 0 relayed.
  EXPECT_EQ(fleet_->Holder("tunnel-1"), 0);
  EXPECT_THAT(tunnel->Log(), Not(HasSubstr("moving to core")));
}

// A job running on one replica is watched live through another: every
// event, the same sequence numbers.
TEST_F(ReplicasTest, WatchFromAnotherReplica) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  fleet_->StartPeriphery("watched", {.cores = {0, 1, 2}});
  std::string expected;
  for (int i = 1; i <= 15; ++i) expected += absl::StrCat("line ", i, "\n");
  // 15 lines over 3 s, dispatched through replica 0.
  const std::string id =
      MustDispatch(fleet_->client(0), Names({"watched"}),
                   "for i in $(seq 1 15); do echo line $i; sleep 0.2; done");
  ASSERT_FALSE(id.empty());

  // Replica 2 shows the job running, with its output so far.
  absl::StatusOr<varan::v1::Job> mid;
  EXPECT_TRUE(WaitFor(
      [&] {
        mid = fleet_->client(2)->GetJob(id, kPreview);
        return mid.ok() && mid->state() == varan::v1::JOB_STATE_RUNNING &&
               absl::StartsWith(mid->targets(0).stdout_info().head(),
                                "line 1\n");
      },
      absl::Seconds(2)))
      << (mid.ok() ? mid->DebugString() : mid.status().ToString());

  // Watched from sequence 0 through replica 2 and, at the same time,
  // through replica 0 running it; and through replica 1 by a client that
  // goes away after 6 events and watches again from the next sequence.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  auto stub0 = fleet_->JobsStub(0);
  auto stub1 = fleet_->JobsStub(1);
  auto stub2 = fleet_->JobsStub(2);
  Watched own, broken, resumed;
  {
    WatchThreads threads;
    threads.Start([&](CallCanceler* canceler) {
      own = fleet_->Watch(stub0.get(), id, 0, deadline, nullptr, canceler);
    });
    threads.Start([&](CallCanceler* canceler) {
      broken = fleet_->Watch(stub1.get(), id, 0, deadline, nullptr, canceler,
                             /*stop_after=*/6);
      if (broken.events.size() == 6) {
        resumed =
            fleet_->Watch(stub1.get(), id, broken.events.back().sequence() + 1,
                          deadline, nullptr, canceler);
      }
    });
    const Watched w = fleet_->Watch(stub2.get(), id, 0, deadline);
    EXPECT_TRUE(threads.Wait(absl::Seconds(10)));
    threads.Stop();

    // Through replica 2: everything, live, in order.
    ASSERT_TRUE(w.status.ok())
        << w.status.error_code() << ": " << w.status.error_message();
    EXPECT_EQ(StreamProblem(w.events), "");
    EXPECT_EQ(StdoutOf(w.events, "watched"), expected);
    ASSERT_FALSE(w.events.empty());
    ASSERT_TRUE(w.events.back().has_job_finished());
    EXPECT_EQ(w.events.back().job_finished().state(),
              varan::v1::JOB_STATE_SUCCEEDED);
    for (size_t k = 0; k < w.events.size(); ++k) {
      if (!w.events[k].has_output()) continue;
      EXPECT_GT(w.arrived.back() - w.arrived[k], absl::Seconds(1))
          << "the output did not arrive live";
      break;
    }
    // The events the replica running the job streams, unchanged.
    ASSERT_TRUE(own.status.ok()) << own.status.error_message();
    ASSERT_EQ(own.events.size(), w.events.size());
    for (size_t k = 0; k < own.events.size(); ++k) {
      EXPECT_EQ(own.events[k].SerializeAsString(),
                w.events[k].SerializeAsString())
          << k << ": " << own.events[k].DebugString()
          << " through replica 2: " << w.events[k].DebugString();
    }
  }
  // Resumed through replica 1, nothing is missing.
  ASSERT_EQ(broken.events.size(), 6u);
  EXPECT_EQ(broken.status.error_code(), grpc::CANCELLED);
  EXPECT_TRUE(resumed.status.ok()) << resumed.status.error_message();
  std::vector<JobEvent> both = broken.events;
  both.insert(both.end(), resumed.events.begin(), resumed.events.end());
  EXPECT_EQ(StreamProblem(both), "");
  EXPECT_EQ(StdoutOf(both, "watched"), expected);
}

// Two replicas started at the same moment on a new database: both serve,
// and each schema step ran once.
TEST_F(ReplicasTest, TwoReplicasStartingAtOnceOnAnEmptyDatabaseMigrateOnce) {
  ReplicaFleet fleet(NewTestDatabase("migrate"), 2);
  fleet.Launch(0);
  fleet.Launch(1);
  ASSERT_TRUE(fleet.WaitServing(0));
  ASSERT_TRUE(fleet.WaitServing(1));

  // One row per schema version: each step ran once.
  const auto rows = QueryDatabase(
      fleet.database(),
      "SELECT count(*), count(DISTINCT version), min(version), max(version) "
      "FROM varan_schema");
  ASSERT_EQ(rows.size(), 1u);
  const std::string versions =
      absl::StrCat(core::PostgresStore::kSchemaVersion);
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{versions, versions, "1", versions}));
  // Migrated by one of them; the other found it done.
  int migrated = 0;
  for (int i = 0; i < 2; ++i) {
    migrated += absl::StrContains(fleet.replica(i)->Log(),
                                  "migrated from schema version 0");
  }
  EXPECT_EQ(migrated, 1) << fleet.replica(0)->Log() << fleet.replica(1)->Log();
  // Both are members, and both serve the same fleet.
  EXPECT_EQ(QueryDatabase(fleet.database(),
                          "SELECT id FROM cluster_replicas "
                          "WHERE expires_at > now()")
                .size(),
            2u);
  fleet.StartPeriphery("migrated", {.cores = {0, 1}});
  EXPECT_TRUE(fleet.WaitOnline({"migrated"}, {0, 1}));
  RunResult e = fleet.Ctl(1, {"exec", "-n", "migrated", "--", "echo", "one"});
  EXPECT_EQ(e.exit_code, 0) << e.err;
  EXPECT_EQ(e.out, "one\n");
}

}  // namespace
}  // namespace varan::testing
