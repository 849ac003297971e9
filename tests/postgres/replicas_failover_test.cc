// Several core replicas on one PostgreSQL database (#19) when something
// fails, with the real binaries on loopback and a real PostgreSQL 15
// (tests/postgres/replica_fleet.h starts them): killing a replica (kill -9)
// loses nothing and runs nothing twice, whether it held the peripheries or
// ran the jobs, and the database restarting under load loses nothing.
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
    // The health port (kubelet's probes) says the same.
    EXPECT_FALSE(ReadyServing(fleet_->health_address(r))) << "replica " << r;
    EXPECT_TRUE(Healthy(fleet_->health_address(r))) << "replica " << r;
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
    EXPECT_TRUE(WaitFor([&] {
      return ReadyServing(fleet_->health_address(r));
    })) << "replica "
        << r;
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

// A job dispatched through replica 2 after replica 0, which holds the
// periphery's tunnel, died, before the periphery moved: replica 2 routes to
// the dead replica, whose claim stands until the periphery claims another
// (or its TTL). The relay never reached the periphery, so the target is
// sent again until it reaches the periphery's next replica: it runs, once.
// (The periphery is frozen for a moment so that the stale route is taken
// every time, not only when the move is slower than the dispatch.)
TEST_F(ReplicasTest, ADispatchAsTheHolderDiesReachesThePeripheryOnce) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  Daemon* p = fleet_->StartPeriphery(
      "moving-1",
      {.cores = {0, 1, 2}, .tunnel = true, .env = CountEnv("moving-1")});
  ASSERT_TRUE(WaitFor([&] { return fleet_->Holder("moving-1") == 0; }))
      << p->Log();
  ASSERT_TRUE(fleet_->WaitOnline({"moving-1"}, {1, 2}));
  ASSERT_EQ(kill(p->pid(), SIGSTOP), 0);
  ASSERT_EQ(fleet_->Stop(0, SIGKILL), 128 + SIGKILL);
  const std::string id =
      MustDispatch(fleet_->client(2), Names({"moving-1"}),
                   "echo ran >> \"$REPLICA_TEST_COUNT\"; echo reached");
  ASSERT_FALSE(id.empty());
  const bool misrouted = WaitFor(
      [&] {
        return absl::StrContains(fleet_->replica(2)->Log(),
                                 "sending it again once the periphery");
      },
      absl::Seconds(10));
  ASSERT_EQ(kill(p->pid(), SIGCONT), 0);
  EXPECT_TRUE(misrouted) << fleet_->replica(2)->Log();
  std::string other;
  EXPECT_EQ(Succeeded(WaitAllFinal(fleet_->client(2), {id}, absl::Seconds(30)),
                      "reached\n", &other),
            1u)
      << other << "\nreplica 2:\n"
      << fleet_->replica(2)->Log();
  EXPECT_EQ(CountLines(CountFile("moving-1")),
            (std::map<std::string, int>{{"ran", 1}}));
}

}  // namespace
}  // namespace varan::testing
