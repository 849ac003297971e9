// Tests for what SqliteStore (core/store/sqlite_store.h) adds to the Store
// contract (which store_contract_test.cc checks for every backend):
// durability across reopen and kill -9, disk full, start-up checks
// (corrupt, future schema, unwritable), file modes, that retention deletes
// every row of a job, and a throughput figure. Each test works in a fresh
// temporary directory.
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

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_test_util.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using varan::v1::Job;
using namespace store_test;  // NOLINT: the shared test records

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

// Output as core writes it during a long stream: many appends, the head and
// the tail read back after the store is closed and opened again, and the
// rows that fell out of the tail gone from the file.
TEST_F(SqliteStoreTest, OutputSurvivesCloseAndReopenAndOnlyTheTailStaysOnDisk) {
  const std::string id = JobId(7);
  const OutputKey key{id, "p1", varan::v1::OUTPUT_STREAM_STDOUT};
  const OutputRetention retention{1000, 3000};
  std::string all;
  for (int i = 0; all.size() < 100000; ++i) {
    all += absl::StrFormat("line %d of a long log\n", i);
  }
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    store->CreateJob(MakeJob(id, kRunning, kT0), nullptr);
    for (size_t at = 0; at < all.size(); at += 700) {
      const std::string piece = all.substr(at, 700);
      store->AppendOutput(key, at, piece, retention, nullptr);
      // A duplicate delivery of the same piece changes nothing.
      store->AppendOutput(key, at, piece, retention, nullptr);
    }
    ASSERT_TRUE(store->Sync().ok());
  }
  // One row per append in the head (2, the second split at 1000) and in the
  // tail (5, one straddling its start), nothing of the middle.
  EXPECT_EQ(QueryInt(path_, "SELECT COUNT(*) FROM output_chunks"), 7);
  EXPECT_LE(QueryInt(path_, "SELECT SUM(size) FROM output_chunks"),
            1000 + 3000 + 700);
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto out = store->ReadOutput(key, 0, 1 << 20);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->extent.end, all.size());
  EXPECT_EQ(out->extent.head_end, 1000u);
  EXPECT_EQ(out->extent.tail_start, all.size() - 3000);
  EXPECT_EQ(out->extent.stored, 4000u);
  ASSERT_EQ(out->pieces.size(), 2u);
  EXPECT_EQ(out->pieces[0].offset, 0u);
  EXPECT_EQ(out->pieces[0].data, all.substr(0, 1000));
  EXPECT_EQ(out->pieces[1].offset, all.size() - 3000);
  EXPECT_EQ(out->pieces[1].data, all.substr(all.size() - 3000));
  // The stream goes on after the restart where it stopped.
  store->AppendOutput(key, all.size(), "after", retention, nullptr);
  ASSERT_TRUE(store->Sync().ok());
  out = store->ReadOutput(key, all.size() - 5, 100);
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->pieces.size(), 1u);
  EXPECT_EQ(out->pieces[0].data, all.substr(all.size() - 5) + "after");
}

// A database of schema version 2 (before stored output) is upgraded when
// opened: its jobs stay, and output can be stored for them.
TEST_F(SqliteStoreTest, MigrationToVersion3AddsOutputToAnOldDatabase) {
  const std::string id = JobId(3);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    store->CreateJob(MakeJob(id, kSucceeded, kT0), nullptr);
    store->AppendEvents(id, {MakeEvent(id, 0)});
    ASSERT_TRUE(store->Sync().ok());
  }
  // Back to what version 2 had.
  ASSERT_EQ(QueryInt(path_, "DROP TABLE output_chunks"), -1);
  ASSERT_EQ(QueryInt(path_, "DROP TABLE output_streams"), -1);
  ASSERT_EQ(QueryInt(path_, "PRAGMA user_version = 2"), -1);
  ASSERT_EQ(QueryInt(path_, "PRAGMA user_version"), 2);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(QueryInt(path_, "PRAGMA user_version"),
            SqliteStore::kSchemaVersion);
  auto job = store->LoadJob(id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->events.size(), 1u);
  const OutputKey key{id, "p1", varan::v1::OUTPUT_STREAM_STDERR};
  store->AppendOutput(key, 0, "late", {10, 10}, nullptr);
  ASSERT_TRUE(store->Sync().ok());
  auto out = store->ReadOutput(key, 0, 100);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->pieces.size(), 1u);
  EXPECT_EQ(out->pieces[0].data, "late");
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

// One database, one core: a second store on it (in this process here; the
// lock is the kernel's, so another process is refused alike) is refused
// while the first is open, naming who has it, and opens once it closed.
TEST_F(SqliteStoreTest, ASecondStoreOnTheSameDatabaseIsRefused) {
  auto first = OpenStore();
  ASSERT_NE(first, nullptr);
  CreateAll(*first, {MakeJob(JobId(1), kSucceeded, kT0)});
  auto second = SqliteStore::Open(path_, {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat(path_,
                                     " is in use by another varan-core "
                                     "(process ",
                                     getpid(), ")")));
  first.reset();
  auto third = SqliteStore::Open(path_, {});
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE((*third)->LoadJob(JobId(1)).ok());
}

// A writer held up (here by another connection holding the write lock, as
// a slow disk would) lets writes pile up: past max_pending_writes,
// CheckBacklog refuses new work with a retry hint; once they are written,
// it is OK again. No write is refused or lost for it.
TEST_F(SqliteStoreTest, WritesPilingUpBehindASlowWriterAreABacklog) {
  SqliteStoreOptions options;
  options.max_pending_writes = 5;
  options.busy_timeout = absl::Seconds(30);
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->CheckBacklog().ok());

  sqlite3* blocker = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2(path_.c_str(), &blocker, SQLITE_OPEN_READWRITE, nullptr),
      SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  for (int i = 0; i < 10; ++i) {
    store->CreateJob(MakeJob(JobId(i), kRunning, kT0), nullptr);
  }
  const absl::Status behind = store->CheckBacklog();
  EXPECT_EQ(behind.code(), absl::StatusCode::kResourceExhausted) << behind;
  EXPECT_THAT(behind.message(), HasSubstr("10 writes wait for the database"));
  EXPECT_EQ(RetryAfter(behind), absl::Seconds(1));

  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(blocker);
  ASSERT_TRUE(store->Sync().ok());
  EXPECT_TRUE(store->CheckBacklog().ok());
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(store->LoadJob(JobId(i)).ok()) << i;
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
  // Rows of output_chunks of job `id`.
  int64_t OutputRows(const std::string& id) {
    return QueryInt(path_,
                    "SELECT COUNT(*) FROM output_chunks WHERE stream_id IN "
                    "(SELECT id FROM output_streams WHERE job_id = '" +
                        id + "')");
  }
  // The job with two events and a line on each stream.
  void CreateWithEvents(SqliteStore& store, const Job& job) {
    store.CreateJob(job, nullptr);
    store.AppendEvents(job.id(),
                       {MakeEvent(job.id(), 0), MakeEvent(job.id(), 1)});
    for (auto stream :
         {varan::v1::OUTPUT_STREAM_STDOUT, varan::v1::OUTPUT_STREAM_STDERR}) {
      store.AppendOutput({job.id(), "p1", stream}, 0, "a line\n", {10, 10},
                         nullptr);
    }
  }
};

TEST_F(RetentionTest, PruningDeletesEveryRowOfTheJob) {
  SqliteStoreOptions options;
  options.retention.max_jobs = 1;
  options.retention.interval = absl::ZeroDuration();  // PruneNow only
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  CreateWithEvents(*store, MakeJob(JobId(1), kSucceeded, kT0));
  CreateWithEvents(*store, MakeJob(JobId(2), kSucceeded, kT0));
  auto pruned = store->PruneNow();
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(*pruned, 1u);
  EXPECT_EQ(QueryInt(path_,
                     "SELECT COUNT(*) FROM jobs WHERE id = '" + JobId(1) + "'"),
            0);
  EXPECT_EQ(Rows("job_events", JobId(1)), 0);
  EXPECT_EQ(Rows("job_targets", JobId(1)), 0);
  EXPECT_EQ(Rows("output_streams", JobId(1)), 0);
  EXPECT_EQ(OutputRows(JobId(1)), 0);
  EXPECT_EQ(Rows("output_streams", JobId(2)), 2);
  EXPECT_EQ(OutputRows(JobId(2)), 2);
  EXPECT_EQ(Rows("job_events", JobId(2)), 2);
  EXPECT_EQ(Rows("job_targets", JobId(2)), 1);
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