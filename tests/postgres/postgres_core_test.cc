// varan-core on PostgreSQL (--database / --database-file), through the real
// binaries and a real PostgreSQL 15: a periphery joins, commands run, and
// after kill -9 of core the fleet, the jobs and their output are still
// there; a second core on the same database is refused; the URL (with its
// password) appears in no log and no error.
#include <sys/stat.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/test_postgres.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "hunter2-not-logged";

class PostgresCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const absl::Status started = pg_.Start();
    ASSERT_TRUE(started.ok()) << started;
    // Trust authentication ignores the password; it is there to be kept
    // out of every message.
    url_file_ = dir_.File("database.url");
    WriteFile(url_file_,
              absl::StrCat("postgresql://varan:", kPassword, "@", pg_.host(),
                           ":", pg_.port(), "/postgres\n"));
    ASSERT_EQ(chmod(url_file_.c_str(), 0600), 0);
  }

  TestPostgres pg_;
  TempDir dir_;
  std::string url_file_;
};

TEST_F(PostgresCoreTest, CommandsRunAndEverythingSurvivesAKillOfCore) {
  TestFleet fleet({"--database-file", url_file_});
  fleet.StartCore();
  fleet.StartPeriphery("pg-web-1", {"tier=web"});

  RunResult r = fleet.Ctl(
      {"exec", "--async", "-n", "pg-web-1", "--", "echo", "kept in postgres"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id(absl::StripTrailingAsciiWhitespace(r.out));
  EXPECT_EQ(fleet.WaitFinished(id).state(), varan::v1::JOB_STATE_SUCCEEDED);
  // Nothing in SQLite: the data directory has no database.
  struct stat st {};
  EXPECT_NE(stat(fleet.dir().File("core/core.db").c_str(), &st), 0);
  EXPECT_NE(stat(fleet.dir().File("core.db").c_str(), &st), 0);

  fleet.StopCore(9);
  fleet.StartCore();
  r = fleet.Ctl({"jobs", "logs", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "kept in postgres\n");
  ASSERT_TRUE(WaitFor([&] {
    RunResult l = fleet.Ctl({"peripheries", "list", "-l", "tier=web"});
    return l.exit_code == 0 && l.out.find("pg-web-1") != std::string::npos &&
           l.out.find("online") != std::string::npos;
  }));
  r = fleet.Ctl({"exec", "-n", "pg-web-1", "--", "echo", "again"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "again\n");

  EXPECT_THAT(fleet.core()->Log(), Not(HasSubstr(kPassword)));
  EXPECT_THAT(fleet.core()->Log(),
              HasSubstr(absl::StrCat("PostgreSQL database postgres on ",
                                     pg_.host(), ":", pg_.port())));
}

// A database that stops answering holds up only the calls that need it.
// With registrations waiting on it (a limited join token's use is counted
// in the store) and operators reading history from it, core still answers
// everything else at once: those calls wait on core's own threads
// (BlockingWork), never on gRPC's few, which every call shares. Two such
// registrations, or two reads of history, used to leave core answering
// nothing at all.
TEST_F(PostgresCoreTest, AStalledDatabaseHoldsUpOnlyTheCallsThatNeedIt) {
  TestFleet fleet({"--database-file", url_file_});
  fleet.StartCore();
  fleet.StartPeriphery("pg-steady");
  RunResult r =
      fleet.Ctl({"exec", "--async", "-n", "pg-steady", "--", "echo", "stored"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id(absl::StripTrailingAsciiWhitespace(r.out));
  ASSERT_EQ(fleet.WaitFinished(id).state(), varan::v1::JOB_STATE_SUCCEEDED);
  // A job that runs through the stall: its output is read from the store.
  r = fleet.Ctl({"exec", "--async", "-n", "pg-steady", "--", "sh", "-c",
                 "echo live; sleep 15"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string running(absl::StripTrailingAsciiWhitespace(r.out));
  RunResult created =
      fleet.Ctl({"join-tokens", "create", "--name", "limited", "--uses", "10"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string token = fleet.dir().File("limited.token");
  ASSERT_TRUE(WriteSecretFile(token, Trimmed(created.out)).ok());

  pg_.Pause();
  // First, two readers of the running job's output, which give up after a
  // second: started before the rest, so that their reads are under way on
  // core's threads when the cancellation arrives (the reader ends cleanly,
  // and core stays responsive).
  const std::string admin = Trimmed(ReadFile(fleet.admin_token_file()));
  std::vector<std::thread> quitters;
  for (int i = 0; i < 2; ++i) {
    quitters.emplace_back([&fleet, &running, &admin] {
      auto stub = varan::v1::Jobs::NewStub(fleet.Channel());
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", BearerHeader(admin));
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(1));
      varan::v1::ReadOutputRequest req;
      req.set_job_id(running);
      req.set_target("pg-steady");
      req.set_follow(true);
      req.set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
      auto reader = stub->ReadOutput(&ctx, req);
      varan::v1::OutputPiece piece;
      while (reader->Read(&piece)) {
      }
      EXPECT_EQ(reader->Finish().error_code(),
                grpc::StatusCode::DEADLINE_EXCEEDED);
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  // Two registrations by Register, two by a tunnel's hello.
  for (int i = 0; i < 4; ++i) {
    std::vector<std::string> args = {"--join-token-file", token};
    if (i % 2 == 1) args.push_back("--tunnel");
    // (EXPECT: threads are running that must be joined.)
    EXPECT_NE(fleet.LaunchPeriphery(absl::StrCat("pg-late-", i), {}, args),
              nullptr);
  }
  // And every read of history: a page of jobs, a finished job, its events
  // and its output.
  const std::vector<std::vector<std::string>> history = {{"jobs", "list"},
                                                         {"jobs", "get", id},
                                                         {"jobs", "watch", id},
                                                         {"jobs", "logs", id}};
  std::vector<RunResult> reads(history.size());
  std::vector<std::thread> readers;
  for (size_t i = 0; i < history.size(); ++i) {
    readers.emplace_back([&fleet, &reads, &history, i] {
      std::vector<std::string> args = {"--timeout", "60"};
      args.insert(args.end(), history[i].begin(), history[i].end());
      reads[i] = fleet.Ctl(args);
    });
  }
  for (std::thread& t : quitters) t.join();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_THAT(fleet.core()->Log(), Not(HasSubstr("pg-late-")))
      << "a registration did not wait for the stalled database";
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    RunResult listed = fleet.Ctl({"--timeout", "3", "peripheries", "list"});
    EXPECT_EQ(listed.exit_code, 0) << listed.err;
    EXPECT_THAT(listed.out, HasSubstr("pg-steady"));
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
    RunResult version = fleet.Ctl({"--timeout", "3", "version"});
    EXPECT_EQ(version.exit_code, 0) << version.err;
    EXPECT_THAT(version.out, HasSubstr("core"));
  }
  pg_.Resume();

  // What waited ends well once the database answers again.
  for (std::thread& t : readers) t.join();
  for (size_t i = 0; i < reads.size(); ++i) {
    EXPECT_EQ(reads[i].exit_code, 0)
        << absl::StrJoin(history[i], " ") << ": " << reads[i].err;
  }
  EXPECT_EQ(reads[3].out, "stored\n");
  EXPECT_TRUE(WaitFor(
      [&] {
        RunResult l = fleet.Ctl({"peripheries", "list"});
        for (int i = 0; i < 4; ++i) {
          if (l.out.find(absl::StrCat("pg-late-", i)) == std::string::npos) {
            return false;
          }
        }
        return true;
      },
      absl::Seconds(40)))
      << fleet.core()->Log();
}

TEST_F(PostgresCoreTest, ASecondCoreOnTheSameDatabaseIsRefused) {
  TestFleet fleet({"--database-file", url_file_});
  fleet.StartCore();
  TempDir other;
  RunResult second = RunProgram(
      {BinPath("varan-core"), "--listen", absl::StrCat("[::1]:", FreePort()),
       "--data-dir", other.File("core"), "--database-file", url_file_},
      {}, absl::Seconds(20));
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_THAT(second.err, HasSubstr("is in use by another varan-core"));
  EXPECT_THAT(second.err, Not(HasSubstr(kPassword)));
}

TEST_F(PostgresCoreTest, AnUnreachableOrWrongDatabaseIsAClearError) {
  TempDir data;
  const uint16_t dead = FreePort();
  RunResult r = RunProgram(
      {BinPath("varan-core"), "--listen", absl::StrCat("[::1]:", FreePort()),
       "--data-dir", data.File("core")},
      {{"VARAN_DATABASE", absl::StrCat("postgres://varan:", kPassword,
                                       "@127.0.0.1:", dead, "/postgres")}},
      absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("--database: cannot connect to "
                                            "PostgreSQL database postgres on "
                                            "127.0.0.1:",
                                            dead)));
  EXPECT_THAT(r.err, Not(HasSubstr(kPassword)));

  r = RunProgram(
      {BinPath("varan-core"), "--listen", absl::StrCat("[::1]:", FreePort()),
       "--data-dir", data.File("core"), "--database",
       absl::StrCat("mysql://root:", kPassword, "@db/x")},
      {}, absl::Seconds(20));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--database: not a PostgreSQL URL"));
  EXPECT_THAT(r.err, Not(HasSubstr(kPassword)));
}

}  // namespace
}  // namespace varan::testing
