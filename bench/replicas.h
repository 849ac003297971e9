// What the benchmarks of several core replicas share (#19): a PostgreSQL
// server to put their databases on, and a set of real varan-core processes
// on one database.
//
// BenchPostgres uses the server at a URL it is given (bench/run.sh starts
// one, see bench/postgres.sh) or else starts a TestPostgres of its own
// (tests/postgres/test_postgres.h); each measurement gets a new, empty
// database on it.
//
// Replicas starts N varan-core processes on loopback, each with its own
// data directory and port ([::1]:P), all accepting the same join and admin
// tokens (files written here). With a database and `cluster`, each runs as a
// replica (--replica-address, its own listen address); with a database and
// not `cluster`, the one core holds the database alone; without a database,
// the one core is on SQLite in its data directory (core's default).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/core_client.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
class TestPostgres;
}

namespace varan::bench {

class BenchPostgres {
 public:
  BenchPostgres();
  ~BenchPostgres();

  // Uses the server at `url` (a database the role may CREATE DATABASE in),
  // or starts one when `url` is empty.
  absl::Status Open(const std::string& url);
  // A new, empty database named `prefix`_<pid>_<n>; its URL.
  absl::StatusOr<std::string> NewDatabase(const std::string& prefix);
  // "PostgreSQL 15 started by bench/run.sh" or "... started by this
  // benchmark", for the report.
  std::string Describe() const;

 private:
  std::unique_ptr<testing::TestPostgres> own_;
  std::string url_;
  int databases_ = 0;
};

struct ReplicaOptions {
  int replicas = 1;
  // A postgres:// URL; empty: SQLite (then replicas must be 1).
  std::string database;
  // With a database: run as replicas (--replica-address), even just one.
  bool cluster = true;
  // More varan-core flags, for every replica.
  std::vector<std::string> extra_args;
};

class Replicas {
 public:
  explicit Replicas(ReplicaOptions options);
  // Stops them (SIGTERM); with VARAN_BENCH_KEEP_LOGS=DIR in the
  // environment, copies their logs to DIR first.
  ~Replicas();

  // Starts the replicas one after the other, each waited for until it
  // answers an admin call; an error with the log of the one that failed.
  absl::Status Start();
  // SIGTERM to each, and waits (the order: last first).
  void Stop();

  int size() const { return static_cast<int>(daemons_.size()); }
  std::string address(int i) const;  // "[::1]:port"
  pid_t pid(int i) const { return daemons_[static_cast<size_t>(i)]->pid(); }
  std::string pid_string(int i) const { return std::to_string(pid(i)); }
  bool Running(int i) { return daemons_[static_cast<size_t>(i)]->Running(); }
  std::string Log(int i) const;
  // "replica N exited with status S (signal K)" for each replica that is
  // no longer running, "; "-separated; empty when all run.
  std::string Exited();
  // The log's warn and error lines (at most `max`), for the report;
  // `*total` (if not null) gets how many there are in all.
  std::vector<std::string> Warnings(int i, size_t max = 20,
                                    size_t* total = nullptr) const;
  const std::string& admin_token() const { return admin_token_; }
  const std::string& join_token() const { return join_token_; }
  // The files holding them, as the daemons read them.
  std::string admin_token_file() const { return dir_.File("admin.token"); }
  std::string join_token_file() const { return dir_.File("join.token"); }
  // A client of replica `i` with the admin token.
  absl::StatusOr<std::unique_ptr<client::CoreClient>> Client(
      int i, absl::Duration timeout = absl::Seconds(30)) const;

 private:
  ReplicaOptions options_;
  testing::TempDir dir_;
  std::vector<uint16_t> ports_;
  std::vector<std::unique_ptr<testing::Daemon>> daemons_;
  std::string admin_token_;
  std::string join_token_;
};

}  // namespace varan::bench
