// The Store contract (core/store/store.h), checked against every backend:
// round trips, filters and paging, commit callbacks (order, thread,
// visibility), Sync's errors, retention (stored output:
// store_output_test.cc, in the same suite). A backend joins with a
// StoreBackend (store_contract.h) that opens a fresh, empty store and one
// INSTANTIATE_TEST_SUITE_P line (store_backends_test.cc for the embedded
// ones; tests/postgres/postgres_store_test.cc for PostgreSQL, whose binary
// compiles this suite too).
#include "tests/unit/store/store_contract.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/time_util.h"
#include "core/store/memory_store.h"
#include "core/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_test_util.h"

namespace varan::core {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using varan::v1::Job;
using varan::v1::JobEvent;
using varan::v1::JobState;
using namespace store_test;  // NOLINT: the shared test records and fixture

// --- Peripheries and tokens ------------------------------------------------

void ExpectPeripheriesEqual(const std::vector<StoredPeriphery>& got,
                            const std::vector<StoredPeriphery>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(got[i].info, want[i].info))
        << got[i].info.DebugString() << " vs " << want[i].info.DebugString();
    EXPECT_EQ(got[i].credential, want[i].credential);
    EXPECT_TRUE(MessageDifferencer::Equals(got[i].label_overrides,
                                           want[i].label_overrides))
        << got[i].label_overrides.DebugString();
    EXPECT_EQ(got[i].confirmed, want[i].confirmed);
  }
}

TEST_P(StoreContractTest, PeripheriesRoundTrip) {
  const auto online = varan::v1::PERIPHERY_STATE_ONLINE;
  StoredPeriphery a = MakePeriphery("a1", "alpha", online);
  StoredPeriphery a2 = a;
  (*a2.info.mutable_labels())["tier"] = "web";
  a2.info.set_state(varan::v1::PERIPHERY_STATE_OFFLINE);
  a2.credential = "rotated";
  StoredPeriphery removed = a;
  removed.info.set_state(varan::v1::PERIPHERY_STATE_REMOVED);
  removed.credential.clear();
  StoredPeriphery overrides = MakePeriphery("b2", "beta", online);
  (*overrides.label_overrides.mutable_set())["env"] = "prod";
  overrides.label_overrides.add_remove("draining");
  overrides.confirmed = true;
  StoredPeriphery c = MakePeriphery("c3", "gamma", online);

  struct Case {
    std::string name;
    std::vector<StoredPeriphery> saves;
    std::vector<StoredPeriphery> want;  // ordered by id
  };
  const std::vector<Case> cases = {
      {"insert", {a}, {a}},
      {"replace", {a, a2}, {a2}},
      {"removed keeps the periphery without credential",
       {a, removed},
       {removed}},
      {"overrides and confirmed", {overrides}, {overrides}},
      {"several, by id", {c, overrides, a}, {a, overrides, c}},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    Store& store = Open();
    for (const StoredPeriphery& p : tc.saves) store.SavePeriphery(p);
    ASSERT_TRUE(store.Sync().ok());
    auto got = store.LoadPeripheries();
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectPeripheriesEqual(*got, tc.want);
  }
}

TEST_P(StoreContractTest, TokensRoundTripByIdWithoutTheirState) {
  Store& store = Open();
  auto token = [](const std::string& id, const std::string& name) {
    StoredToken t;
    t.info.set_id(id);
    t.info.set_name(name);
    t.info.set_role(varan::v1::ROLE_OPERATOR);
    t.info.set_state(varan::v1::TOKEN_STATE_ACTIVE);
    SetTimestamp(kT0, t.info.mutable_create_time());
    t.hash = "hash-" + id;
    return t;
  };
  StoredJoinToken join;
  join.info.set_id("j1");
  join.info.set_name("join");
  join.info.set_max_uses(3);
  join.info.set_uses(1);
  join.info.set_state(varan::v1::TOKEN_STATE_ACTIVE);
  join.hash = "hash-j1";
  StoredToken replaced = token("t1", "ci");
  replaced.info.set_created_by("admin");

  std::vector<absl::Status> results;
  absl::Mutex mu;
  auto record = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    results.push_back(s);
  };
  store.SaveToken(token("t2", "deploy"), record);
  store.SaveToken(token("t1", "ci"), nullptr);
  store.SaveToken(replaced, record);
  store.SaveJoinToken(join, record);
  ASSERT_TRUE(store.Sync().ok());
  {
    absl::MutexLock lock(&mu);
    EXPECT_THAT(results, ElementsAre(absl::OkStatus(), absl::OkStatus(),
                                     absl::OkStatus()));
  }

  auto tokens = store.LoadTokens();
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].info.id(), "t1");
  EXPECT_EQ((*tokens)[0].info.created_by(), "admin");
  EXPECT_EQ((*tokens)[0].hash, "hash-t1");
  EXPECT_EQ((*tokens)[1].info.id(), "t2");
  for (const StoredToken& t : *tokens) {
    EXPECT_EQ(t.info.state(), varan::v1::TOKEN_STATE_UNSPECIFIED);
  }
  auto joins = store.LoadJoinTokens();
  ASSERT_TRUE(joins.ok()) << joins.status();
  ASSERT_EQ(joins->size(), 1u);
  EXPECT_EQ((*joins)[0].info.uses(), 1u);
  EXPECT_EQ((*joins)[0].hash, "hash-j1");
  EXPECT_EQ((*joins)[0].info.state(), varan::v1::TOKEN_STATE_UNSPECIFIED);
}

// --- Jobs ------------------------------------------------------------------

TEST_P(StoreContractTest, JobLifecycleLoadsFinalRecordAndEventsInOrder) {
  Store& store = Open();
  const std::string id = JobId(1);
  const Job created = MakeJob(id, kRunning, kT0, "alice", {"p1", "p2"});
  std::vector<absl::Status> results;
  absl::Mutex mu;
  auto record = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    results.push_back(s);
  };
  store.CreateJob(created, record);
  store.AppendEvents(id, {MakeEvent(id, 0), MakeEvent(id, 1)});
  store.AppendEvents(id, {MakeEvent(id, 2)});
  store.AppendEvents(id, std::vector<JobEvent>{});
  store.AppendEvents(id, {MakeEvent(id, 3), MakeEvent(id, 4)});
  Job finished = created;
  finished.set_state(kFailed);
  SetTimestamp(kT0 + absl::Seconds(3), finished.mutable_finish_time());
  finished.mutable_targets(0)->set_state(varan::v1::TARGET_STATE_EXITED);
  finished.mutable_targets(0)->mutable_exit_status()->set_code(1);
  Job with_output = finished;
  with_output.mutable_targets(0)->set_stdout("never stored");
  store.FinishJob(with_output, record);
  ASSERT_TRUE(store.Sync().ok());
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(results.size(), 2u);
    EXPECT_TRUE(results[0].ok()) << results[0];
    EXPECT_TRUE(results[1].ok()) << results[1];
  }

  auto job = store.LoadJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_TRUE(MessageDifferencer::Equals(job->record, finished))
      << job->record.DebugString();
  ASSERT_EQ(job->events.size(), 5u);
  for (uint64_t i = 0; i < 5; ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(job->events[i], MakeEvent(id, i)))
        << job->events[i].DebugString();
  }
}

// Output events are not stored as events: the log has holes where they
// were, and every backend keeps and loads such a log as it is.
TEST_P(StoreContractTest, EventLogWithHolesIsStoredAndLoadedInOrder) {
  Store& store = Open();
  const std::string id = JobId(1);
  store.CreateJob(MakeJob(id, kRunning, kT0, "alice", {"p1"}), nullptr);
  store.AppendEvents(id, {MakeEvent(id, 0), MakeEvent(id, 3)});
  store.AppendEvents(id, {MakeEvent(id, 7)});
  ASSERT_TRUE(store.Sync().ok());
  auto job = store.LoadJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->events.size(), 3u);
  EXPECT_EQ(job->events[0].sequence(), 0u);
  EXPECT_EQ(job->events[1].sequence(), 3u);
  EXPECT_EQ(job->events[2].sequence(), 7u);
  auto unfinished = store.LoadUnfinishedJobs();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  ASSERT_EQ(unfinished->size(), 1u);
  EXPECT_EQ((*unfinished)[0].events.size(), 3u);
}

TEST_P(StoreContractTest, LoadJobNotFoundNamesTheId) {
  Store& store = Open();
  CreateAll(store, {MakeJob(JobId(1), kRunning, kT0)});
  auto job = store.LoadJob("0000nosuchjob");
  ASSERT_EQ(job.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(job.status().message(), "job \"0000nosuchjob\" not found");
}

TEST_P(StoreContractTest, LoadUnfinishedJobsReturnsRunningOnesOldestFirst) {
  Store& store = Open();
  CreateAll(
      store,
      {MakeJob(JobId(3), kRunning, kT0), MakeJob(JobId(1), kRunning, kT0),
       MakeJob(JobId(2), kRunning, kT0), MakeJob(JobId(4), kSucceeded, kT0)});
  store.AppendEvents(JobId(1), {MakeEvent(JobId(1), 0)});
  store.FinishJob(MakeJob(JobId(2), kCanceled, kT0), nullptr);
  ASSERT_TRUE(store.Sync().ok());

  auto jobs = store.LoadUnfinishedJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  std::vector<std::string> ids;
  for (const StoredJob& j : *jobs) ids.push_back(j.record.id());
  EXPECT_THAT(ids, ElementsAreArray({JobId(1), JobId(3)}));
  ASSERT_EQ((*jobs)[0].events.size(), 1u);
  EXPECT_EQ((*jobs)[0].events[0].job_id(), JobId(1));
  EXPECT_TRUE((*jobs)[1].events.empty());
}

TEST_P(StoreContractTest, ListJobsFiltersOrdersAndPages) {
  Store& store = Open();
  // 40 jobs, one a minute; created_by, states and targets vary.
  std::vector<Job> all;
  const JobState states[] = {kRunning, kSucceeded, kFailed, kCanceled,
                             kSucceeded};
  for (int i = 0; i < 40; ++i) {
    std::vector<std::string> targets = {"p1"};
    if (i % 3 == 0) targets = {"p1", "p2"};
    if (i % 7 == 0) targets = {"p3"};
    all.push_back(MakeJob(JobId(i), states[i % 5], kT0 + absl::Minutes(i),
                          i % 2 == 0 ? "alice" : "bob", targets));
  }
  std::vector<Job> shuffled = all;
  std::reverse(shuffled.begin(), shuffled.begin() + 20);
  CreateAll(store, shuffled);

  struct Case {
    std::string name;
    JobQuery query;  // limit and before_id are set by the test
    std::function<bool(const Job&)> match;
  };
  auto has_target = [](const Job& j, const std::string& name) {
    return std::any_of(j.targets().begin(), j.targets().end(),
                       [&](const auto& t) { return t.name() == name; });
  };
  auto created = [](const Job& j) { return FromTimestamp(j.create_time()); };
  std::vector<Case> cases;
  cases.push_back({"all", {}, [](const Job&) { return true; }});
  {
    JobQuery q;
    q.states = {kSucceeded};
    cases.push_back(
        {"one state", q, [](const Job& j) { return j.state() == kSucceeded; }});
  }
  {
    JobQuery q;
    q.states = {kFailed, kCanceled, kFailed};
    cases.push_back({"two states", q, [](const Job& j) {
                       return j.state() == kFailed || j.state() == kCanceled;
                     }});
  }
  {
    JobQuery q;
    q.created_by = "bob";
    cases.push_back({"created_by", q,
                     [](const Job& j) { return j.created_by() == "bob"; }});
  }
  {
    JobQuery q;
    q.periphery = "p2";
    cases.push_back(
        {"periphery", q, [&](const Job& j) { return has_target(j, "p2"); }});
  }
  {
    JobQuery q;
    q.created_after = kT0 + absl::Minutes(25);
    cases.push_back({"created_after is inclusive", q, [&](const Job& j) {
                       return created(j) >= kT0 + absl::Minutes(25);
                     }});
  }
  {
    JobQuery q;
    q.created_before = kT0 + absl::Minutes(12);
    cases.push_back({"created_before is exclusive", q, [&](const Job& j) {
                       return created(j) < kT0 + absl::Minutes(12);
                     }});
  }
  {
    JobQuery q;
    q.created_after = kT0 + absl::Minutes(5);
    q.created_before = kT0 + absl::Minutes(30);
    q.states = {kSucceeded, kRunning};
    q.created_by = "alice";
    q.periphery = "p1";
    cases.push_back({"everything combined", q, [&](const Job& j) {
                       return created(j) >= kT0 + absl::Minutes(5) &&
                              created(j) < kT0 + absl::Minutes(30) &&
                              (j.state() == kSucceeded ||
                               j.state() == kRunning) &&
                              j.created_by() == "alice" && has_target(j, "p1");
                     }});
  }
  {
    JobQuery q;
    q.periphery = "nobody";
    cases.push_back({"no match", q, [](const Job&) { return false; }});
  }

  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    std::vector<std::string> want;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      if (tc.match(*it)) want.push_back(it->id());
    }
    // One page big enough for all: no `more`.
    JobQuery q = tc.query;
    q.limit = want.size();
    auto page = store.ListJobs(q);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_THAT(Ids(page->jobs), ElementsAreArray(want));
    EXPECT_FALSE(page->more);
    // Pages of 3, continuing with before_id: every job exactly once.
    std::vector<std::string> paged;
    q.limit = 3;
    for (int guard = 0; guard < 100; ++guard) {
      page = store.ListJobs(q);
      ASSERT_TRUE(page.ok()) << page.status();
      ASSERT_LE(page->jobs.size(), 3u);
      for (const std::string& id : Ids(page->jobs)) paged.push_back(id);
      if (!page->more) break;
      ASSERT_EQ(page->jobs.size(), 3u);
      q.before_id = page->jobs.back().id();
    }
    EXPECT_THAT(paged, ElementsAreArray(want));
  }

  // The records are the stored ones.
  JobQuery q;
  q.limit = 1;
  auto page = store.ListJobs(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(page->jobs[0], all.back()));
  EXPECT_TRUE(page->more);
  q.limit = 0;
  page = store.ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->jobs.empty());
  EXPECT_TRUE(page->more);
}

TEST_P(StoreContractTest, FinishedStateIsWhatFiltersSee) {
  Store& store = Open();
  Job job = MakeJob(JobId(1), kRunning, kT0, "alice", {"p1"});
  CreateAll(store, {job});
  // The summary's other fields do not move the job between filters.
  job.set_state(kSucceeded);
  job.set_created_by("someone else");
  job.mutable_targets(0)->set_name("renamed");
  store.FinishJob(job, nullptr);
  ASSERT_TRUE(store.Sync().ok());
  JobQuery running;
  running.states = {kRunning};
  auto page = store.ListJobs(running);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->jobs.empty());
  JobQuery succeeded;
  succeeded.states = {kSucceeded};
  succeeded.periphery = "p1";
  succeeded.created_by = "alice";
  page = store.ListJobs(succeeded);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->jobs), ElementsAreArray({JobId(1)}));
}

// --- Callbacks and Sync ----------------------------------------------------

TEST_P(StoreContractTest, CallbacksRunOnceInCommitOrderOffTheCallersThread) {
  Store& store = Open();
  absl::Mutex mu;
  std::vector<std::string> order;
  bool on_caller_thread = false;
  const std::thread::id caller = std::this_thread::get_id();
  auto note = [&](const std::string& what) {
    return [&, what](const absl::Status& s) {
      absl::MutexLock lock(&mu);
      order.push_back(s.ok() ? what : what + " failed");
      if (std::this_thread::get_id() == caller) on_caller_thread = true;
    };
  };
  std::vector<std::string> want;
  for (int i = 0; i < 30; ++i) {
    const std::string id = JobId(i);
    store.CreateJob(MakeJob(id, kRunning, kT0), note("create " + id));
    want.push_back("create " + id);
    store.AppendEvents(id, {MakeEvent(id, 0)});
    if (i % 3 == 0) {
      StoredToken t;
      t.info.set_id(absl::StrCat("t", i));
      store.SaveToken(t, note(absl::StrCat("token ", i)));
      want.push_back(absl::StrCat("token ", i));
    }
    store.FinishJob(MakeJob(id, kSucceeded, kT0), note("finish " + id));
    want.push_back("finish " + id);
  }
  store.CreateJob(MakeJob(JobId(0), kRunning, kT0), note("duplicate"));
  want.push_back("duplicate failed");
  EXPECT_EQ(store.Sync().code(), absl::StatusCode::kAlreadyExists);
  absl::MutexLock lock(&mu);
  EXPECT_THAT(order, ElementsAreArray(want));
  EXPECT_FALSE(on_caller_thread);
}

TEST_P(StoreContractTest, DestructorCommitsEverythingQueuedAndRunsCallbacks) {
  std::atomic<int> ok_callbacks{0};
  Store& store = Open();
  for (int i = 0; i < 500; ++i) {
    store.CreateJob(MakeJob(JobId(i), kSucceeded, kT0),
                    [&](const absl::Status& s) {
                      if (s.ok()) ++ok_callbacks;
                    });
  }
  store_.reset();
  EXPECT_EQ(ok_callbacks.load(), 500);
}

TEST_P(StoreContractTest, CreateJobCallbackRunsAfterTheJobIsReadable) {
  Store& store = Open();
  absl::Mutex mu;
  std::vector<std::string> unreadable;
  int calls = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string id = JobId(i);
    store.CreateJob(MakeJob(id, kRunning, kT0), [&, id](const absl::Status& s) {
      auto job = store.LoadJob(id);  // reads are allowed in callbacks
      absl::MutexLock lock(&mu);
      ++calls;
      if (!s.ok() || !job.ok()) unreadable.push_back(id);
    });
  }
  ASSERT_TRUE(store.Sync().ok());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(calls, 50);
  EXPECT_TRUE(unreadable.empty()) << unreadable.size();
}

TEST_P(StoreContractTest, SyncAndPruneFromACallbackFailInsteadOfDeadlocking) {
  Store& store = Open();
  absl::Status sync;
  absl::Status prune;
  store.CreateJob(MakeJob(JobId(1), kRunning, kT0), [&](const absl::Status&) {
    sync = store.Sync();
    prune = store.PruneNow().status();
  });
  ASSERT_TRUE(store.Sync().ok());
  EXPECT_EQ(sync.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(prune.code(), absl::StatusCode::kFailedPrecondition);
}

// A failed write reaches its callback and the next Sync (once), and does not
// take the writes around it down.
TEST_P(StoreContractTest, FailedWritesReachCallbacksAndSync) {
  struct Case {
    std::string name;
    std::function<void(Store&, CommitCallback)> bad_write;
    absl::StatusCode want;
    std::string want_message;
  };
  const std::string existing = JobId(1);
  const std::string other = JobId(2);
  const std::vector<Case> cases = {
      {"duplicate job id",
       [&](Store& s, CommitCallback done) {
         s.CreateJob(MakeJob(existing, kFailed, kT0), std::move(done));
       },
       absl::StatusCode::kAlreadyExists, existing},
      {"finishing an unknown job",
       [&](Store& s, CommitCallback done) {
         s.FinishJob(MakeJob(other, kFailed, kT0), std::move(done));
       },
       absl::StatusCode::kNotFound, other},
      {"events of an unknown job",
       [&](Store& s, CommitCallback done) {
         s.AppendEvents(other, {MakeEvent(other, 0), MakeEvent(other, 1)});
         done(absl::OkStatus());
       },
       absl::StatusCode::kNotFound, other},
      {"an event stored twice",
       [&](Store& s, CommitCallback done) {
         // 1 is new, 0 exists: neither is stored.
         s.AppendEvents(existing,
                        {MakeEvent(existing, 1), MakeEvent(existing, 0)});
         done(absl::OkStatus());
       },
       absl::StatusCode::kAlreadyExists, existing},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    Store& store = Open();
    store.CreateJob(MakeJob(existing, kRunning, kT0), nullptr);
    store.AppendEvents(existing, {MakeEvent(existing, 0)});
    ASSERT_TRUE(store.Sync().ok());

    absl::Notification called;
    absl::Status result;
    tc.bad_write(store, [&](const absl::Status& s) {
      result = s;
      called.Notify();
    });
    // A good write right after it commits.
    store.CreateJob(MakeJob(JobId(3), kRunning, kT0), nullptr);
    const absl::Status sync = store.Sync();
    EXPECT_EQ(sync.code(), tc.want) << sync;
    EXPECT_THAT(sync.message(), HasSubstr(tc.want_message));
    ASSERT_TRUE(called.HasBeenNotified()) << "Sync waits for callbacks";
    if (result.code() != absl::StatusCode::kOk) {
      EXPECT_EQ(result.code(), tc.want) << result;
    }
    EXPECT_TRUE(store.Sync().ok()) << "reported once";
    EXPECT_TRUE(store.LoadJob(JobId(3)).ok());
    auto job = store.LoadJob(existing);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->record.state(), kRunning);
    EXPECT_EQ(job->events.size(), 1u);
  }
}

// --- Retention -------------------------------------------------------------

// A pruned job is gone with its events and targets: its id can be created
// again, without events, and no filter finds the old one.
void ExpectGone(Store& store, const Job& job) {
  EXPECT_EQ(store.LoadJob(job.id()).status().code(),
            absl::StatusCode::kNotFound);
  store.CreateJob(MakeJob(job.id(), kSucceeded, kT0, "b", {"other"}), nullptr);
  ASSERT_TRUE(store.Sync().ok()) << job.id();
  auto again = store.LoadJob(job.id());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->events.empty());
}

TEST_P(StoreContractTest, RetentionByAgeDeletesOldFinishedJobsWithTheirRows) {
  FakeClock clock(kT0 + absl::Hours(72));
  ContractOptions options;
  options.retention.max_age = absl::Hours(24);
  options.retention.interval = absl::ZeroDuration();  // PruneNow only
  options.clock = &clock;
  Store& store = Open(options);
  std::vector<Job> old_finished;
  for (int i = 0; i < 5; ++i) {
    Job j = MakeJob(JobId(i), i % 2 ? kFailed : kSucceeded, kT0, "a", {"p9"});
    CreateWithEvents(store, j);
    old_finished.push_back(j);
  }
  const Job old_running = MakeJob(JobId(10), kRunning, kT0, "a", {"p9"});
  CreateWithEvents(store, old_running);
  const Job recent =
      MakeJob(JobId(11), kSucceeded, kT0 + absl::Hours(60), "a", {"p9"});
  CreateWithEvents(store, recent);

  auto pruned = store.PruneNow();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 5u);
  for (const std::string& id : {old_running.id(), recent.id()}) {
    auto job = store.LoadJob(id);
    ASSERT_TRUE(job.ok()) << id;
    EXPECT_EQ(job->events.size(), 2u);
  }
  JobQuery q;
  q.periphery = "p9";
  auto page = store.ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->jobs),
              ElementsAreArray({recent.id(), old_running.id()}));

  // The running job, once finished and old, goes too.
  Job finished = old_running;
  finished.set_state(kSucceeded);
  store.FinishJob(finished, nullptr);
  pruned = store.PruneNow();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 1u);
  EXPECT_FALSE(store.LoadJob(old_running.id()).ok());
  for (const Job& j : old_finished) ExpectGone(store, j);
}

TEST_P(StoreContractTest, RetentionByCountDeletesTheOldestFinishedJobs) {
  ContractOptions options;
  options.retention.max_jobs = 5;
  options.retention.interval = absl::ZeroDuration();  // PruneNow only
  Store& store = Open(options);
  // 12 jobs; 0 and 3 still run.
  std::vector<Job> jobs;
  for (int i = 0; i < 12; ++i) {
    jobs.push_back(MakeJob(JobId(i), (i == 0 || i == 3) ? kRunning : kSucceeded,
                           kT0 + absl::Minutes(i)));
    CreateWithEvents(store, jobs.back());
  }
  auto pruned = store.PruneNow();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 7u);
  JobQuery q;
  q.limit = 100;
  auto page = store.ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->jobs), ElementsAreArray({JobId(11), JobId(10), JobId(9),
                                                 JobId(3), JobId(0)}));
  // Nothing more to do.
  pruned = store.PruneNow();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 0u);
  for (int i : {1, 2, 4, 5, 6, 7, 8}) ExpectGone(store, jobs[i]);
}

TEST_P(StoreContractTest, RetentionDeletesNothingWithoutLimits) {
  Store& store = Open();
  CreateWithEvents(store, MakeJob(JobId(1), kSucceeded, absl::UnixEpoch()));
  auto pruned = store.PruneNow();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 0u);
  EXPECT_TRUE(store.LoadJob(JobId(1)).ok());
}

// The store prunes by itself every interval (on the wall clock: the test
// waits, polling, for at most 10 s).
TEST_P(StoreContractTest, RetentionRunsEveryInterval) {
  ContractOptions options;
  options.retention.max_jobs = 2;
  options.retention.interval = absl::Milliseconds(10);
  Store& store = Open(options);
  for (int i = 0; i < 6; ++i) {
    CreateWithEvents(store, MakeJob(JobId(i), kSucceeded, kT0));
  }
  ASSERT_TRUE(store.Sync().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  size_t left = 0;
  do {
    absl::SleepFor(absl::Milliseconds(5));
    auto page = store.ListJobs({});
    ASSERT_TRUE(page.ok());
    left = page->jobs.size();
  } while (left > 2 && absl::Now() < deadline);
  EXPECT_EQ(left, 2u);
}

}  // namespace
}  // namespace varan::core
