#include "tests/postgres/replica_fleet.h"

#include <libpq-fe.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "common/tls.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/postgres/test_postgres.h"

namespace varan::testing {

std::vector<std::vector<std::string>> QueryDatabase(const std::string& url,
                                                    const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot connect to the test database: "
                  << PQerrorMessage(conn);
    PQfinish(conn);
    return rows;
  }
  PGresult* r = PQexec(conn, sql.c_str());
  if (PQresultStatus(r) == PGRES_TUPLES_OK) {
    for (int row = 0; row < PQntuples(r); ++row) {
      std::vector<std::string>& out = rows.emplace_back();
      for (int col = 0; col < PQnfields(r); ++col) {
        out.emplace_back(PQgetvalue(r, row, col));
      }
    }
  } else if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
  }
  PQclear(r);
  PQfinish(conn);
  return rows;
}

std::string DatabaseName(const std::string& url) {
  const size_t slash = url.rfind('/');
  std::string name = slash == std::string::npos ? "" : url.substr(slash + 1);
  const size_t query = name.find('?');
  if (query != std::string::npos) name.resize(query);
  return name;
}

bool ReadyServing(const std::string& address,
                  std::shared_ptr<grpc::ChannelCredentials> credentials) {
  if (credentials == nullptr) {
    credentials = grpc::InsecureChannelCredentials();
  }
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, credentials));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("ready");
  grpc::health::v1::HealthCheckResponse resp;
  return stub->Check(&ctx, req, &resp).ok() &&
         resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

std::string MustDispatch(client::CoreClient* client,
                         const varan::v1::Target& target,
                         const std::string& shell) {
  varan::v1::DispatchRequest req;
  *req.mutable_target() = target;
  req.mutable_spec()->set_shell(shell);
  auto resp = client->Dispatch(req);
  EXPECT_TRUE(resp.ok()) << resp.status();
  return resp.ok() ? resp->job_id() : "";
}

varan::v1::Target Names(const std::vector<std::string>& names) {
  varan::v1::Target target;
  for (const std::string& name : names) target.add_names(name);
  return target;
}

varan::v1::Target Selector(const std::string& selector) {
  varan::v1::Target target;
  target.set_selector(selector);
  return target;
}

std::vector<varan::v1::Job> WaitAllFinal(client::CoreClient* client,
                                         const std::vector<std::string>& ids,
                                         absl::Duration timeout) {
  std::vector<varan::v1::Job> jobs;
  std::string waiting;
  const bool all = WaitFor(
      [&] {
        jobs.clear();
        for (const std::string& id : ids) {
          auto j = client->GetJob(id, kPreview);
          if (!j.ok() || j->state() == varan::v1::JOB_STATE_RUNNING) {
            waiting = j.ok() ? j->DebugString() : j.status().ToString();
            return false;
          }
          jobs.push_back(*std::move(j));
        }
        return true;
      },
      timeout);
  EXPECT_TRUE(all) << jobs.size() << " of " << ids.size()
                   << " jobs final; waiting for " << waiting;
  return jobs;
}

void CallCanceler::Add(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (canceled_) context->TryCancel();
  calls_.insert(context);
}

void CallCanceler::Remove(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  calls_.erase(context);
}

void CallCanceler::CancelAll() {
  absl::MutexLock lock(&mu_);
  canceled_ = true;
  for (grpc::ClientContext* context : calls_) context->TryCancel();
}

std::string StreamProblem(const std::vector<varan::v1::JobEvent>& events,
                          uint64_t from, bool declared_gaps) {
  if (events.empty()) return "no events";
  uint64_t expected = from;
  for (size_t k = 0; k < events.size(); ++k) {
    const varan::v1::JobEvent& e = events[k];
    if (e.has_output_gap()) {
      if (!declared_gaps) {
        return absl::StrCat("output_gap at sequence ", e.sequence());
      }
      // It stands for first_sequence .. sequence: it must cover the one
      // expected.
      if (e.output_gap().first_sequence() > expected ||
          e.sequence() < expected) {
        return absl::StrCat("event ", k, " is an output_gap of sequences ",
                            e.output_gap().first_sequence(), "..", e.sequence(),
                            ", expected one covering ", expected);
      }
    } else if (e.sequence() != expected) {
      return absl::StrCat("event ", k, " has sequence ", e.sequence(),
                          ", expected ", expected);
    }
    expected = e.sequence() + 1;
  }
  if (from == 0 && !events.front().has_accepted()) return "first not accepted";
  if (!events.back().has_job_finished()) {
    return absl::StrCat("ends at sequence ", events.back().sequence(),
                        " without job_finished");
  }
  return "";
}

std::string StdoutOf(const std::vector<varan::v1::JobEvent>& events,
                     const std::string& target) {
  std::string out;
  for (const varan::v1::JobEvent& e : events) {
    if (e.target() == target && e.has_output() &&
        e.output().stream() == varan::v1::OUTPUT_STREAM_STDOUT) {
      out += e.output().data();
    }
  }
  return out;
}

std::map<std::string, int> CountLines(const std::string& path) {
  std::map<std::string, int> counts;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
    ++counts[std::string(line)];
  }
  return counts;
}

size_t Succeeded(const std::vector<varan::v1::Job>& jobs,
                 const std::string& out, std::string* other) {
  size_t n = 0;
  for (const varan::v1::Job& job : jobs) {
    bool ok = job.state() == varan::v1::JOB_STATE_SUCCEEDED;
    for (const varan::v1::JobTarget& t : job.targets()) {
      ok &= t.state() == varan::v1::TARGET_STATE_EXITED &&
            t.exit_status().code() == 0 && t.stdout_info().head() == out;
    }
    n += ok;
    if (!ok && other->empty()) *other = job.DebugString();
  }
  return n;
}

void WatchThreads::Start(std::function<void(CallCanceler*)> watch) {
  ++running_;
  threads_.emplace_back([this, watch = std::move(watch)] {
    watch(&canceler_);
    --running_;
  });
}

bool WatchThreads::Wait(absl::Duration timeout) {
  return WaitFor([&] { return running_.load() == 0; }, timeout);
}

void WatchThreads::Stop() {
  canceler_.CancelAll();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

RestartGuard::~RestartGuard() {
  if (stopped_) {
    EXPECT_TRUE(SharedTestPostgres().Start().ok());
  }
}

void RestartGuard::Stop() {
  SharedTestPostgres().Stop();
  stopped_ = true;
}

absl::Status RestartGuard::Start() {
  stopped_ = false;
  return SharedTestPostgres().Start();
}

ReplicaFleet::ReplicaFleet(std::string database_url, int replicas,
                           std::vector<std::string> extra_core_args)
    : database_(std::move(database_url)),
      extra_core_args_(std::move(extra_core_args)),
      admin_token_(GenerateSecret()) {
  EXPECT_TRUE(WriteSecretFile(dir_.File("admin.token"), admin_token_).ok());
  EXPECT_TRUE(WriteSecretFile(dir_.File("join.token"), GenerateSecret()).ok());
  // FreePort closes the socket it found the port with, so the kernel may
  // hand out the same port again: each replica gets ports of its own.
  std::set<uint16_t> taken;
  const auto distinct = [&taken] {
    uint16_t port = FreePort();
    while (!taken.insert(port).second) port = FreePort();
    return port;
  };
  for (int i = 0; i < replicas; ++i) {
    ports_.push_back(distinct());
    health_ports_.push_back(distinct());
  }
  replicas_.resize(replicas);
  stopped_.resize(replicas);
  clients_.resize(replicas);
}

ReplicaFleet::~ReplicaFleet() {
  // Idle clients would stretch the replicas' shutdown (see ~TestFleet).
  for (auto& c : clients_) c.reset();
  const bool show = getenv("VARAN_TEST_SHOW_LOGS") != nullptr;
  for (auto& [name, p] : peripheries_) {
    p->Stop(SIGKILL);
    if (show) fprintf(stderr, "--- %s\n%s", name.c_str(), p->Log().c_str());
  }
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (replicas_[i] == nullptr) continue;
    replicas_[i]->Stop(SIGKILL);
    if (show)
      fprintf(stderr, "--- core %zu\n%s", i, replicas_[i]->Log().c_str());
  }
}

std::string ReplicaFleet::address(int i) const {
  return absl::StrCat("[::1]:", ports_[i]);
}

std::string ReplicaFleet::health_address(int i) const {
  return absl::StrCat("[::1]:", health_ports_[i]);
}

std::string ReplicaFleet::CoreList(const std::vector<int>& replicas) const {
  std::vector<std::string> addresses;
  for (int i : replicas) addresses.push_back(address(i));
  return absl::StrJoin(addresses, ",");
}

std::string ReplicaFleet::ca_pin() const {
  if (!builtin_ca_) return "";
  for (int i = 0; i < size(); ++i) {
    std::ifstream in(dir_.File(absl::StrCat("core-", i, "/pki/ca.crt")));
    std::stringstream pem;
    pem << in.rdbuf();
    auto pin = pki::AuthorityPin(pem.str());
    if (pin.ok()) return *pin;
  }
  return "";
}

std::shared_ptr<grpc::ChannelCredentials> ReplicaFleet::Credentials() const {
  return builtin_ca_ ? MakePinnedSecurity(ca_pin()).credentials
                     : grpc::InsecureChannelCredentials();
}

namespace {

// The flags making a client or periphery trust the fleet's replicas.
std::vector<std::string> TrustFlags(const std::string& pin_flag,
                                    const std::string& pin) {
  if (pin.empty()) return {"--insecure-plaintext"};
  return {pin_flag, pin};
}

}  // namespace

void ReplicaFleet::Launch(int i) {
  std::vector<std::string> argv = {
      BinPath("varan-core"),
      "--listen",
      address(i),
      "--replica-address",
      address(i),
      "--data-dir",
      dir_.File(absl::StrCat("core-", i)),
      "--database",
      database_urls_.contains(i) ? database_urls_.at(i) : database_,
      "--admin-token-file",
      dir_.File("admin.token"),
      "--join-token-file",
      dir_.File("join.token"),
      "--heartbeat-interval",
      "1",
      "--log-level",
      "debug",
      "--health-listen",
      health_address(i)};
  if (!builtin_ca_) argv.push_back("--insecure-plaintext");
  argv.insert(argv.end(), extra_core_args_.begin(), extra_core_args_.end());
  clients_[i].reset();
  stopped_[i] = false;
  // As TestFleet: idle channels to peripheries poll often, so that a
  // periphery stopping does not wait for core's backup poller.
  replicas_[i] = std::make_unique<Daemon>(
      argv, dir_.File(absl::StrCat("core-", i, ".log")),
      std::map<std::string, std::string>{
          {"GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "100"}});
  replicas_[i]->Start();
}

::testing::AssertionResult ReplicaFleet::WaitServing(int i,
                                                     absl::Duration timeout) {
  Daemon* core = replicas_[i].get();
  const bool serving = WaitFor(
      [&] {
        if (!core->Running()) return true;  // reported below
        return ReadyServing(address(i), Credentials()) &&
               client(i) != nullptr && client(i)->GetInfo().ok();
      },
      timeout);
  if (serving && core->Running()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "replica " << i << " at " << address(i) << " does not serve ("
         << (core->Running() ? "running" : "exited") << "):\n"
         << core->Log();
}

void ReplicaFleet::StartAll() {
  for (int i = 0; i < size(); ++i) Launch(i);
  for (int i = 0; i < size(); ++i) ASSERT_TRUE(WaitServing(i));
}

int ReplicaFleet::Stop(int i, int sig) {
  stopped_[i] = true;
  clients_[i].reset();
  return replicas_[i]->Stop(sig, absl::Seconds(15));
}

::testing::AssertionResult ReplicaFleet::Running(int i) {
  if (replicas_[i]->Running()) return ::testing::AssertionSuccess();
  const int code = replicas_[i]->Wait(absl::ZeroDuration());
  const std::string log = replicas_[i]->Log();
  return ::testing::AssertionFailure()
         << "replica " << i << " exited with " << code
         << (code > 128 ? absl::StrCat(" (signal ", code - 128, ")") : "")
         << "; the end of its log:\n"
         << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
}

::testing::AssertionResult ReplicaFleet::AllRunning() {
  for (int i = 0; i < size(); ++i) {
    if (replicas_[i] == nullptr || stopped_[i]) continue;
    if (auto running = Running(i); !running) return running;
  }
  return ::testing::AssertionSuccess();
}

client::CoreClient* ReplicaFleet::client(int i) {
  if (clients_[i] == nullptr) {
    client::ClientOptions options;
    options.address = address(i);
    options.token = admin_token_;
    options.tls.ca_pin = ca_pin();
    auto c = client::CoreClient::Create(options);
    if (!c.ok()) return nullptr;
    clients_[i] = *std::move(c);
  }
  return clients_[i].get();
}

std::unique_ptr<varan::v1::Jobs::Stub> ReplicaFleet::JobsStub(int i) const {
  return varan::v1::Jobs::NewStub(
      grpc::CreateChannel(address(i), Credentials()));
}

void ReplicaFleet::Authorize(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", BearerHeader(admin_token_));
}

Watched ReplicaFleet::Watch(varan::v1::Jobs::Stub* stub, const std::string& id,
                            uint64_t from, absl::Time deadline,
                            std::atomic<int>* first_event,
                            CallCanceler* canceler, size_t stop_after) const {
  Watched w;
  grpc::ClientContext ctx;
  Authorize(&ctx);
  ctx.set_deadline(absl::ToChronoTime(deadline));
  if (canceler != nullptr) canceler->Add(&ctx);
  varan::v1::WatchJobRequest req;
  req.set_job_id(id);
  req.set_from_sequence(from);
  auto reader = stub->WatchJob(&ctx, req);
  varan::v1::JobEvent event;
  while (reader->Read(&event)) {
    if (w.events.empty() && first_event != nullptr) ++*first_event;
    w.events.push_back(event);
    w.arrived.push_back(absl::Now());
    if (w.events.size() == stop_after) ctx.TryCancel();
  }
  w.status = reader->Finish();
  if (canceler != nullptr) canceler->Remove(&ctx);
  return w;
}

Followed ReplicaFleet::Follow(int i, const std::string& id, absl::Time deadline,
                              CallCanceler* canceler) const {
  Followed f;
  auto stub = JobsStub(i);
  uint64_t from = 0;
  for (;;) {
    Watched w = Watch(stub.get(), id, from, deadline, nullptr, canceler);
    f.events.insert(f.events.end(), w.events.begin(), w.events.end());
    f.status = w.status;
    if (w.status.ok() || w.status.error_code() != grpc::UNAVAILABLE ||
        absl::Now() >= deadline) {
      return f;
    }
    f.breaks.push_back(w.status.error_message());
    if (!f.events.empty()) from = f.events.back().sequence() + 1;
    // A client's pause before it watches again.
    absl::SleepFor(absl::Milliseconds(200));
  }
}

RunResult ReplicaFleet::Ctl(int i, const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {BinPath("varanctl"), "--core", address(i),
                                   "--token-file", dir_.File("admin.token")};
  for (std::string& flag : TrustFlags("--ca-hash", ca_pin())) {
    argv.push_back(std::move(flag));
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(
      argv,
      {{"VARAN_CORE", ""}, {"VARAN_TOKEN", ""}, {"VARAN_TOKEN_FILE", ""}});
}

Daemon* ReplicaFleet::StartPeriphery(const std::string& name,
                                     const PeripheryOptions& options) {
  std::vector<std::string> argv = {BinPath("varan-periphery"),
                                   "--core",
                                   CoreList(options.cores),
                                   "--join-token-file",
                                   dir_.File("join.token"),
                                   "--name",
                                   name,
                                   "--state-dir",
                                   dir_.File("periphery-" + name),
                                   "--reconnect-max-backoff",
                                   "1",
                                   "--log-level",
                                   "debug"};
  for (std::string& flag : TrustFlags("--core-ca-hash", ca_pin())) {
    argv.push_back(std::move(flag));
  }
  if (options.tunnel) {
    argv.insert(argv.end(), {"--tunnel", "--no-listen"});
  } else {
    argv.insert(argv.end(), {"--listen", "[::1]:0"});
  }
  for (const std::string& label : options.labels) {
    argv.insert(argv.end(), {"--label", label});
  }
  auto daemon =
      std::make_unique<Daemon>(argv, dir_.File(name + ".log"), options.env);
  daemon->Start();
  Daemon* d = daemon.get();
  peripheries_[name] = std::move(daemon);
  const bool online = WaitFor([&] {
    return !d->Running() ||
           WaitOnline({name}, {options.cores.front()}, absl::ZeroDuration());
  });
  EXPECT_TRUE(online && d->Running())
      << "periphery " << name << " did not come online on replica "
      << options.cores.front() << ":\n"
      << d->Log();
  return d;
}

bool ReplicaFleet::WaitOnline(const std::vector<std::string>& names,
                              const std::vector<int>& replicas,
                              absl::Duration timeout) {
  varan::v1::Target target;
  for (const std::string& name : names) target.add_names(name);
  return WaitFor(
      [&] {
        for (int i : replicas) {
          client::CoreClient* c = client(i);
          if (c == nullptr) return false;
          auto list = c->ListPeripheries(target);
          if (!list.ok() || list->size() != names.size()) return false;
          for (const auto& p : *list) {
            if (p.state() != varan::v1::PERIPHERY_STATE_ONLINE) return false;
          }
        }
        return true;
      },
      timeout);
}

int ReplicaFleet::Holder(const std::string& name) const {
  // Names are the tests' own: no quoting needed beyond this check.
  if (name.find('\'') != std::string::npos) return -1;
  const auto rows = QueryDatabase(
      database_, absl::StrCat("SELECT r.address FROM cluster_connections c "
                              "JOIN cluster_replicas r ON r.id = c.replica_id "
                              "JOIN peripheries p ON p.id = c.periphery_id "
                              "WHERE p.name = '",
                              name, "'"));
  if (rows.size() != 1) return -1;
  for (int i = 0; i < size(); ++i) {
    if (absl::EndsWith(rows[0][0], absl::StrCat(":", ports_[i]))) return i;
  }
  return -1;
}

}  // namespace varan::testing
