// TestPostgres: a real PostgreSQL 15 server from Debian's postgresql-15,
// started for a test in a directory of its own, on a loopback address of
// its own (127.x.y.z, chosen at random) and a free port, and removed again
// (#19: the store contract and the scale-out tests run against it; no mock).
//
// initdb and the server run as the unprivileged `postgres` user Debian's
// package creates when this process is root (PostgreSQL refuses to run as
// root; CI runs as root), as this process's user otherwise. setpriv(1)
// switches user and then execs, so the server's pid is the one signalled.
// Authentication is `trust` on loopback for the role `varan`: nothing but
// this machine's own tests can reach the port.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tests/integration/daemons.h"

namespace varan::testing {

class TestPostgres {
 public:
  TestPostgres();
  ~TestPostgres();  // stops the server, removes its directory

  // initdb (once) and start; returns once it accepts connections, or an
  // error naming what failed, with its log.
  absl::Status Start();
  // Stops the server (SIGINT: PostgreSQL's fast shutdown; SIGKILL to
  // crash it) and waits for it.
  void Stop(int sig = 2);
  // Freezes the server and every process of it (SIGSTOP to the postmaster
  // and its children: the backends serving open connections), as a
  // database that stopped answering without closing anything; Resume
  // thaws them (SIGCONT).
  void Pause();
  void Resume();

  uint16_t port() const { return port_; }
  // The server's own loopback address, 127.x.y.z: a server another test
  // process starts while this one is stopped never takes its address and
  // port, so a client reconnecting here reaches this server or none.
  const std::string& host() const { return host_; }
  // "postgresql://varan@HOST:PORT/postgres".
  std::string url() const;
  std::string log() const;

 private:
  // Sends `sig` to the server and its children.
  void SignalAll(int sig);
  // `argv` as the server's user.
  std::vector<std::string> AsServerUser(std::vector<std::string> argv) const;

  // In /tmp whatever $TMPDIR says: the `postgres` user must reach it.
  TempDir dir_{"/tmp"};
  bool as_postgres_ = false;
  bool initialized_ = false;
  bool paused_ = false;
  std::string host_;
  uint16_t port_ = 0;
  std::unique_ptr<Daemon> server_;
};

// One server for the whole test process (ctest runs each test in a process
// of its own), started on first use; a failure to start aborts the test.
TestPostgres& SharedTestPostgres();

// A new, empty database on the shared server, named `prefix` and a
// number; its URL.
std::string NewTestDatabase(const std::string& prefix);

}  // namespace varan::testing
