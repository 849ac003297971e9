#include "tests/postgres/test_postgres.h"

#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace varan::testing {
namespace {

constexpr char kBin[] = "/usr/lib/postgresql/15/bin/";

}  // namespace

TestPostgres::TestPostgres() {
  std::random_device random;
  host_ = absl::StrCat("127.", 1 + random() % 254, ".", random() % 256, ".",
                       1 + random() % 254);
  if (geteuid() != 0) return;
  const passwd* pw = getpwnam("postgres");
  if (pw == nullptr) return;  // Start() says so
  as_postgres_ = true;
  // The server's user owns its directory (TempDir makes it 0700).
  if (chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    as_postgres_ = false;
  }
}

TestPostgres::~TestPostgres() { Stop(); }

std::vector<std::string> TestPostgres::AsServerUser(
    std::vector<std::string> argv) const {
  if (!as_postgres_) return argv;
  std::vector<std::string> out = {"/usr/bin/setpriv", "--reuid=postgres",
                                  "--regid=postgres", "--init-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

absl::Status TestPostgres::Start() {
  if (geteuid() == 0 && !as_postgres_) {
    return absl::FailedPreconditionError(
        "running as root, but there is no usable `postgres` user to run "
        "PostgreSQL as (Debian's postgresql-15 creates it)");
  }
  if (!initialized_) {
    RunResult init = RunProgram(
        AsServerUser({absl::StrCat(kBin, "initdb"), "-D", dir_.File("data"),
                      "-U", "varan", "--auth=trust", "-E", "UTF8"}),
        {}, absl::Seconds(60));
    if (init.exit_code != 0) {
      return absl::InternalError(absl::StrCat(
          "initdb failed (exit ", init.exit_code, "): ", init.err, init.out));
    }
    initialized_ = true;
  }
  if (port_ == 0) port_ = FreePort();
  server_ = std::make_unique<Daemon>(
      AsServerUser({absl::StrCat(kBin, "postgres"), "-D", dir_.File("data"),
                    "-p", absl::StrCat(port_), "-c",
                    absl::StrCat("listen_addresses=", host_), "-c",
                    absl::StrCat("unix_socket_directories=", dir_.path())}),
      dir_.File(absl::StrCat("server-", port_, ".log")));
  server_->Start();
  const std::vector<std::string> ready = {absl::StrCat(kBin, "pg_isready"),
                                          "-q",
                                          "-h",
                                          host_,
                                          "-p",
                                          absl::StrCat(port_)};
  if (!WaitFor(
          [&] {
            return server_->Running() &&
                   RunProgram(ready, {}, absl::Seconds(5)).exit_code == 0;
          },
          absl::Seconds(30))) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL did not accept connections on ", host_, ":",
                     port_, "; its log:\n", log()));
  }
  return absl::OkStatus();
}

void TestPostgres::Stop(int sig) {
  if (server_ == nullptr) return;
  if (paused_) Resume();  // a frozen server would not stop
  server_->Stop(sig, absl::Seconds(30));
  server_.reset();
}

void TestPostgres::SignalAll(int sig) {
  ASSERT_NE(server_, nullptr);
  const pid_t postmaster = server_->pid();
  std::vector<pid_t> pids = {postmaster};
  // The children, from /proc/PID/stat ("pid (comm) state ppid ...").
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    pid_t pid = 0;
    if (!absl::SimpleAtoi(name, &pid)) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(paren + 2), ' ');
    pid_t ppid = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) &&
        ppid == postmaster) {
      pids.push_back(pid);
    }
  }
  for (pid_t pid : pids) kill(pid, sig);
}

void TestPostgres::Pause() {
  paused_ = true;
  SignalAll(SIGSTOP);
}

void TestPostgres::Resume() {
  paused_ = false;
  SignalAll(SIGCONT);
}

std::string TestPostgres::url() const {
  return absl::StrCat("postgresql://varan@", host_, ":", port_, "/postgres");
}

std::string TestPostgres::log() const {
  return server_ == nullptr ? std::string() : server_->Log();
}

TestPostgres& SharedTestPostgres() {
  static TestPostgres* server = [] {
    auto* s = new TestPostgres();
    const absl::Status started = s->Start();
    if (!started.ok()) {
      ADD_FAILURE() << started;
      std::abort();
    }
    // Stopped when the test process exits (after every test and its
    // stores), so no server outlives the tests that started it, and its
    // directory (about 130 MB of data files) removed with it: every
    // postgres_test process left one in $TMPDIR before.
    std::atexit([] {
      server->Stop();
      delete server;
    });
    return s;
  }();
  return *server;
}

std::string NewTestDatabase(const std::string& prefix) {
  static int n = 0;
  const std::string name = absl::StrCat(prefix, "_", ++n);
  TestPostgres& server = SharedTestPostgres();
  PGconn* admin = PQconnectdb(server.url().c_str());
  EXPECT_EQ(PQstatus(admin), CONNECTION_OK) << PQerrorMessage(admin);
  PGresult* r = PQexec(admin, absl::StrCat("CREATE DATABASE ", name).c_str());
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(admin);
  return absl::StrCat("postgresql://varan@", server.host(), ":", server.port(),
                      "/", name);
}

}  // namespace varan::testing
