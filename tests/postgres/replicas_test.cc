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

class ReplicasTest : public ::testing::Test {
 protected:
  // No replica a test did not stop has exited (crashed) on the way.
  void TearDown() override {
    if (fleet_ != nullptr) {
      EXPECT_TRUE(fleet_->AllRunning());
    }
  }

  // Three replicas on a new database.
  void StartFleet(std::vector<std::string> extra_core_args = {}) {
    fleet_ = std::make_unique<ReplicaFleet>(NewTestDatabase("replicas"), 3,
                                            std::move(extra_core_args));
    fleet_->StartAll();
  }

  // Environment making the periphery's commands count into count-<name>.
  std::map<std::string, std::string> CountEnv(const std::string& name) {
    return {{"REPLICA_TEST_COUNT", CountFile(name)}};
  }
  std::string CountFile(const std::string& name) const {
    return fleet_->dir().File("count-" + name);
  }

  std::unique_ptr<ReplicaFleet> fleet_;
};

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

// Issue #19's failover: 4 tunnel peripheries all on replica 0, 200 jobs running
// on them (dispatched through replica 1, watched through replica 2), and
// replica 0 killed.
TEST_F(ReplicasTest, KillingAReplicaLosesNothing) {
  constexpr int kJobs = 200;
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  // Replica 0 first for all; once it dies, two move to replica 1 (which
  // runs the jobs) and two to replica 2 (which relays to replica 1).
  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    names.push_back(absl::StrCat("held-", i));
    fleet_->StartPeriphery(
        names[i],
        {.cores = i < 2 ? std::vector<int>{0, 1, 2} : std::vector<int>{0, 2, 1},
         .tunnel = true,
         .env = CountEnv(names[i])});
  }
  for (const std::string& name : names) {
    ASSERT_TRUE(WaitFor([&] { return fleet_->Holder(name) == 0; })) << name;
  }
  ASSERT_TRUE(fleet_->WaitOnline(names, {1, 2}));

  // Job k runs on held-(k % 4), counting itself when it starts.
  const absl::Time start = absl::Now();
  std::vector<std::string> ids;
  for (int k = 0; k < kJobs; ++k) {
    ids.push_back(MustDispatch(
        fleet_->client(1), Names({names[k % 4]}),
        absl::StrCat("echo job-", k,
                     " >> \"$REPLICA_TEST_COUNT\"; echo start; sleep 5; "
                     "echo end")));
    ASSERT_FALSE(ids.back().empty());
  }
  // Each watched from sequence 0 through replica 2.
  std::atomic<int> watching{0};
  std::vector<Watched> watched(kJobs);
  auto stub = fleet_->JobsStub(2);
  const absl::Time watch_deadline = absl::Now() + absl::Seconds(60);
  WatchThreads watchers;
  for (int k = 0; k < kJobs; ++k) {
    watchers.Start([&, k](CallCanceler* canceler) {
      watched[k] = fleet_->Watch(stub.get(), ids[k], 0, watch_deadline,
                                 &watching, canceler);
    });
  }
  const auto executions = [&] {
    int n = 0;
    for (const std::string& name : names) {
      for (const auto& [line, count] : CountLines(CountFile(name))) n += count;
    }
    return n;
  };
  // Every command runs and every watcher has its first event.
  ASSERT_TRUE(WaitFor([&] { return executions() == kJobs; }, absl::Seconds(20)))
      << executions() << " of " << kJobs << " commands started";
  std::cout << "200 jobs running " << absl::FormatDuration(absl::Now() - start)
            << " after the first dispatch\n";
  EXPECT_TRUE(WaitFor([&] { return watching.load() == kJobs; }))
      << watching.load() << " of " << kJobs << " watchers got an event";

  ASSERT_EQ(fleet_->Stop(0, SIGKILL), 128 + SIGKILL);
  const absl::Time killed = absl::Now();

  // The peripheries are back on the survivors within 10 s.
  std::string where;
  const bool back = WaitFor(
      [&] {
        where.clear();
        bool all = true;
        for (const std::string& name : names) {
          const int holder = fleet_->Holder(name);
          absl::StrAppend(&where, " ", name, ":", holder);
          all &= holder == 1 || holder == 2;
        }
        return all && fleet_->WaitOnline(names, {1, 2}, absl::ZeroDuration());
      },
      absl::Seconds(10));
  EXPECT_TRUE(back) << "held by replica:" << where;
  std::cout << "peripheries back on the survivors "
            << absl::FormatDuration(absl::Now() - killed)
            << " after the kill\n";

  // Every job ends with its real outcome.
  std::vector<varan::v1::Job> jobs =
      WaitAllFinal(fleet_->client(1), ids, absl::Seconds(60));
  std::cout << "every job final " << absl::FormatDuration(absl::Now() - killed)
            << " after the kill\n";
  std::string other;
  EXPECT_EQ(Succeeded(jobs, "start\nend\n", &other), size_t{kJobs})
      << "the first other: " << other;
  // Each command ran exactly once, on its periphery.
  int once = 0;
  other.clear();
  for (int i = 0; i < 4; ++i) {
    std::map<std::string, int> counts = CountLines(CountFile(names[i]));
    for (int k = i; k < kJobs; k += 4) {
      const int n = counts[absl::StrCat("job-", k)];
      once += n == 1;
      if (n != 1 && other.empty()) {
        other = absl::StrCat("job-", k, " ran ", n, " times on ", names[i]);
      }
      counts.erase(absl::StrCat("job-", k));
    }
    for (const auto& [line, n] : counts) {
      ADD_FAILURE() << names[i] << " ran " << line << " " << n << " times";
    }
  }
  EXPECT_EQ(once, kJobs) << "the first other: " << other;
  // The watchers saw every event, without a gap: each stream ends soon
  // after its job (those still open are canceled).
  EXPECT_TRUE(watchers.Wait(absl::Seconds(10))) << "watches still open";
  watchers.Stop();
  int whole = 0;
  other.clear();
  for (int k = 0; k < kJobs; ++k) {
    const Watched& w = watched[k];
    std::string problem = StreamProblem(w.events);
    if (!w.status.ok()) {
      problem = absl::StrCat("status ", w.status.error_code(), " ",
                             w.status.error_message(), "; ", problem);
    } else if (problem.empty() &&
               StdoutOf(w.events, names[k % 4]) != "start\nend\n") {
      problem = absl::StrCat("stdout ", StdoutOf(w.events, names[k % 4]));
    } else if (problem.empty() && w.events.back().job_finished().state() !=
                                      varan::v1::JOB_STATE_SUCCEEDED) {
      problem = "the job did not succeed";
    }
    whole += problem.empty();
    if (!problem.empty() && other.empty()) {
      other = absl::StrCat(ids[k], ": ", problem);
    }
  }
  EXPECT_EQ(whole, kJobs) << "the first other watch: " << other;
  EXPECT_TRUE(fleet_->Running(1));
  EXPECT_TRUE(fleet_->Running(2));
}

// The replica that dispatched the jobs dies (the peripheries are on another
// one): once its membership expires, a survivor adopts its jobs and they
// end with the outcomes the peripheries held, each command run once.
TEST_F(ReplicasTest, AKilledReplicasJobsAreAdopted) {
  constexpr int kJobs = 20;
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  const std::vector<std::string> names = {"adopt-dial", "adopt-tunnel"};
  fleet_->StartPeriphery(names[0],
                         {.cores = {1, 2, 0}, .env = CountEnv(names[0])});
  fleet_->StartPeriphery(
      names[1],
      {.cores = {1, 2, 0}, .tunnel = true, .env = CountEnv(names[1])});
  for (const std::string& name : names) {
    ASSERT_TRUE(WaitFor([&] { return fleet_->Holder(name) == 1; })) << name;
  }
  ASSERT_TRUE(fleet_->WaitOnline(names, {0}));
  std::vector<std::string> ids;
  for (int k = 0; k < kJobs; ++k) {
    ids.push_back(MustDispatch(
        fleet_->client(0), Names({names[k % 2]}),
        absl::StrCat("echo job-", k,
                     " >> \"$REPLICA_TEST_COUNT\"; echo start; sleep 2; "
                     "echo end; exit ",
                     k % 3)));
    ASSERT_FALSE(ids.back().empty());
  }
  const auto executions = [&] {
    return CountLines(CountFile(names[0])).size() +
           CountLines(CountFile(names[1])).size();
  };
  // The first job on each periphery watched through replica 2 (passed on
  // to replica 0), resumed as a client does when the stream breaks.
  std::vector<Followed> followed(2);
  WatchThreads followers;
  for (int k = 0; k < 2; ++k) {
    followers.Start([&, k](CallCanceler* canceler) {
      followed[k] =
          fleet_->Follow(2, ids[k], absl::Now() + absl::Seconds(45), canceler);
    });
  }
  ASSERT_TRUE(WaitFor([&] { return executions() == kJobs; }))
      << executions() << " of " << kJobs << " commands started";
  ASSERT_EQ(fleet_->Stop(0, SIGKILL), 128 + SIGKILL);

  // The survivors answer for the jobs: final (after the dead replica's
  // membership expired, 10 s), with the real exit codes.
  const absl::Time killed = absl::Now();
  for (int r : {1, 2}) {
    std::vector<varan::v1::Job> jobs =
        WaitAllFinal(fleet_->client(r), ids, absl::Seconds(30));
    ASSERT_EQ(jobs.size(), ids.size()) << "replica " << r;
    int real = 0;
    std::string other;
    for (int k = 0; k < kJobs; ++k) {
      const varan::v1::JobTarget& t = jobs[k].targets(0);
      if (t.state() == varan::v1::TARGET_STATE_EXITED &&
          t.exit_status().code() == k % 3 &&
          t.stdout_info().head() == "start\nend\n") {
        ++real;
      } else if (other.empty()) {
        other = absl::StrCat(ids[k], " (exit ", k % 3,
                             " expected): ", t.DebugString());
      }
    }
    EXPECT_EQ(real, kJobs) << "replica " << r << "; the first other: " << other;
  }
  std::cout << "every job final " << absl::FormatDuration(absl::Now() - killed)
            << " after the kill\n";
  for (int i = 0; i < 2; ++i) {
    for (const auto& [line, count] : CountLines(CountFile(names[i]))) {
      EXPECT_EQ(count, 1) << line << " on " << names[i];
    }
  }
  // The watches broke with the replica and, resumed, went on to the end:
  // no sequence missing but those an output_gap declares.
  EXPECT_TRUE(followers.Wait(absl::Seconds(10))) << "watches still open";
  followers.Stop();
  for (int k = 0; k < 2; ++k) {
    const Followed& f = followed[k];
    EXPECT_TRUE(f.status.ok()) << ids[k] << ": " << f.status.error_code() << " "
                               << f.status.error_message();
    EXPECT_EQ(StreamProblem(f.events, 0, /*declared_gaps=*/true), "") << ids[k];
    EXPECT_FALSE(f.breaks.empty()) << ids[k] << ": the watch did not break";
    int gaps = 0;
    for (const JobEvent& e : f.events) gaps += e.has_output_gap();
    std::cout << ids[k] << " watched through replica 2: " << f.events.size()
              << " events, " << gaps << " output_gap, stdout \""
              << absl::CEscape(StdoutOf(f.events, names[k])) << "\", "
              << f.breaks.size() << " breaks (first: "
              << (f.breaks.empty() ? "" : f.breaks.front()) << ")\n";
  }
}

// PostgreSQL restarts while jobs run, down for longer than the
// peripheries' heartbeat TTL (3 s here: the commands run 5 s and end while
// it is down): API calls that need it fail UNAVAILABLE naming the database,
// no replica exits, the peripheries (connected all along) stay online, and
// every job finishes with its real outcome once it is back.
TEST_F(ReplicasTest, PostgresRestartUnderLoad) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  const std::vector<std::string> names = {"pg-dial-0", "pg-dial-1",
                                          "pg-tunnel"};
  fleet_->StartPeriphery(
      names[0],
      {.cores = {0, 1, 2}, .labels = {"dial=yes"}, .env = CountEnv(names[0])});
  fleet_->StartPeriphery(
      names[1],
      {.cores = {1, 2, 0}, .labels = {"dial=yes"}, .env = CountEnv(names[1])});
  fleet_->StartPeriphery(
      names[2],
      {.cores = {2, 0, 1}, .tunnel = true, .env = CountEnv(names[2])});
  ASSERT_TRUE(WaitFor([&] { return fleet_->Holder(names[2]) == 2; }));
  ASSERT_TRUE(fleet_->WaitOnline(names, {0, 1, 2}));

  // Jobs on the dial peripheries through every replica, on the tunnel
  // through the replica holding it: each command says when it starts and
  // when it ends, and ends while the database is down.
  const auto command = [](int k) {
    return absl::StrCat("echo start-", k,
                        " >> \"$REPLICA_TEST_COUNT\"; echo start; sleep 5; "
                        "echo end; echo end-",
                        k, " >> \"$REPLICA_TEST_COUNT\"");
  };
  std::vector<std::string> ids;
  int executions = 0;
  for (int k = 0; k < 6; ++k) {
    ids.push_back(
        MustDispatch(fleet_->client(k % 3), Selector("dial=yes"), command(k)));
    executions += 2;
  }
  for (int k = 6; k < 8; ++k) {
    ids.push_back(
        MustDispatch(fleet_->client(2), Names({names[2]}), command(k)));
    executions += 1;
  }
  const auto lines = [&](const std::string& prefix) {
    int n = 0;
    for (const std::string& name : names) {
      for (const auto& [line, count] : CountLines(CountFile(name))) {
        if (absl::StartsWith(line, prefix)) n += count;
      }
    }
    return n;
  };
  ASSERT_TRUE(WaitFor([&] { return lines("start-") == executions; }))
      << lines("start-") << " of " << executions << " started";

  RestartGuard postgres;
  postgres.Stop();
  const std::string database =
      absl::StrCat("PostgreSQL database ", DatabaseName(fleet_->database()));
  for (int r = 0; r < 3; ++r) {
    // Not ready (yet serving); reads of the database and new jobs refused,
    // naming it.
    EXPECT_TRUE(WaitFor([&] { return !ReadyServing(fleet_->address(r)); }))
        << "replica " << r << " still ready";
    EXPECT_TRUE(Healthy(fleet_->address(r))) << "replica " << r;
    absl::Status listed;
    EXPECT_TRUE(WaitFor([&] {
      listed = fleet_->client(r)->ListJobs({}).status();
      return !listed.ok();
    })) << "replica "
        << r << " lists jobs";
    EXPECT_EQ(listed.code(), absl::StatusCode::kUnavailable) << listed;
    EXPECT_THAT(listed.message(), HasSubstr(database));
    varan::v1::DispatchRequest req;
    *req.mutable_target() = Selector("dial=yes");
    req.mutable_spec()->set_shell("echo never");
    const absl::Status refused = fleet_->client(r)->Dispatch(req).status();
    EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
    EXPECT_THAT(refused.message(), HasSubstr(database));
  }
  // The commands end while it is down; the peripheries, still connected,
  // are still online everywhere.
  EXPECT_TRUE(
      WaitFor([&] { return lines("end-") == executions; }, absl::Seconds(15)))
      << lines("end-") << " of " << executions << " ended";
  for (int r = 0; r < 3; ++r) {
    auto list = fleet_->client(r)->ListPeripheries({});
    ASSERT_TRUE(list.ok()) << list.status();
    for (const varan::v1::Periphery& p : *list) {
      EXPECT_EQ(p.state(), varan::v1::PERIPHERY_STATE_ONLINE)
          << p.name() << " on replica " << r << " while the database is down";
    }
  }
  ASSERT_TRUE(postgres.Start().ok());

  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(fleet_->Running(r));
    EXPECT_TRUE(fleet_->WaitServing(r, absl::Seconds(20)));
  }
  for (int r = 0; r < 3; ++r) {
    std::vector<varan::v1::Job> jobs =
        WaitAllFinal(fleet_->client(r), ids, absl::Seconds(30));
    std::string other;
    EXPECT_EQ(Succeeded(jobs, "start\nend\n", &other), ids.size())
        << "replica " << r << "; the first other: " << other;
  }
  // Never LOST on the way (a late outcome replacing a LOST target would
  // end a job twice for its watchers).
  auto stub = fleet_->JobsStub(0);
  for (const std::string& id : ids) {
    const Watched w =
        fleet_->Watch(stub.get(), id, 0, absl::Now() + absl::Seconds(10));
    EXPECT_TRUE(w.status.ok()) << id << ": " << w.status.error_message();
    for (const JobEvent& e : w.events) {
      EXPECT_FALSE(e.has_finished() &&
                   e.finished().state() == varan::v1::TARGET_STATE_LOST)
          << id << ": " << e.DebugString();
    }
  }
  for (const std::string& name : names) {
    for (const auto& [line, count] : CountLines(CountFile(name))) {
      EXPECT_EQ(count, 1) << line << " on " << name;
    }
  }
  // And new work runs again through every replica.
  EXPECT_TRUE(fleet_->WaitOnline(names, {0, 1, 2}));
  for (int r = 0; r < 3; ++r) {
    RunResult e =
        fleet_->Ctl(r, {"exec", "-n", names[r % 2], "--", "echo", "after"});
    EXPECT_EQ(e.exit_code, 0) << "replica " << r << ": " << e.err;
    EXPECT_EQ(e.out, "after\n");
  }
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
