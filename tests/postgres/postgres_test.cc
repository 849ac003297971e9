// The PostgreSQL test harness (tests/postgres/test_postgres.h): a real
// PostgreSQL 15 that answers on loopback, runs as an unprivileged user
// when the tests run as root, and keeps its data across a restart, the
// base of the PostgreSQL store's tests (#19).
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/postgres/test_postgres.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;

// The first column of the first row of `sql`, or the error.
std::string One(PGconn* conn, const std::string& sql) {
  PGresult* r = PQexec(conn, sql.c_str());
  std::string out;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
    out = PQgetvalue(r, 0, 0);
  } else if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    out = std::string("error: ") + PQresultErrorMessage(r);
  }
  PQclear(r);
  return out;
}

TEST(PostgresHarnessTest, ARealServerOnLoopbackKeepsItsDataAcrossARestart) {
  TestPostgres pg;
  absl::Status started = pg.Start();
  ASSERT_TRUE(started.ok()) << started;
  PGconn* conn = PQconnectdb(pg.url().c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  EXPECT_THAT(One(conn, "SELECT version()"), HasSubstr("PostgreSQL 15."));
  EXPECT_EQ(One(conn, "SHOW listen_addresses"), pg.host());
  // Not root: PostgreSQL refuses that, and the harness must not need it.
  const std::string data_dir = One(conn, "SHOW data_directory");
  struct stat st {};
  ASSERT_EQ(stat(data_dir.c_str(), &st), 0) << data_dir;
  EXPECT_NE(st.st_uid, 0u);
  EXPECT_EQ(One(conn, "CREATE TABLE kept (x int)"), "");
  EXPECT_EQ(One(conn, "INSERT INTO kept VALUES (42)"), "");
  PQfinish(conn);

  pg.Stop();
  PGconn* down = PQconnectdb(pg.url().c_str());
  EXPECT_EQ(PQstatus(down), CONNECTION_BAD);
  PQfinish(down);

  started = pg.Start();
  ASSERT_TRUE(started.ok()) << started;
  conn = PQconnectdb(pg.url().c_str());
  ASSERT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  EXPECT_EQ(One(conn, "SELECT x FROM kept"), "42");
  PQfinish(conn);
}

}  // namespace
}  // namespace varan::testing
