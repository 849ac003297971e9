// Tests for core/store/sqlite_store.h: round trips, listing and paging,
// durability across reopen, commit errors, start-up checks (corrupt,
// future schema, unwritable), retention and file modes. Each test works in
// a fresh temporary directory.
#include "core/store/sqlite_store.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using varan::v1::Job;
using varan::v1::JobEvent;
using varan::v1::JobState;

constexpr JobState kRunning = varan::v1::JOB_STATE_RUNNING;
constexpr JobState kSucceeded = varan::v1::JOB_STATE_SUCCEEDED;
constexpr JobState kFailed = varan::v1::JOB_STATE_FAILED;
constexpr JobState kCanceled = varan::v1::JOB_STATE_CANCELED;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

// A time-ordered id like the dispatcher's: hex millis, counter, random.
std::string JobId(int n) {
  return absl::StrFormat("%011x%03x%s", absl::ToUnixMillis(kT0) + n, n & 0xfff,
                         "c0ffee");
}

Job MakeJob(const std::string& id, JobState state, absl::Time created,
            const std::string& created_by = "admin",
            const std::vector<std::string>& targets = {"p1"}) {
  Job job;
  job.set_id(id);
  job.set_created_by(created_by);
  job.set_state(state);
  job.mutable_spec()->add_argv("/bin/true");
  SetTimestamp(created, job.mutable_create_time());
  for (const std::string& name : targets) {
    varan::v1::JobTarget* t = job.add_targets();
    t->set_name(name);
    t->set_periphery_id("id-" + name);
    t->set_state(varan::v1::TARGET_STATE_QUEUED);
  }
  return job;
}

JobEvent MakeEvent(const std::string& job_id, uint64_t seq) {
  JobEvent e;
  e.set_job_id(job_id);
  e.set_sequence(seq);
  SetTimestamp(kT0 + absl::Seconds(static_cast<int64_t>(seq)),
               e.mutable_time());
  e.set_target("p1");
  e.mutable_output()->set_data(absl::StrFormat("chunk %d\n", seq));
  return e;
}

std::vector<std::string> Ids(const std::vector<Job>& jobs) {
  std::vector<std::string> ids;
  for (const Job& j : jobs) ids.push_back(j.id());
  return ids;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

unsigned Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// Sets or clears the immutable attribute (which stops root too). False if
// the file system does not support it.
bool SetImmutable(const std::string& path, bool on) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  int flags = 0;
  bool ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
  if (ok) {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  close(fd);
  return ok;
}

// Runs one statement on the database with a connection of the test's own
// and returns its first integer column (-1 on error).
int64_t QueryInt(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  int64_t result = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      result = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return result;
}

// Like QueryInt, for a text result ("" on error).
std::string QueryText(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string result;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) ==
      SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      if (text != nullptr) result = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return result;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/varan-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/core.db";
  }
  void TearDown() override {
    for (const std::string& p : immutable_) SetImmutable(p, false);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::unique_ptr<SqliteStore> OpenStore(SqliteStoreOptions options = {}) {
    auto store = SqliteStore::Open(path_, options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Creates the jobs and waits for their commit.
  static void CreateAll(SqliteStore& store, const std::vector<Job>& jobs) {
    for (const Job& j : jobs) store.CreateJob(j, nullptr);
    ASSERT_TRUE(store.Sync().ok());
  }

  std::string dir_;
  std::string path_;
  std::vector<std::string> immutable_;
};

// --- Peripheries ---------------------------------------------------------

StoredPeriphery MakePeriphery(const std::string& id, const std::string& name,
                              varan::v1::PeripheryState state) {
  StoredPeriphery p;
  p.info.set_id(id);
  p.info.set_name(name);
  p.info.set_state(state);
  p.info.set_address("[fd00::5]:7701");
  (*p.info.mutable_labels())["env"] = "prod";
  (*p.info.mutable_reported_labels())["env"] = "dev";
  SetTimestamp(kT0, p.info.mutable_first_seen());
  p.credential = "secret-" + id;
  return p;
}

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

TEST_F(SqliteStoreTest, PeripheriesRoundTrip) {
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
    std::filesystem::remove(path_);
    {
      auto store = OpenStore();
      ASSERT_NE(store, nullptr);
      for (const StoredPeriphery& p : tc.saves) store->SavePeriphery(p);
      ASSERT_TRUE(store->Sync().ok());
      auto got = store->LoadPeripheries();
      ASSERT_TRUE(got.ok()) << got.status();
      ExpectPeripheriesEqual(*got, tc.want);
    }
    auto reopened = OpenStore();
    ASSERT_NE(reopened, nullptr);
    auto got = reopened->LoadPeripheries();
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectPeripheriesEqual(*got, tc.want);
  }
}

// --- Jobs ----------------------------------------------------------------

TEST_F(SqliteStoreTest, JobLifecycleLoadsFinalRecordAndEventsInOrder) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  const std::string id = JobId(1);
  const Job created = MakeJob(id, kRunning, kT0, "alice", {"p1", "p2"});
  std::vector<absl::Status> results;
  absl::Mutex mu;
  auto record = [&](const absl::Status& s) {
    absl::MutexLock lock(&mu);
    results.push_back(s);
  };
  store->CreateJob(created, record);
  store->AppendEvents(id, {MakeEvent(id, 0), MakeEvent(id, 1)});
  store->AppendEvents(id, {MakeEvent(id, 2)});
  store->AppendEvents(id, std::vector<JobEvent>{});
  store->AppendEvents(id, {MakeEvent(id, 3), MakeEvent(id, 4)});
  Job finished = created;
  finished.set_state(kFailed);
  SetTimestamp(kT0 + absl::Seconds(3), finished.mutable_finish_time());
  finished.mutable_targets(0)->set_state(varan::v1::TARGET_STATE_EXITED);
  finished.mutable_targets(0)->mutable_exit_status()->set_code(1);
  Job with_output = finished;
  with_output.mutable_targets(0)->set_stdout("never stored");
  store->FinishJob(with_output, record);
  ASSERT_TRUE(store->Sync().ok());
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(results.size(), 2u);
    EXPECT_TRUE(results[0].ok()) << results[0];
    EXPECT_TRUE(results[1].ok()) << results[1];
  }

  auto job = store->LoadJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_TRUE(MessageDifferencer::Equals(job->record, finished))
      << job->record.DebugString();
  ASSERT_EQ(job->events.size(), 5u);
  for (uint64_t i = 0; i < 5; ++i) {
    EXPECT_TRUE(MessageDifferencer::Equals(job->events[i], MakeEvent(id, i)))
        << job->events[i].DebugString();
  }
}

TEST_F(SqliteStoreTest, LoadJobNotFoundNamesTheId) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  CreateAll(*store, {MakeJob(JobId(1), kRunning, kT0)});
  auto job = store->LoadJob("0000nosuchjob");
  ASSERT_EQ(job.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(job.status().message(), HasSubstr("0000nosuchjob"));
}

TEST_F(SqliteStoreTest, LoadUnfinishedJobsReturnsRunningOnesOldestFirst) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  CreateAll(
      *store,
      {MakeJob(JobId(3), kRunning, kT0), MakeJob(JobId(1), kRunning, kT0),
       MakeJob(JobId(2), kRunning, kT0), MakeJob(JobId(4), kSucceeded, kT0)});
  store->AppendEvents(JobId(1), {MakeEvent(JobId(1), 0)});
  Job done = MakeJob(JobId(2), kCanceled, kT0);
  store->FinishJob(done, nullptr);
  ASSERT_TRUE(store->Sync().ok());

  auto jobs = store->LoadUnfinishedJobs();
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  std::vector<std::string> ids;
  for (const StoredJob& j : *jobs) ids.push_back(j.record.id());
  EXPECT_THAT(ids, ElementsAreArray({JobId(1), JobId(3)}));
  ASSERT_EQ((*jobs)[0].events.size(), 1u);
  EXPECT_EQ((*jobs)[0].events[0].job_id(), JobId(1));
  EXPECT_TRUE((*jobs)[1].events.empty());
}

TEST_F(SqliteStoreTest, ListJobsFiltersOrdersAndPages) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
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
  CreateAll(*store, shuffled);

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
    auto page = store->ListJobs(q);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_THAT(Ids(page->jobs), ElementsAreArray(want));
    EXPECT_FALSE(page->more);
    // Pages of 3, continuing with before_id: every job exactly once.
    std::vector<std::string> paged;
    q.limit = 3;
    for (int guard = 0; guard < 100; ++guard) {
      page = store->ListJobs(q);
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
  auto page = store->ListJobs(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_TRUE(MessageDifferencer::Equals(page->jobs[0], all.back()));
  EXPECT_TRUE(page->more);
  q.limit = 0;
  page = store->ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->jobs.empty());
  EXPECT_TRUE(page->more);
}

TEST_F(SqliteStoreTest, FinishedStateIsWhatFiltersSee) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Job job = MakeJob(JobId(1), kRunning, kT0, "alice", {"p1"});
  CreateAll(*store, {job});
  job.set_state(kSucceeded);
  store->FinishJob(job, nullptr);
  ASSERT_TRUE(store->Sync().ok());
  JobQuery running;
  running.states = {kRunning};
  auto page = store->ListJobs(running);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->jobs.empty());
  JobQuery succeeded;
  succeeded.states = {kSucceeded};
  succeeded.periphery = "p1";
  succeeded.created_by = "alice";
  page = store->ListJobs(succeeded);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->jobs), ElementsAreArray({JobId(1)}));
}

TEST_F(SqliteStoreTest, DataSurvivesCloseAndReopen) {
  const std::string id = JobId(7);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    store->SavePeriphery(
        MakePeriphery("a1", "alpha", varan::v1::PERIPHERY_STATE_ONLINE));
    store->CreateJob(MakeJob(id, kRunning, kT0), nullptr);
    store->AppendEvents(id, {MakeEvent(id, 0), MakeEvent(id, 1)});
    // No Sync: closing commits what is queued.
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto peripheries = store->LoadPeripheries();
  ASSERT_TRUE(peripheries.ok());
  ASSERT_EQ(peripheries->size(), 1u);
  EXPECT_EQ((*peripheries)[0].credential, "secret-a1");
  auto job = store->LoadJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->events.size(), 2u);
  auto unfinished = store->LoadUnfinishedJobs();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_EQ(unfinished->size(), 1u);
}

TEST_F(SqliteStoreTest, DestructorCommitsEverythingQueuedAndRunsCallbacks) {
  std::atomic<int> ok_callbacks{0};
  {
    SqliteStoreOptions options;
    options.max_batch_ops = 7;  // many batches
    auto store = OpenStore(options);
    ASSERT_NE(store, nullptr);
    for (int i = 0; i < 500; ++i) {
      store->CreateJob(MakeJob(JobId(i), kSucceeded, kT0),
                       [&](const absl::Status& s) {
                         if (s.ok()) ++ok_callbacks;
                       });
    }
  }
  EXPECT_EQ(ok_callbacks.load(), 500);
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  JobQuery q;
  q.limit = 1000;
  auto page = store->ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->jobs.size(), 500u);
}

TEST_F(SqliteStoreTest, CreateJobCallbackRunsAfterTheJobIsReadable) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::Mutex mu;
  std::vector<std::string> unreadable;
  int calls = 0;
  for (int i = 0; i < 50; ++i) {
    const std::string id = JobId(i);
    store->CreateJob(
        MakeJob(id, kRunning, kT0), [&, id](const absl::Status& s) {
          auto job = store->LoadJob(id);  // reads are allowed in callbacks
          absl::MutexLock lock(&mu);
          ++calls;
          if (!s.ok() || !job.ok()) unreadable.push_back(id);
        });
  }
  ASSERT_TRUE(store->Sync().ok());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(calls, 50);
  EXPECT_TRUE(unreadable.empty()) << unreadable.size();
}

TEST_F(SqliteStoreTest, SyncFromACallbackFailsInsteadOfDeadlocking) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::Status from_callback;
  store->CreateJob(MakeJob(JobId(1), kRunning, kT0),
                   [&](const absl::Status&) { from_callback = store->Sync(); });
  ASSERT_TRUE(store->Sync().ok());
  EXPECT_EQ(from_callback.code(), absl::StatusCode::kFailedPrecondition);
}

// A failed write reaches its callback and the next Sync (once), and does not
// take the rest of its batch down.
TEST_F(SqliteStoreTest, FailedWritesReachCallbacksAndSync) {
  struct Case {
    std::string name;
    std::function<void(SqliteStore&, CommitCallback)> bad_write;
    absl::StatusCode want;
    std::string want_message;
  };
  const std::string existing = JobId(1);
  const std::string other = JobId(2);
  const std::vector<Case> cases = {
      {"duplicate job id",
       [&](SqliteStore& s, CommitCallback done) {
         s.CreateJob(MakeJob(existing, kFailed, kT0), std::move(done));
       },
       absl::StatusCode::kAlreadyExists, existing},
      {"finishing an unknown job",
       [&](SqliteStore& s, CommitCallback done) {
         s.FinishJob(MakeJob(other, kFailed, kT0), std::move(done));
       },
       absl::StatusCode::kNotFound, other},
      {"events of an unknown job",
       [&](SqliteStore& s, CommitCallback done) {
         s.AppendEvents(other, {MakeEvent(other, 0), MakeEvent(other, 1)});
         done(absl::OkStatus());
       },
       absl::StatusCode::kNotFound, other},
      {"an event stored twice",
       [&](SqliteStore& s, CommitCallback done) {
         // 1 is new, 0 exists: neither is stored.
         s.AppendEvents(existing,
                        {MakeEvent(existing, 1), MakeEvent(existing, 0)});
         done(absl::OkStatus());
       },
       absl::StatusCode::kAlreadyExists, existing},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    std::filesystem::remove(path_);
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    store->CreateJob(MakeJob(existing, kRunning, kT0), nullptr);
    store->AppendEvents(existing, {MakeEvent(existing, 0)});
    ASSERT_TRUE(store->Sync().ok());

    absl::Notification called;
    absl::Status result;
    tc.bad_write(*store, [&](const absl::Status& s) {
      result = s;
      called.Notify();
    });
    // A good write in the same batch commits.
    store->CreateJob(MakeJob(JobId(3), kRunning, kT0), nullptr);
    const absl::Status sync = store->Sync();
    EXPECT_EQ(sync.code(), tc.want) << sync;
    EXPECT_THAT(sync.message(), HasSubstr(tc.want_message));
    ASSERT_TRUE(called.WaitForNotificationWithTimeout(absl::Seconds(10)));
    if (result.code() != absl::StatusCode::kOk) {
      EXPECT_EQ(result.code(), tc.want) << result;
    }
    EXPECT_TRUE(store->Sync().ok()) << "reported once";
    EXPECT_TRUE(store->LoadJob(JobId(3)).ok());
    auto job = store->LoadJob(existing);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->record.state(), kRunning);
    EXPECT_EQ(job->events.size(), 1u);
  }
}

TEST_F(SqliteStoreTest, DiskFullFailsTheBatchAndLaterWritesSucceed) {
  SqliteStoreOptions options;
  options.max_size_bytes = 256 * 1024;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  Job big = MakeJob(JobId(1), kRunning, kT0);
  big.mutable_targets(0)->set_error(std::string(1 << 20, 'x'));
  absl::Status result;
  store->CreateJob(big, [&](const absl::Status& s) { result = s; });
  const absl::Status sync = store->Sync();
  EXPECT_EQ(sync.code(), absl::StatusCode::kResourceExhausted) << sync;
  EXPECT_THAT(sync.message(), HasSubstr(JobId(1)));
  EXPECT_EQ(result.code(), absl::StatusCode::kResourceExhausted) << result;
  EXPECT_EQ(store->LoadJob(JobId(1)).status().code(),
            absl::StatusCode::kNotFound);

  CreateAll(*store, {MakeJob(JobId(2), kRunning, kT0)});
  EXPECT_TRUE(store->LoadJob(JobId(2)).ok());
}

// What the store promises: a kill -9 loses nothing that Sync confirmed, and
// leaves a database that opens and passes its check.
TEST_F(SqliteStoreTest, KillNineLosesNothingSynced) {
  constexpr int kSynced = 1000;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    auto store = SqliteStore::Open(path_, {});
    if (!store.ok()) _exit(2);
    int i = 0;
    for (; i < kSynced; ++i) {
      (*store)->CreateJob(MakeJob(JobId(i), kRunning, kT0), nullptr);
    }
    if (!(*store)->Sync().ok()) _exit(3);
    const char c = 's';
    if (write(fds[1], &c, 1) != 1) _exit(4);
    // Keep committing until killed (or, if the parent is gone, for 30 s).
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    for (; absl::Now() < give_up; ++i) {
      (*store)->CreateJob(MakeJob(JobId(i), kRunning, kT0), nullptr);
      (*store)->AppendEvents(JobId(i), {MakeEvent(JobId(i), 0)});
      if (i % 100 == 0) (void)(*store)->Sync();
    }
    _exit(5);
  }
  // Kills the child however the test ends.
  struct Killer {
    explicit Killer(pid_t p) : pid(p) {}
    Killer(const Killer&) = delete;
    Killer& operator=(const Killer&) = delete;
    ~Killer() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    const pid_t pid;
  };
  std::optional<Killer> killer;
  killer.emplace(pid);
  close(fds[1]);
  char c = 0;
  ASSERT_EQ(read(fds[0], &c, 1), 1) << "the child failed before syncing";
  close(fds[0]);
  absl::SleepFor(absl::Milliseconds(100));  // in the middle of writes
  killer.reset();

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < kSynced; ++i) {
    ASSERT_TRUE(store->LoadJob(JobId(i)).ok()) << i;
  }
}

// --- Start-up checks -----------------------------------------------------

TEST_F(SqliteStoreTest, CorruptFileIsAClearErrorAndIsLeftAlone) {
  // A real database to damage.
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    std::vector<Job> jobs;
    for (int i = 0; i < 300; ++i) {
      Job j = MakeJob(JobId(i), kSucceeded, kT0, "alice", {"p1", "p2"});
      j.mutable_spec()->set_shell(std::string(500, 'a' + i % 26));
      jobs.push_back(j);
    }
    CreateAll(*store, jobs);
  }
  const std::string good = Slurp(path_);
  ASSERT_GT(good.size(), 100u * 1024);

  struct Case {
    std::string name;
    std::string bytes;
  };
  std::string garbage(64 * 1024, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) {
    garbage[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  std::string scribbled = good;
  for (size_t i = good.size() / 3; i < good.size() / 3 + 20000; ++i) {
    scribbled[i] = static_cast<char>(i * 7);
  }
  const std::vector<Case> cases = {
      {"garbage", garbage},
      {"text", "this is not a database, just a note\n"},
      {"truncated", good.substr(0, good.size() / 2)},
      {"scribbled over", scribbled},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    std::filesystem::remove(path_);
    {
      std::ofstream out(path_, std::ios::binary);
      out << tc.bytes;
    }
    auto store = SqliteStore::Open(path_, {});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss)
        << store.status();
    EXPECT_THAT(store.status().message(),
                HasSubstr(path_ + " is not a valid database"));
    EXPECT_TRUE(Slurp(path_) == tc.bytes) << "the file was modified";
  }
}

TEST_F(SqliteStoreTest, FutureSchemaIsAClearError) {
  { ASSERT_NE(OpenStore(), nullptr); }
  ASSERT_EQ(QueryInt(path_, "PRAGMA user_version"),
            SqliteStore::kSchemaVersion);
  ASSERT_EQ(QueryInt(path_, "PRAGMA user_version = 99"), -1);  // no row
  ASSERT_EQ(QueryInt(path_, "PRAGMA user_version"), 99);
  auto store = SqliteStore::Open(path_, {});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
  EXPECT_THAT(store.status().message(), HasSubstr("schema version 99"));
  EXPECT_EQ(QueryInt(path_, "PRAGMA user_version"), 99);
}

TEST_F(SqliteStoreTest, UnopenablePathsAreClearErrors) {
  struct Case {
    std::string name;
    std::string path;
    absl::StatusCode want;
  };
  std::filesystem::create_directory(dir_ + "/dir.db");
  const std::vector<Case> cases = {
      {"a directory", dir_ + "/dir.db", absl::StatusCode::kInvalidArgument},
      {"missing parent", dir_ + "/missing/core.db",
       absl::StatusCode::kNotFound},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    auto store = SqliteStore::Open(tc.path, {});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), tc.want) << store.status();
    EXPECT_THAT(store.status().message(), HasSubstr(tc.path));
  }
}

// Root ignores permission bits, but not the immutable attribute.
TEST_F(SqliteStoreTest, UnwritableDatabaseIsAClearErrorNotReadOnlyMode) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    CreateAll(*store, {MakeJob(JobId(1), kSucceeded, kT0)});
  }
  const std::string before = Slurp(path_);
  struct Case {
    std::string name;
    std::string immutable;
  };
  const std::vector<Case> cases = {
      {"file", path_},
      {"directory (no -wal/-shm)", dir_},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.name);
    if (!SetImmutable(tc.immutable, true)) {
      GTEST_SKIP() << "the file system does not support chattr +i here";
    }
    immutable_.push_back(tc.immutable);
    auto store = SqliteStore::Open(path_, {});
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), absl::StatusCode::kPermissionDenied)
        << store.status();
    EXPECT_THAT(store.status().message(),
                HasSubstr("cannot open " + path_ + " for writing"));
    ASSERT_TRUE(SetImmutable(tc.immutable, false));
    immutable_.pop_back();
    EXPECT_TRUE(Slurp(path_) == before);
  }
  // Writable again: opens, data intact.
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->LoadJob(JobId(1)).ok());
}

TEST_F(SqliteStoreTest, FilesArePrivate) {
  // Even with a permissive umask, and for a file that existed with a wider
  // mode.
  const mode_t old_umask = umask(0);
  { std::ofstream touch(path_); }
  chmod(path_.c_str(), 0644);
  auto store = OpenStore();
  umask(old_umask);
  ASSERT_NE(store, nullptr);
  CreateAll(*store, {MakeJob(JobId(1), kRunning, kT0)});
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string p = path_ + suffix;
    ASSERT_TRUE(std::filesystem::exists(p)) << p;
    EXPECT_EQ(Mode(p), 0600u) << p;
  }
}

TEST_F(SqliteStoreTest, ReopenKeepsSchemaVersionAndWal) {
  { ASSERT_NE(OpenStore(), nullptr); }
  { ASSERT_NE(OpenStore(), nullptr); }
  EXPECT_EQ(QueryInt(path_, "PRAGMA user_version"),
            SqliteStore::kSchemaVersion);
  EXPECT_EQ(QueryText(path_, "PRAGMA journal_mode"), "wal");
}

// --- Retention -----------------------------------------------------------

class RetentionTest : public SqliteStoreTest {
 protected:
  // Rows left in `table` for job `id`.
  int64_t Rows(const std::string& table, const std::string& id) {
    return QueryInt(path_, "SELECT COUNT(*) FROM " + table +
                               " WHERE job_id = '" + id + "'");
  }
  void CreateWithEvents(SqliteStore& store, const Job& job) {
    store.CreateJob(job, nullptr);
    store.AppendEvents(job.id(),
                       {MakeEvent(job.id(), 0), MakeEvent(job.id(), 1)});
  }
};

TEST_F(RetentionTest, ByAgeDeletesOldFinishedJobsWithTheirRows) {
  FakeClock clock(kT0 + absl::Hours(72));
  SqliteStoreOptions options;
  options.retention.max_age = absl::Hours(24);
  options.retention.interval = absl::ZeroDuration();  // PruneNow only
  options.prune_batch_jobs = 2;                       // several transactions
  options.clock = &clock;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  std::vector<std::string> old_finished, kept;
  for (int i = 0; i < 5; ++i) {
    Job j = MakeJob(JobId(i), i % 2 ? kFailed : kSucceeded, kT0, "a", {"p9"});
    CreateWithEvents(*store, j);
    old_finished.push_back(j.id());
  }
  const Job old_running = MakeJob(JobId(10), kRunning, kT0, "a", {"p9"});
  CreateWithEvents(*store, old_running);
  kept.push_back(old_running.id());
  const Job recent =
      MakeJob(JobId(11), kSucceeded, kT0 + absl::Hours(60), "a", {"p9"});
  CreateWithEvents(*store, recent);
  kept.push_back(recent.id());

  auto pruned = store->PruneNow();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 5u);
  for (const std::string& id : old_finished) {
    EXPECT_EQ(store->LoadJob(id).status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(Rows("job_events", id), 0);
    EXPECT_EQ(Rows("job_targets", id), 0);
  }
  for (const std::string& id : kept) {
    auto job = store->LoadJob(id);
    ASSERT_TRUE(job.ok()) << id;
    EXPECT_EQ(job->events.size(), 2u);
    EXPECT_EQ(Rows("job_targets", id), 1);
  }
  JobQuery q;
  q.periphery = "p9";
  auto page = store->ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->jobs),
              ElementsAreArray({recent.id(), old_running.id()}));

  // The running job, once finished and old, goes too.
  Job finished = old_running;
  finished.set_state(kSucceeded);
  store->FinishJob(finished, nullptr);
  pruned = store->PruneNow();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 1u);
  EXPECT_FALSE(store->LoadJob(old_running.id()).ok());
}

TEST_F(RetentionTest, ByCountDeletesTheOldestFinishedJobs) {
  SqliteStoreOptions options;
  options.retention.max_jobs = 5;
  options.retention.interval = absl::ZeroDuration();  // PruneNow only
  options.prune_batch_jobs = 2;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  // 12 jobs; 0 and 3 still run.
  for (int i = 0; i < 12; ++i) {
    CreateWithEvents(
        *store, MakeJob(JobId(i), (i == 0 || i == 3) ? kRunning : kSucceeded,
                        kT0 + absl::Minutes(i)));
  }
  auto pruned = store->PruneNow();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 7u);
  JobQuery q;
  q.limit = 100;
  auto page = store->ListJobs(q);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(Ids(page->jobs), ElementsAreArray({JobId(11), JobId(10), JobId(9),
                                                 JobId(3), JobId(0)}));
  for (int i : {1, 2, 4, 5, 6, 7, 8}) {
    EXPECT_EQ(Rows("job_events", JobId(i)), 0) << i;
    EXPECT_EQ(Rows("job_targets", JobId(i)), 0) << i;
  }
  // Nothing more to do.
  pruned = store->PruneNow();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 0u);
}

TEST_F(RetentionTest, NothingIsDeletedWithoutLimits) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  CreateWithEvents(*store, MakeJob(JobId(1), kSucceeded, absl::UnixEpoch()));
  auto pruned = store->PruneNow();
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 0u);
  EXPECT_TRUE(store->LoadJob(JobId(1)).ok());
}

TEST_F(RetentionTest, RunsEveryInterval) {
  SqliteStoreOptions options;
  options.retention.max_jobs = 2;
  options.retention.interval = absl::Milliseconds(10);
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 6; ++i) {
    CreateWithEvents(*store, MakeJob(JobId(i), kSucceeded, kT0));
  }
  ASSERT_TRUE(store->Sync().ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  size_t left = 0;
  do {
    absl::SleepFor(absl::Milliseconds(5));
    auto page = store->ListJobs({});
    ASSERT_TRUE(page.ok());
    left = page->jobs.size();
  } while (left > 2 && absl::Now() < deadline);
  EXPECT_EQ(left, 2u);
}

// --- Throughput (a figure, not an assertion) -------------------------------

// The dispatch path's write pattern: per single-target job, one CreateJob,
// five events in three AppendEvents calls and one FinishJob.
TEST_F(SqliteStoreTest, ThroughputFigure) {
#ifdef VARAN_SANITIZED
  const int kJobs = 2000;
#else
  const int kJobs = 20000;
#endif
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::atomic<int> committed{0};
  const absl::Time start = absl::Now();
  for (int i = 0; i < kJobs; ++i) {
    const std::string id = absl::StrFormat("%011x%05x", 1700000000000 + i, i);
    Job job = MakeJob(id, kRunning, kT0 + absl::Milliseconds(i), "bench",
                      {absl::StrFormat("p%d", i % 100)});
    store->CreateJob(job, [&](const absl::Status& s) {
      if (s.ok()) ++committed;
    });
    store->AppendEvents(id, {MakeEvent(id, 0), MakeEvent(id, 1)});
    store->AppendEvents(id, {MakeEvent(id, 2), MakeEvent(id, 3)});
    store->AppendEvents(id, {MakeEvent(id, 4)});
    job.set_state(kSucceeded);
    store->FinishJob(job, nullptr);
  }
  ASSERT_TRUE(store->Sync().ok());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(committed.load(), kJobs);
  std::printf("[ FIGURE   ] %d jobs in %.3f s: %.0f jobs/s\n", kJobs, seconds,
              kJobs / seconds);
}

}  // namespace
}  // namespace varan::core
