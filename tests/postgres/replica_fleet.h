// ReplicaFleet: several real varan-core replicas on one PostgreSQL database,
// on loopback, and real peripheries listing them all in --core — the base
// of the scale-out integration tests (#19, tests/postgres/replicas_test.cc).
//
// Replica i listens on [::1]:PORT_i (a free port) and announces that very
// address with --replica-address, and serves health alone on another port
// (--health-listen, health_address); each has its own data directory, and all
// share one --admin-token-file and one --join-token-file, so one token
// works with every replica (through varanctl or the C++ client). A
// periphery is given the replicas in an order of the test's choosing: it
// joins the first that answers and moves to the next when that one dies.
//
// Every daemon started here is killed (SIGKILL) when the fleet is
// destroyed; VARAN_TEST_SHOW_LOGS=1 prints their logs first. Not
// thread-safe, except Authorize(), JobsStub(), Watch() and Holder(), which
// read only what never changes after construction.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/core_client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/test_postgres.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {

// The rows of `sql` on the database at `url`, every value as text (NULL as
// ""); none for a statement returning no rows; a test failure and no rows
// when it fails.
std::vector<std::vector<std::string>> QueryDatabase(const std::string& url,
                                                    const std::string& sql);

// The database name of a postgresql:// URL ("replicas_3").
std::string DatabaseName(const std::string& url);

// grpc.health.v1 Check of core's readiness service ("ready") at `address`
// (`credentials`: null for plaintext): true when SERVING.
bool ReadyServing(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// --- Jobs and their events, through one replica ---------------------------

// Dispatches `shell` to `target`; the job id ("" and a test failure when
// refused).
std::string MustDispatch(client::CoreClient* client,
                         const varan::v1::Target& target,
                         const std::string& shell);
varan::v1::Target Names(const std::vector<std::string>& names);
varan::v1::Target Selector(const std::string& selector);

// Waits until every job in `ids` is final as `client` reads it; returns
// them (fewer, and a test failure, when some are not by `timeout`).
std::vector<varan::v1::Job> WaitAllFinal(client::CoreClient* client,
                                         const std::vector<std::string>& ids,
                                         absl::Duration timeout);

// One WatchJob stream as it arrived.
struct Watched {
  std::vector<varan::v1::JobEvent> events;
  std::vector<absl::Time> arrived;
  grpc::Status status;
};

// A job watched through one replica to its end, again from the sequence
// after the last event whenever a stream broke (UNAVAILABLE), as a client
// resumes.
struct Followed {
  std::vector<varan::v1::JobEvent> events;
  // Why each stream but the last ended.
  std::vector<std::string> breaks;
  // How the last ended.
  grpc::Status status;
};

// Cancels the calls added to it, from any thread: a test ends its streams
// early (a call added after CancelAll is canceled at once).
class CallCanceler {
 public:
  void Add(grpc::ClientContext* context);
  void Remove(grpc::ClientContext* context);
  void CancelAll();

 private:
  absl::Mutex mu_;
  std::set<grpc::ClientContext*> calls_ ABSL_GUARDED_BY(mu_);
  bool canceled_ ABSL_GUARDED_BY(mu_) = false;
};

// Empty when `events` are a whole stream from sequence `from`: numbered
// from, from + 1, ... with no output_gap (with `declared_gaps`, an
// output_gap may stand for the sequences from the one expected to its
// own), ending with job_finished (and, from 0, starting with accepted);
// otherwise what is wrong.
std::string StreamProblem(const std::vector<varan::v1::JobEvent>& events,
                          uint64_t from = 0, bool declared_gaps = false);

// The stdout `target` wrote, as `events` carry it.
std::string StdoutOf(const std::vector<varan::v1::JobEvent>& events,
                     const std::string& target);

// Each line of the file at `path` and how often it appears.
std::map<std::string, int> CountLines(const std::string& path);

// How many of `jobs` succeeded, each target EXITED with code 0 and stdout
// `out`; the first that did not is described in `*other`.
size_t Succeeded(const std::vector<varan::v1::Job>& jobs,
                 const std::string& out, std::string* other);

// Threads watching jobs, with one CallCanceler for their calls. Start runs
// `watch` on a thread of its own; Wait waits for them to end by
// themselves; Stop, or the destructor however the test ends, cancels the
// calls still open and joins them.
class WatchThreads {
 public:
  ~WatchThreads() { Stop(); }
  void Start(std::function<void(CallCanceler*)> watch);
  // Whether every thread ended within `timeout`.
  bool Wait(absl::Duration timeout);
  void Stop();

 private:
  CallCanceler canceler_;
  std::atomic<int> running_{0};
  std::vector<std::thread> threads_;
};

// Stops the shared PostgreSQL (SharedTestPostgres) and starts it again;
// the destructor starts it if it is still stopped, so the tests after
// this one find it running.
class RestartGuard {
 public:
  ~RestartGuard();
  void Stop();
  absl::Status Start();

 private:
  bool stopped_ = false;
};

// (Every member has an initializer, so that designated initializers may
// leave any out.)
struct PeripheryOptions {
  // Replica indexes in the order the periphery's --core lists them.
  std::vector<int> cores{};
  // A tunnel (--tunnel --no-listen) instead of dial mode ([::1]:0).
  bool tunnel = false;
  std::vector<std::string> labels{};
  // Added to the periphery's environment (its commands inherit it).
  std::map<std::string, std::string> env{};
};

class ReplicaFleet {
 public:
  // `replicas` replicas of a core on `database_url`, each started with
  // `extra_core_args` too. Starts nothing yet.
  ReplicaFleet(std::string database_url, int replicas,
               std::vector<std::string> extra_core_args = {});
  ~ReplicaFleet();

  // Before the first Launch: the replicas run on the built-in cluster CA
  // (no TLS flag), instead of --insecure-plaintext; every client and
  // periphery of the fleet then verifies them by the CA's pin (ca_pin()).
  void UseBuiltinCa() { builtin_ca_ = true; }
  // With UseBuiltinCa, once a replica started: the pin of the CA in the
  // first data directory holding one ("" before).
  std::string ca_pin() const;
  // The credentials of the fleet's clients: pinned TLS, or insecure.
  std::shared_ptr<grpc::ChannelCredentials> Credentials() const;

  // Before replica `i` is launched: it connects to `url` instead of
  // database() (the same database as another role, say).
  void UseDatabaseUrl(int i, std::string url) {
    database_urls_[i] = std::move(url);
  }
  // Starts replica `i` and returns at once.
  void Launch(int i);
  // Waits until replica `i` serves: ready (its database reachable) and
  // answering the admin token.
  ::testing::AssertionResult WaitServing(
      int i, absl::Duration timeout = absl::Seconds(30));
  // Launches every replica, then waits for each.
  void StartAll();
  // Sends `sig` to replica `i` (dropping this fixture's clients of it) and
  // returns its exit code.
  int Stop(int i, int sig);
  // Success while replica `i` runs; else its exit code and the end of its
  // log.
  ::testing::AssertionResult Running(int i);
  // Running(i) for every replica started and not stopped by Stop().
  ::testing::AssertionResult AllRunning();

  // Starts periphery `name` and waits until the first replica of its
  // --core list has it ONLINE.
  Daemon* StartPeriphery(const std::string& name,
                         const PeripheryOptions& options);

  // Whether every replica in `replicas` lists every periphery in `names`
  // ONLINE, waiting up to `timeout`.
  bool WaitOnline(const std::vector<std::string>& names,
                  const std::vector<int>& replicas,
                  absl::Duration timeout = absl::Seconds(15));

  // The replica holding periphery `name`'s connection, as the database
  // records it (cluster_connections); -1 when none.
  int Holder(const std::string& name) const;

  int size() const { return static_cast<int>(ports_.size()); }
  std::string address(int i) const;  // "[::1]:PORT"
  // Where replica `i` serves health alone, in plaintext (--health-listen).
  std::string health_address(int i) const;
  // `replicas` as one --core value ("[::1]:1,[::1]:2").
  std::string CoreList(const std::vector<int>& replicas) const;
  Daemon* replica(int i) { return replicas_[i].get(); }
  Daemon* periphery(const std::string& name) {
    return peripheries_[name].get();
  }
  const std::string& database() const { return database_; }
  const TempDir& dir() const { return dir_; }

  // A client of replica `i` alone, with the admin token (kept until Stop).
  client::CoreClient* client(int i);
  // A Jobs stub of replica `i` on a channel of its own, and the admin
  // token for a call's context: for streams with a deadline.
  std::unique_ptr<varan::v1::Jobs::Stub> JobsStub(int i) const;
  void Authorize(grpc::ClientContext* context) const;
  // Follows job `id` through replica `i` from sequence 0 until it ends, a
  // stream fails with anything but UNAVAILABLE, or `deadline`. Thread-safe.
  Followed Follow(int i, const std::string& id, absl::Time deadline,
                  CallCanceler* canceler) const;
  // varanctl --core <replica i> with the admin token, then `args`.
  RunResult Ctl(int i, const std::vector<std::string>& args) const;
  // WatchJob of `id` from sequence `from` through `stub`, read to its end,
  // `deadline` or its cancel by `canceler` (if given); `first_event` (if
  // given) is incremented when the first event arrives; with `stop_after`,
  // the call is canceled after that many events (a client going away).
  // Thread-safe.
  Watched Watch(varan::v1::Jobs::Stub* stub, const std::string& id,
                uint64_t from, absl::Time deadline,
                std::atomic<int>* first_event = nullptr,
                CallCanceler* canceler = nullptr, size_t stop_after = 0) const;

 private:
  std::string database_;
  std::vector<std::string> extra_core_args_;
  std::map<int, std::string> database_urls_;
  TempDir dir_;
  std::string admin_token_;
  bool builtin_ca_ = false;
  std::vector<uint16_t> ports_;
  std::vector<uint16_t> health_ports_;
  std::vector<std::unique_ptr<Daemon>> replicas_;
  std::vector<bool> stopped_;
  std::vector<std::unique_ptr<client::CoreClient>> clients_;
  std::map<std::string, std::unique_ptr<Daemon>> peripheries_;
};

// The fixture of the replica tests (replicas_test.cc,
// replicas_failover_test.cc): three replicas on a new database, and files
// the peripheries' commands count their executions in.
class ReplicasTest : public ::testing::Test {
 protected:
  // No replica a test did not stop has exited (crashed) on the way.
  void TearDown() override {
    if (fleet_ != nullptr) {
      EXPECT_TRUE(fleet_->AllRunning());
    }
  }

  // Three replicas on a new database.
  void StartFleet(std::vector<std::string> extra_core_args = {}) {
    fleet_ = std::make_unique<ReplicaFleet>(NewTestDatabase("replicas"), 3,
                                            std::move(extra_core_args));
    fleet_->StartAll();
  }

  // Environment making the periphery's commands count into count-<name>.
  std::map<std::string, std::string> CountEnv(const std::string& name) {
    return {{"REPLICA_TEST_COUNT", CountFile(name)}};
  }
  std::string CountFile(const std::string& name) const {
    return fleet_->dir().File("count-" + name);
  }

  std::unique_ptr<ReplicaFleet> fleet_;
};

}  // namespace varan::testing
