// varan-core on PostgreSQL (--database / --database-file), through the real
// binaries and a real PostgreSQL 15: a periphery joins, commands run, and
// after kill -9 of core the fleet, the jobs and their output are still
// there; a second core on the same database is refused; the URL (with its
// password) appears in no log and no error.
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/test_postgres.h"

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
