// fleet_sim: benchmark 3 of #10, fleet scale. One process simulates N
// peripheries (default 10,000) against a real varan-core that it starts, and
// prints what it measured as a Markdown table.
//
// Each simulated periphery registers with core's join token, heartbeats at
// the interval core gives (the harness starts core with
// --heartbeat-interval 5), and answers every execution at once: `started`,
// one line of stdout, `exited 0`. Two modes:
//
//   tunnel  each periphery opens its own Registry.Connect stream (hello with
//           the registration, heartbeats and execution events over it), on a
//           channel of its own: channels are created with
//           grpc.use_local_subchannel_pool=1, so each is a separate TCP
//           connection and HTTP/2 session, as N real peripheries would be.
//   dial    each periphery registers and heartbeats with unary calls on a
//           channel (connection) of its own, and advertises a distinct
//           loopback address 127.a.b.c:P; this process serves the Agent
//           service once, on [::]:P, which all of 127.0.0.0/8 reaches. So
//           core holds N channels with one connection each, as it would for
//           N real peripheries. Executions are told apart by the credential
//           core presents (`authorization: Bearer <credential>`, as the real
//           periphery's Agent checks it); an unknown one is refused with
//           UNAUTHENTICATED and counted as an error.
//
// Like real peripheries, a periphery whose registration, heartbeat or tunnel
// fails retries with backoff (0.2 s doubling to 10 s, jittered x0.5-1.5),
// and the number of such retries is reported. At most --register-window
// registrations are in flight at once (the rest wait their turn), so the
// start is a burst but not N simultaneous connection attempts.
//
// Measured, per mode:
//   1. registration: from the first registration sent until core lists all N
//      online (Admin.GetInfo's peripheries_online, polled once this process
//      has seen every periphery's first heartbeat answered; then checked
//      with ListPeripheries, page by page: names, state, connection kind).
//   2. idle: core's RSS (VmRSS) and CPU (utime + stime, as % of one core)
//      over --idle-seconds of heartbeating with nothing else going on, after
//      one fan-out, so core holds its channels to dialed peripheries.
//   3. fan-out: CoreClient::Exec of `true` to a selector matching all N,
//      from the request until the job_finished event (every target final);
//      the first fan-out (core dials the N peripheries in dial mode) is
//      reported apart from the --fanouts measured ones. Checks that every
//      job SUCCEEDED on all N and that each periphery ran exactly one
//      execution per fan-out, of its own name.
// Exits 1 when any check fails (the output says which), so a small run is a
// test (see bench/CMakeLists.txt); timing is never asserted.
//
// Usage (defaults in brackets):
//   fleet_sim [--mode tunnel|dial|both] [both]  [--peripheries N] [10000]
//             [--idle-seconds S] [30]  [--fanouts N] [3]
//             [--register-window N] [1000]  [--timeout S] [180]
//             [--core-arg ARG]... (extra varan-core flags, repeatable)
//             [--replicas N] [1]  [--postgres URL] [start one]
// With --replicas N > 1 (#19): N varan-core replicas on one new database of
// the PostgreSQL server at URL (bench/run.sh starts one; else one is
// started here), periphery i connecting to replica i mod N; registration
// is timed until every replica lists all online, the first fan-out goes
// through each replica, the measured ones round robin, and RSS and idle CPU
// are reported per replica (bench/replicas.h). Each mode then also runs
// against one core on SQLite just before (the peer; --peer no: not), and a
// second table gives the replicas' figures as ratios to it.
// Needs file descriptors: about 2N in this process and 2N in core (dial);
// raises RLIMIT_NOFILE (soft and, as root, hard) before starting core, which
// inherits it.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "bench/bench_util.h"
#include "bench/replicas.h"
#include "common/grpc_util.h"
#include "common/keepalive.h"
#include "grpcpp/grpcpp.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace {

using varan::bench::BenchPostgres;
using varan::bench::CpuSeconds;
using varan::bench::LoadAverage;
using varan::bench::MachineBusySeconds;
using varan::bench::ReplicaOptions;
using varan::bench::Replicas;
using varan::bench::StatusMb;
using varan::bench::Trimmed;
using varan::testing::BinPath;
using varan::testing::Daemon;
using varan::testing::ReadFile;
using varan::testing::TempDir;
using varan::v1::TunnelDown;
using varan::v1::TunnelUp;

constexpr char kLabelKey[] = "fleet";
constexpr char kLabelValue[] = "sim";
constexpr char kOutput[] = "ok\n";
// Channels dialed peripheries share to reach core when the file descriptor
// limit cannot hold one each (see main).
constexpr int kDialChannelPool = 100;

struct Options {
  std::string mode = "both";
  int peripheries = 10000;
  double idle_seconds = 30;
  int fanouts = 3;
  int register_window = 1000;
  double timeout = 180;
  std::vector<std::string> core_args;
  // Several core replicas on one PostgreSQL database (--replicas N): the
  // peripheries spread over them round robin. The server: --postgres URL,
  // else one started here.
  int replicas = 1;
  std::string postgres;
  std::string postgres_label;  // for the report
  // With replicas: also run each mode against one core (the peer, on
  // SQLite as by default) in the same run, and compare (--peer no: not).
  bool peer = true;
  // Dial mode: channels (connections) to core for registrations and
  // heartbeats; set by main from the file descriptor limit.
  int dial_channels = 0;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2]
                           : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

rlim_t FileLimit() {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

// Raises this process's RLIMIT_NOFILE to at least `needed` (the hard limit
// too when permitted). Returns the soft limit now in force.
rlim_t RaiseFileLimit(rlim_t needed) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur >= needed) return lim.rlim_cur;
  rlimit want = lim;
  want.rlim_cur = needed;
  if (want.rlim_max < needed) want.rlim_max = needed;
  if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
    // Not allowed to raise the hard limit: take what there is.
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

// Client channel arguments of one simulated periphery: what the real one
// uses toward core (keepalive, reconnect backoff), plus a subchannel pool of
// its own so that its channel is a TCP connection of its own.
grpc::ChannelArguments PeripheryChannelArgs() {
  grpc::ChannelArguments args;
  varan::SetClientChannelArgs(&args, varan::Keepalive{},
                              absl::Milliseconds(200), absl::Seconds(10));
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

// --- The simulated fleet ----------------------------------------------------

class SimFleet;

// What every simulated periphery shares with the fleet: its index, name,
// identity once registered, a schedule, and counts.
struct SimBase {
  enum class Phase { kWaiting, kRegistering, kOnline };

  int index = 0;
  std::string name;
  // shared_ptr: in dial mode with a pool of channels (see DialFleet),
  // several peripheries share one.
  std::shared_ptr<varan::v1::Registry::Stub> stub;

  absl::Mutex mu;
  Phase phase ABSL_GUARDED_BY(mu) = Phase::kWaiting;
  // When the scheduler acts next for it (register or heartbeat).
  absl::Time due ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  absl::Duration backoff ABSL_GUARDED_BY(mu) = absl::Milliseconds(200);
  bool heartbeat_in_flight ABSL_GUARDED_BY(mu) = false;
  // Counted in the registration window (from the start of a registration
  // until its first heartbeat is answered, or it fails).
  bool in_window ABSL_GUARDED_BY(mu) = false;
  bool confirmed ABSL_GUARDED_BY(mu) = false;  // first heartbeat answered
  std::string id ABSL_GUARDED_BY(mu);
  std::string credential ABSL_GUARDED_BY(mu);

  // Execution ids it received, in order (checked after each fan-out).
  absl::Mutex exec_mu;
  std::vector<std::string> executions ABSL_GUARDED_BY(exec_mu);
};

// The fleet: owns the simulated peripheries, the scheduler thread that
// registers them and sends their heartbeats, and the counters. Subclasses
// implement one mode.
class SimFleet {
 public:
  // Periphery i connects to core_addresses[i % size].
  SimFleet(std::vector<std::string> core_addresses, std::string join_token,
           int n, int register_window)
      : core_addresses_(std::move(core_addresses)),
        join_token_(std::move(join_token)),
        register_window_(register_window) {
    sims_.reserve(static_cast<size_t>(n));
  }
  virtual ~SimFleet() = default;

  // Starts the scheduler: registrations begin now.
  void Start() {
    start_ = absl::Now();
    scheduler_ = std::thread([this] { Schedule(); });
  }

  // Stops heartbeating and ends every call (see Shutdown in subclasses).
  void StopScheduler() {
    stop_.Notify();
    if (scheduler_.joinable()) scheduler_.join();
  }

  absl::Time start() const { return start_; }
  int size() const { return static_cast<int>(sims_.size()); }
  int confirmed() const { return confirmed_.load(); }
  absl::Time all_confirmed_at() {
    absl::MutexLock lock(&mu_);
    return all_confirmed_at_;
  }
  uint64_t retries() const { return retries_.load(); }
  uint64_t shed() const { return shed_.load(); }
  uint64_t heartbeats() const { return heartbeats_.load(); }
  uint64_t errors() const { return errors_.load(); }
  std::string first_error() {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }
  std::string first_retry_reason() {
    absl::MutexLock lock(&mu_);
    return first_retry_reason_;
  }
  absl::Duration interval() {
    absl::MutexLock lock(&mu_);
    return interval_;
  }

  // Checks that periphery i received exactly the executions of `job_ids`
  // (one per job, in order, each "<job>/<its name>"); returns a description
  // of the first mismatch, or "".
  std::string CheckExecutions(const std::vector<std::string>& job_ids) {
    for (auto& sim : sims_) {
      absl::MutexLock lock(&sim->exec_mu);
      std::vector<std::string> want;
      for (const auto& job : job_ids) want.push_back(job + "/" + sim->name);
      if (sim->executions != want) {
        return absl::StrCat(sim->name, " ran ", sim->executions.size(),
                            " execution(s) (",
                            sim->executions.empty() ? "" : sim->executions[0],
                            "...), expected ", want.size());
      }
    }
    return "";
  }

 protected:
  // Starts periphery `sim`'s registration (phase kRegistering).
  virtual void Register(SimBase* sim) = 0;
  // Sends one heartbeat of `sim` (online); calls HeartbeatDone when answered.
  virtual void Heartbeat(SimBase* sim) = 0;

  // An error worth reporting (a retry follows where it makes sense).
  void Error(const std::string& what) {
    errors_.fetch_add(1);
    absl::MutexLock lock(&mu_);
    if (first_error_.empty()) first_error_ = what;
  }

  // The registration of `sim` failed (or its tunnel ended): it tries again
  // after its backoff, or as the real periphery does, after core's
  // retry-after hint (`status` RESOURCE_EXHAUSTED with a hint: core is
  // shedding load) and a little more.
  void Retry(SimBase* sim, const std::string& why,
             const absl::Status& status = absl::OkStatus()) {
    retries_.fetch_add(1);
    const std::optional<absl::Duration> hint = varan::RetryAfter(status);
    if (hint.has_value()) shed_.fetch_add(1);
    {
      absl::MutexLock lock(&mu_);
      if (first_retry_reason_.empty()) first_retry_reason_ = why;
    }
    bool was_registering;
    {
      absl::MutexLock lock(&sim->mu);
      was_registering = std::exchange(sim->in_window, false);
      sim->phase = SimBase::Phase::kWaiting;
      sim->heartbeat_in_flight = false;
      std::uniform_real_distribution<double> jitter(0.5, 1.5);
      double factor;
      {
        absl::MutexLock rl(&rng_mu_);
        factor = jitter(rng_);
      }
      if (hint.has_value()) {
        sim->due = absl::Now() + std::min(*hint, absl::Minutes(10)) *
                                     (1.0 + (factor - 0.5) / 4);
      } else {
        sim->due = absl::Now() + sim->backoff * factor;
        sim->backoff = std::min(sim->backoff * 2, absl::Seconds(10));
      }
    }
    if (was_registering) registering_.fetch_sub(1);
  }

  // Registration answered: `sim` is registered with `id` and `credential`;
  // it heartbeats at once (which confirms the registration).
  void Registered(SimBase* sim, const std::string& id,
                  const std::string& credential, absl::Duration interval) {
    {
      absl::MutexLock lock(&mu_);
      if (interval > absl::ZeroDuration()) interval_ = interval;
    }
    absl::MutexLock lock(&sim->mu);
    sim->id = id;
    // A resumed tunnel gets no new credential: the old one stays.
    if (!credential.empty()) sim->credential = credential;
    sim->phase = SimBase::Phase::kOnline;
    sim->due = absl::InfinitePast();  // the first heartbeat goes now
    sim->backoff = absl::Milliseconds(200);
  }

  // A heartbeat of `sim` was answered (ok or not).
  void HeartbeatDone(SimBase* sim, bool ok, const std::string& error) {
    heartbeats_.fetch_add(1);
    bool first = false, leave_window = false;
    {
      absl::MutexLock lock(&sim->mu);
      sim->heartbeat_in_flight = false;
      if (ok) leave_window = std::exchange(sim->in_window, false);
      if (ok && !sim->confirmed) {
        sim->confirmed = true;
        first = true;
      }
    }
    if (leave_window) registering_.fetch_sub(1);
    if (!ok) Error(absl::StrCat(sim->name, ": heartbeat: ", error));
    if (!first) return;
    if (confirmed_.fetch_add(1) + 1 == size()) {
      absl::MutexLock lock(&mu_);
      all_confirmed_at_ = absl::Now();
    }
  }

  void Executed(SimBase* sim, const std::string& execution_id) {
    absl::MutexLock lock(&sim->exec_mu);
    sim->executions.push_back(execution_id);
  }

  // The core periphery i connects to.
  const std::string& CoreOf(int i) const {
    return core_addresses_[static_cast<size_t>(i) % core_addresses_.size()];
  }

  const std::vector<std::string> core_addresses_;
  const std::string join_token_;
  std::vector<std::unique_ptr<SimBase>> sims_;

 private:
  // Every 50 ms: starts due registrations (within the window) and due
  // heartbeats. Calls are asynchronous; nothing here blocks on core.
  void Schedule() {
    while (!stop_.WaitForNotificationWithTimeout(absl::Milliseconds(50))) {
      const absl::Time now = absl::Now();
      const absl::Duration every = interval();
      for (auto& owned : sims_) {
        SimBase* sim = owned.get();
        bool reg = false, beat = false;
        {
          absl::MutexLock lock(&sim->mu);
          if (sim->due > now) continue;
          if (sim->phase == SimBase::Phase::kWaiting) {
            if (registering_.load() >= register_window_) continue;
            registering_.fetch_add(1);
            sim->in_window = true;
            sim->phase = SimBase::Phase::kRegistering;
            reg = true;
          } else if (sim->phase == SimBase::Phase::kOnline &&
                     !sim->heartbeat_in_flight) {
            sim->heartbeat_in_flight = true;
            sim->due = now + every;
            beat = true;
          }
        }
        if (reg) Register(sim);
        if (beat) Heartbeat(sim);
      }
    }
  }

  const int register_window_;
  absl::Time start_;
  std::thread scheduler_;
  absl::Notification stop_;
  std::atomic<int> registering_{0};
  std::atomic<int> confirmed_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> shed_{0};
  std::atomic<uint64_t> heartbeats_{0};
  std::atomic<uint64_t> errors_{0};
  absl::Mutex rng_mu_;
  std::mt19937 rng_ ABSL_GUARDED_BY(rng_mu_){42};
  absl::Mutex mu_;
  absl::Time all_confirmed_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(5);
  std::string first_error_ ABSL_GUARDED_BY(mu_);
  std::string first_retry_reason_ ABSL_GUARDED_BY(mu_);
};

// Small, fixed stats like a real periphery's heartbeat carries.
varan::v1::HostStats SimStats() {
  varan::v1::HostStats stats;
  stats.set_load1(0.1);
  stats.set_load5(0.2);
  stats.set_load15(0.3);
  stats.set_memory_total_bytes(8ull << 30);
  stats.set_memory_available_bytes(6ull << 30);
  stats.set_uptime_seconds(86400);
  stats.set_cpu_percent(1.5);
  return stats;
}

varan::v1::RegisterRequest SimRegistration(const SimBase& sim,
                                           const std::string& address) {
  varan::v1::RegisterRequest req;
  req.set_name(sim.name);
  (*req.mutable_labels())[kLabelKey] = kLabelValue;
  req.set_advertise_address(address);
  req.set_version("fleet_sim");
  auto* facts = req.mutable_facts();
  facts->set_hostname(sim.name);
  facts->set_os("Debian GNU/Linux 12 (bookworm)");
  facts->set_kernel("6.1.0-18-amd64");
  facts->set_arch("x86_64");
  facts->set_cpu_count(4);
  facts->set_memory_total_bytes(8ull << 30);
  facts->set_agent_version("fleet_sim");
  return req;
}

// The three events of an instant execution: started, one line of stdout,
// exited 0.
std::vector<varan::v1::ExecuteEvent> InstantEvents() {
  std::vector<varan::v1::ExecuteEvent> events(3);
  events[0].mutable_started()->set_pid(4242);
  events[1].mutable_output()->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
  events[1].mutable_output()->set_sequence(0);
  events[1].mutable_output()->set_data(kOutput);
  events[2].mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
  events[2].mutable_exited()->set_code(0);
  return events;
}

// --- Tunnel mode ------------------------------------------------------------

class TunnelFleet;

// One Registry.Connect stream of one simulated periphery. Deletes itself in
// OnDone (after telling the fleet).
class TunnelSession final
    : public grpc::ClientBidiReactor<TunnelUp, TunnelDown> {
 public:
  TunnelSession(TunnelFleet* fleet, SimBase* sim, const std::string& bearer,
                TunnelUp hello);

  void Begin() {
    StartRead(&in_);
    StartCall();
  }

  // Queues `msg`; false when the stream is over.
  bool Send(TunnelUp msg) {
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return false;
      if (writing_) {
        queue_.push_back(std::move(msg));
        return true;
      }
      writing_ = true;
      current_ = std::move(msg);
    }
    StartWrite(&current_);
    return true;
  }

  void Cancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (!ok || queue_.empty()) {
        writing_ = false;
        return;  // a failed write: OnDone follows
      }
      current_ = std::move(queue_.front());
      queue_.pop_front();
    }
    StartWrite(&current_);
  }

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  TunnelFleet* const fleet_;
  SimBase* const sim_;
  grpc::ClientContext context_;
  TunnelDown in_;
  TunnelUp current_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<TunnelUp> queue_ ABSL_GUARDED_BY(mu_);
};

class TunnelFleet final : public SimFleet {
 public:
  TunnelFleet(std::vector<std::string> core_addresses, std::string join_token,
              int n, int register_window)
      : SimFleet(std::move(core_addresses), std::move(join_token), n,
                 register_window) {
    for (int i = 0; i < n; ++i) {
      auto sim = std::make_unique<SimBase>();
      sim->index = i;
      sim->name = absl::StrFormat("sim-%05d", i);
      sim->stub = varan::v1::Registry::NewStub(grpc::CreateCustomChannel(
          CoreOf(i), grpc::InsecureChannelCredentials(),
          PeripheryChannelArgs()));
      sims_.push_back(std::move(sim));
    }
  }

  // Ends every tunnel and waits for them to close.
  void Shutdown() {
    StopScheduler();
    {
      absl::MutexLock lock(&sessions_mu_);
      stopping_ = true;
      for (auto& [sim, session] : sessions_) session->Cancel();
      auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sessions_mu_) {
        return sessions_.empty();
      };
      sessions_mu_.AwaitWithTimeout(absl::Condition(&none), absl::Seconds(30));
    }
  }

  // Reactions of TunnelSession.
  void Opened(SimBase* sim, const varan::v1::TunnelOpened& opened) {
    absl::Duration interval =
        absl::Seconds(opened.heartbeat_interval().seconds()) +
        absl::Nanoseconds(opened.heartbeat_interval().nanos());
    Registered(sim, opened.periphery_id(), opened.credential(), interval);
  }
  void HeartbeatAnswered(SimBase* sim) { HeartbeatDone(sim, true, ""); }
  void Execute(SimBase* sim, TunnelSession* session,
               const varan::v1::ExecuteRequest& request) {
    Executed(sim, request.execution_id());
    for (auto& event : InstantEvents()) {
      TunnelUp up;
      up.mutable_event()->set_execution_id(request.execution_id());
      *up.mutable_event()->mutable_event() = std::move(event);
      session->Send(std::move(up));
    }
  }
  void Ended(SimBase* sim, TunnelSession* session, const absl::Status& status) {
    bool stopping;
    {
      absl::MutexLock lock(&sessions_mu_);
      stopping = stopping_;
      auto it = sessions_.find(sim);
      if (it != sessions_.end() && it->second == session) sessions_.erase(it);
    }
    if (stopping) return;
    const std::string why =
        absl::StrCat(sim->name, ": tunnel ended: ", status.ToString());
    bool was_online;
    {
      absl::MutexLock lock(&sim->mu);
      was_online = sim->phase == SimBase::Phase::kOnline;
    }
    if (was_online) Error(why);
    Retry(sim, why, status);
  }

 protected:
  // Opens the tunnel: a registration with the join token, or (after a
  // broken tunnel) a resumption with the periphery's id and credential, as
  // the real periphery does.
  void Register(SimBase* sim) override {
    TunnelUp hello;
    std::string bearer = join_token_;
    {
      absl::MutexLock lock(&sim->mu);
      if (sim->id.empty()) {
        *hello.mutable_hello()->mutable_register_() = SimRegistration(*sim, "");
      } else {
        hello.mutable_hello()->set_periphery_id(sim->id);
        bearer = sim->credential;
      }
    }
    TunnelSession* session;
    {
      absl::MutexLock lock(&sessions_mu_);
      if (stopping_) return;
      session = new TunnelSession(this, sim, bearer, std::move(hello));
      sessions_[sim] = session;
    }
    // Not under sessions_mu_: a reaction may run inline and take it.
    session->Begin();
  }

  void Heartbeat(SimBase* sim) override {
    TunnelSession* session = nullptr;
    {
      absl::MutexLock lock(&sessions_mu_);
      auto it = sessions_.find(sim);
      if (it != sessions_.end()) session = it->second;
    }
    TunnelUp up;
    *up.mutable_heartbeat()->mutable_stats() = SimStats();
    {
      absl::MutexLock lock(&sim->mu);
      up.mutable_heartbeat()->set_periphery_id(sim->id);
    }
    if (session == nullptr || !session->Send(std::move(up))) {
      absl::MutexLock lock(&sim->mu);
      sim->heartbeat_in_flight = false;
    }
  }

 private:
  absl::Mutex sessions_mu_;
  bool stopping_ ABSL_GUARDED_BY(sessions_mu_) = false;
  absl::flat_hash_map<SimBase*, TunnelSession*> sessions_
      ABSL_GUARDED_BY(sessions_mu_);
};

TunnelSession::TunnelSession(TunnelFleet* fleet, SimBase* sim,
                             const std::string& bearer, TunnelUp hello)
    : fleet_(fleet), sim_(sim) {
  context_.AddMetadata("authorization", "Bearer " + bearer);
  sim->stub->async()->Connect(&context_, this);
  {
    absl::MutexLock lock(&mu_);
    writing_ = true;
  }
  current_ = std::move(hello);
  StartWrite(&current_);
}

void TunnelSession::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows
  switch (in_.message_case()) {
    case TunnelDown::kOpened:
      fleet_->Opened(sim_, in_.opened());
      break;
    case TunnelDown::kHeartbeat:
      fleet_->HeartbeatAnswered(sim_);
      break;
    case TunnelDown::kExecute:
      fleet_->Execute(sim_, this, in_.execute());
      break;
    // Simulated executions end at once: nothing is left to cancel, and
    // their few bytes never need more output credit.
    case TunnelDown::kCancel:
    case TunnelDown::kCredit:
    case TunnelDown::kDetach:
    case TunnelDown::MESSAGE_NOT_SET:
      break;
  }
  StartRead(&in_);
}

void TunnelSession::OnDone(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }
  fleet_->Ended(sim_, this,
                varan::WithRetryAfter(varan::FromGrpcStatus(status), context_));
  delete this;
}

// --- Dial mode --------------------------------------------------------------

// Agent.Execute of the dialed peripheries: writes the instant events, then
// finishes. Deletes itself.
class InstantExecution final
    : public grpc::ServerWriteReactor<varan::v1::ExecuteEvent> {
 public:
  InstantExecution() : events_(InstantEvents()) { StartWrite(&events_[0]); }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    ++next_;
    if (next_ + 1 < events_.size()) {
      StartWrite(&events_[next_]);
    } else {
      StartWriteAndFinish(&events_[next_], grpc::WriteOptions(),
                          grpc::Status::OK);
    }
  }

  void OnDone() override { delete this; }

 private:
  std::vector<varan::v1::ExecuteEvent> events_;
  size_t next_ = 0;  // reactions of one call do not overlap
};

class RefusedExecution final
    : public grpc::ServerWriteReactor<varan::v1::ExecuteEvent> {
 public:
  explicit RefusedExecution(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

class DialFleet;

// The Agent service all dialed peripheries share; it tells them apart by the
// credential core presents.
class SimAgent final : public varan::v1::Agent::CallbackService {
 public:
  explicit SimAgent(DialFleet* fleet) : fleet_(fleet) {}
  grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext* context,
      const varan::v1::ExecuteRequest* request) override;

 private:
  DialFleet* const fleet_;
};

class DialFleet final : public SimFleet {
 public:
  // Registrations and heartbeats go over `channels` channels (connections)
  // to core, periphery i on channel i % channels: one each when channels ==
  // n, as real peripheries; fewer where the file descriptor limit cannot
  // hold 2n connections in core and in this process.
  // With several cores, channel c goes to core c % cores and periphery i
  // uses a channel to its own core (i % cores).
  DialFleet(std::vector<std::string> core_addresses, std::string join_token,
            int n, int register_window, int channels)
      : SimFleet(std::move(core_addresses), std::move(join_token), n,
                 register_window),
        agent_(this) {
    const int cores = static_cast<int>(core_addresses_.size());
    const int per_core = std::max(1, channels / cores);
    std::vector<std::shared_ptr<varan::v1::Registry::Stub>> stubs;
    for (int c = 0; c < (channels == n ? n : per_core * cores); ++c) {
      stubs.push_back(varan::v1::Registry::NewStub(grpc::CreateCustomChannel(
          CoreOf(c), grpc::InsecureChannelCredentials(),
          PeripheryChannelArgs())));
    }
    for (int i = 0; i < n; ++i) {
      auto sim = std::make_unique<SimBase>();
      sim->index = i;
      sim->name = absl::StrFormat("sim-%05d", i);
      const int c =
          channels == n ? i : i % cores + cores * (i / cores % per_core);
      sim->stub = stubs[static_cast<size_t>(c)];
      sims_.push_back(std::move(sim));
    }
  }

  // Serves the Agent service on [::]:0; false when that fails.
  bool Serve() {
    grpc::ServerBuilder builder;
    for (const auto& [key, value] :
         varan::ServerKeepaliveArgs(varan::Keepalive{})) {
      builder.AddChannelArgument(key, value);
    }
    builder.AddListeningPort("[::]:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(&agent_);
    server_ = builder.BuildAndStart();
    return server_ != nullptr && port_ != 0;
  }

  void Shutdown() {
    StopScheduler();
    // In-flight unary calls hold contexts: wait for them.
    {
      absl::MutexLock lock(&calls_mu_);
      auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_) {
        return calls_ == 0;
      };
      calls_mu_.AwaitWithTimeout(absl::Condition(&none), absl::Seconds(30));
    }
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(2));
    }
  }

  // The address periphery `i` advertises: 127.a.b.c:port, distinct per i.
  std::string AddressOf(int i) const {
    return absl::StrCat("127.", 1 + i / (250 * 250), ".", 1 + (i / 250) % 250,
                        ".", 1 + i % 250, ":", port_);
  }

  // The periphery core's credential belongs to, or null.
  SimBase* ByCredential(absl::string_view credential) {
    absl::MutexLock lock(&by_credential_mu_);
    auto it = by_credential_.find(credential);
    return it == by_credential_.end() ? nullptr : it->second;
  }

  void Execution(SimBase* sim, const std::string& execution_id) {
    Executed(sim, execution_id);
  }
  void Refused(const std::string& why) { Error(why); }

 protected:
  void Register(SimBase* sim) override {
    auto* call = new UnaryCall<varan::v1::RegisterRequest,
                               varan::v1::RegisterResponse>();
    call->context.AddMetadata("authorization", "Bearer " + join_token_);
    call->context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::seconds(30));
    call->request = SimRegistration(*sim, AddressOf(sim->index));
    Begin();
    sim->stub->async()->Register(
        &call->context, &call->request, &call->response,
        [this, sim, call](grpc::Status status) {
          if (status.ok()) {
            {
              absl::MutexLock lock(&by_credential_mu_);
              by_credential_[call->response.credential()] = sim;
            }
            const auto& d = call->response.heartbeat_interval();
            Registered(
                sim, call->response.periphery_id(), call->response.credential(),
                absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos()));
          } else {
            const absl::Status s = varan::WithRetryAfter(
                varan::FromGrpcStatus(status), call->context);
            Retry(sim, absl::StrCat(sim->name, ": register: ", s.ToString()),
                  s);
          }
          delete call;
          End();
        });
  }

  void Heartbeat(SimBase* sim) override {
    auto* call = new UnaryCall<varan::v1::HeartbeatRequest,
                               varan::v1::HeartbeatResponse>();
    {
      absl::MutexLock lock(&sim->mu);
      call->context.AddMetadata("authorization", "Bearer " + sim->credential);
      call->request.set_periphery_id(sim->id);
    }
    call->context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::seconds(10));
    *call->request.mutable_stats() = SimStats();
    Begin();
    sim->stub->async()->Heartbeat(
        &call->context, &call->request, &call->response,
        [this, sim, call](grpc::Status status) {
          HeartbeatDone(
              sim, status.ok(),
              absl::StrCat(status.error_code(), " ", status.error_message()));
          delete call;
          End();
        });
  }

 private:
  template <typename Request, typename Response>
  struct UnaryCall {
    grpc::ClientContext context;
    Request request;
    Response response;
  };

  void Begin() {
    absl::MutexLock lock(&calls_mu_);
    ++calls_;
  }
  void End() {
    absl::MutexLock lock(&calls_mu_);
    --calls_;
  }

  SimAgent agent_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex by_credential_mu_;
  absl::flat_hash_map<std::string, SimBase*> by_credential_
      ABSL_GUARDED_BY(by_credential_mu_);
  absl::Mutex calls_mu_;
  int calls_ ABSL_GUARDED_BY(calls_mu_) = 0;
};

grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* SimAgent::Execute(
    grpc::CallbackServerContext* context,
    const varan::v1::ExecuteRequest* request) {
  absl::string_view credential;
  auto it = context->client_metadata().find("authorization");
  if (it != context->client_metadata().end()) {
    absl::string_view header(it->second.data(), it->second.size());
    if (absl::StartsWith(header, "Bearer ")) credential = header.substr(7);
  }
  SimBase* sim = fleet_->ByCredential(credential);
  if (sim == nullptr) {
    fleet_->Refused(absl::StrCat("Agent.Execute of ", request->execution_id(),
                                 " with an unknown credential"));
    return new RefusedExecution(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown credential"));
  }
  fleet_->Execution(sim, request->execution_id());
  return new InstantExecution();
}

// --- The run ----------------------------------------------------------------

// A varan-core of this run: its data dir, process and address.
class Core {
 public:
  explicit Core(const std::vector<std::string>& extra_args) {
    // Every simulated periphery connects from ::1: no per-address cap.
    std::vector<std::string> argv = {BinPath("varan-core"), "--listen",
                                     "[::]:0", "--data-dir", dir_.File("core"),
                                     "--heartbeat-interval", "5",
                                     "--max-connections-per-address", "0",
                                     // The simulated peripheries speak
                                     // plaintext.
                                     "--insecure-plaintext"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    daemon_ = std::make_unique<Daemon>(argv, dir_.File("core.log"));
  }

  // Starts core and waits until it serves; false (with a message on stderr)
  // when it does not.
  bool Start() {
    daemon_->Start();
    const std::string marker = "listening on [::]:";
    bool up = varan::testing::WaitFor(
        [&] {
          if (!daemon_->Running()) return true;
          std::string log = daemon_->Log();
          size_t at = log.find(marker);
          if (at == std::string::npos) return false;
          size_t end = log.find_first_not_of("0123456789", at + marker.size());
          if (end == std::string::npos) return false;
          port_ = std::stoi(
              log.substr(at + marker.size(), end - at - marker.size()));
          return !Trimmed(ReadFile(dir_.File("core/admin.token"))).empty() &&
                 varan::testing::Healthy(address());
        },
        absl::Seconds(30));
    if (!up || !daemon_->Running()) {
      std::fprintf(stderr, "fleet_sim: core did not come up:\n%s\n",
                   daemon_->Log().c_str());
      return false;
    }
    return true;
  }

  std::string address() const { return absl::StrCat("[::1]:", port_); }
  std::string pid() const { return std::to_string(daemon_->pid()); }
  std::string admin_token() const {
    return Trimmed(ReadFile(dir_.File("core/admin.token")));
  }
  std::string join_token() const {
    return Trimmed(ReadFile(dir_.File("core/join.token")));
  }
  bool Running() { return daemon_->Running(); }
  std::string LogTail() const {
    std::string log = daemon_->Log();
    return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
  }
  size_t LogBytes() const { return daemon_->Log().size(); }
  int Stop() { return daemon_->Stop(SIGTERM, absl::Seconds(30)); }

 private:
  TempDir dir_;
  std::unique_ptr<Daemon> daemon_;
  int port_ = 0;
};

// The cores of a run: one Core, or (--replicas N) N replicas on a new
// database of `pg`, each with the same flags as the one Core.
class Cores {
 public:
  Cores(const Options& opt, BenchPostgres* pg) : opt_(opt), pg_(pg) {}

  bool Start() {
    if (opt_.replicas == 1) {
      core_ = std::make_unique<Core>(opt_.core_args);
      return core_->Start();
    }
    auto database = pg_->NewDatabase("varan_fleet");
    if (!database.ok()) {
      std::fprintf(stderr, "fleet_sim: %s\n",
                   database.status().ToString().c_str());
      return false;
    }
    ReplicaOptions ro;
    ro.replicas = opt_.replicas;
    ro.database = *database;
    ro.extra_args = {"--heartbeat-interval", "5",
                     "--max-connections-per-address", "0"};
    ro.extra_args.insert(ro.extra_args.end(), opt_.core_args.begin(),
                         opt_.core_args.end());
    replicas_ = std::make_unique<Replicas>(ro);
    if (absl::Status s = replicas_->Start(); !s.ok()) {
      std::fprintf(stderr, "fleet_sim: %s\n", s.ToString().c_str());
      return false;
    }
    return true;
  }

  int size() const { return core_ != nullptr ? 1 : replicas_->size(); }
  std::vector<std::string> addresses() const {
    if (core_ != nullptr) return {core_->address()};
    std::vector<std::string> out;
    for (int i = 0; i < replicas_->size(); ++i) {
      out.push_back(replicas_->address(i));
    }
    return out;
  }
  std::string pid(int i) const {
    return core_ != nullptr ? core_->pid() : replicas_->pid_string(i);
  }
  std::string admin_token() const {
    return core_ != nullptr ? core_->admin_token() : replicas_->admin_token();
  }
  std::string join_token() const {
    return core_ != nullptr ? core_->join_token() : replicas_->join_token();
  }
  // All of them.
  bool Running() {
    if (core_ != nullptr) return core_->Running();
    for (int i = 0; i < replicas_->size(); ++i) {
      if (!replicas_->Running(i)) return false;
    }
    return true;
  }
  std::string LogTail() const {
    if (core_ != nullptr) return core_->LogTail();
    std::string out;
    for (int i = 0; i < replicas_->size(); ++i) {
      std::string log = replicas_->Log(i);
      absl::StrAppend(&out, "replica ", i + 1, ":\n",
                      log.size() > 2000 ? log.substr(log.size() - 2000) : log);
    }
    return out;
  }
  size_t LogBytes(int i) const {
    return core_ != nullptr ? core_->LogBytes() : replicas_->Log(i).size();
  }
  // Which replicas exited, and how (empty: all run).
  std::string Exited() {
    return replicas_ != nullptr ? replicas_->Exited() : std::string();
  }
  // The first 5 warn and error lines of core i's log; `*total` counts all.
  std::vector<std::string> Warnings(int i, size_t* total) const {
    return replicas_ != nullptr ? replicas_->Warnings(i, 5, total)
                                : std::vector<std::string>();
  }
  void Stop() {
    if (core_ != nullptr) core_->Stop();
    if (replicas_ != nullptr) replicas_->Stop();
  }

 private:
  const Options& opt_;
  BenchPostgres* const pg_;
  std::unique_ptr<Core> core_;
  std::unique_ptr<Replicas> replicas_;
};

constexpr double kNotMeasured = std::numeric_limits<double>::quiet_NaN();

// Per core (one, or each replica) where a ModeResult has a vector. What a
// failed mode did not reach stays kNotMeasured (or empty); what it measured
// before it failed is reported.
struct ModeResult {
  std::string mode;
  bool ok = false;
  std::string failure;
  double register_s = kNotMeasured;        // until every core lists all online
  double register_first_s = kNotMeasured;  // until the first core does
  // This process saw every first heartbeat answered.
  double register_sim_s = kNotMeasured;
  std::vector<double> rss_registered_mb;
  std::vector<double> rss_idle_mb;
  std::vector<double> rss_end_mb;
  std::vector<double> idle_cpu_percent;
  double idle_window_s = kNotMeasured;
  double self_idle_cpu_percent = kNotMeasured;
  double machine_idle_cpu_percent = kNotMeasured;
  std::vector<double> first_fanout_ms;  // the first through each core
  std::vector<double> fanout_ms;
  // Fan-outs go through the first `fanout_cores` cores (dial mode with
  // replicas: as many as the file descriptor limit holds, see RunMode).
  int fanout_cores = 1;
  // CPU seconds used during the measured fan-outs, per fan-out.
  double core_cpu_per_fanout_s = kNotMeasured;
  double self_cpu_per_fanout_s = kNotMeasured;
  uint64_t retries = 0;
  uint64_t shed = 0;
  uint64_t heartbeats = 0;
  std::vector<size_t> core_log_bytes;
  std::vector<std::string> warnings;
  std::string load_before;
  std::string load_after;  // empty when it failed before the end
};

// One fan-out of `true` to every simulated periphery through the client
// library; returns the job id and the time from request to job_finished, or
// a failure in `*error`.
std::string FanOut(varan::client::CoreClient* client, int n, double* ms,
                   std::string* error) {
  varan::v1::DispatchRequest request;
  request.mutable_target()->set_selector(
      absl::StrCat(kLabelKey, "=", kLabelValue));
  request.mutable_spec()->add_argv("true");
  std::string job_id;
  uint32_t succeeded = 0, failed = 0;
  varan::v1::JobState state = varan::v1::JOB_STATE_UNSPECIFIED;
  std::string first_failure;
  const absl::Time start = absl::Now();
  absl::Status s = client->Exec(request, [&](const varan::v1::JobEvent& ev) {
    job_id = ev.job_id();
    if (ev.has_finished() &&
        ev.finished().state() != varan::v1::TARGET_STATE_EXITED &&
        first_failure.empty()) {
      first_failure = absl::StrCat(ev.target(), ": ", ev.finished().error());
    }
    if (ev.has_job_finished()) {
      state = ev.job_finished().state();
      succeeded = ev.job_finished().succeeded();
      failed = ev.job_finished().failed();
    }
  });
  *ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  if (!s.ok()) {
    *error = absl::StrCat("fan-out: ", s.ToString());
  } else if (state != varan::v1::JOB_STATE_SUCCEEDED ||
             succeeded != static_cast<uint32_t>(n)) {
    *error =
        absl::StrCat("fan-out job ", job_id, ": ", succeeded, " succeeded, ",
                     failed, " failed of ", n,
                     first_failure.empty() ? "" : "; first: ", first_failure);
  }
  return job_id;
}

// Checks with ListPeripheries, following its pages (as varanctl does), that
// core lists all of `fleet` online with the right connection kind; "" or a
// mismatch.
std::string CheckListed(const std::string& address, const std::string& token,
                        SimFleet* fleet, bool tunnel) {
  auto stub = varan::v1::Fleet::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  varan::v1::ListPeripheriesRequest req;
  req.mutable_target()->set_selector(absl::StrCat(kLabelKey, "=", kLabelValue));
  req.set_limit(1000);
  varan::v1::ListPeripheriesResponse resp;
  do {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(60));
    varan::v1::ListPeripheriesResponse page;
    grpc::Status s = stub->ListPeripheries(&ctx, req, &page);
    if (!s.ok()) return absl::StrCat("ListPeripheries: ", s.error_message());
    resp.mutable_peripheries()->MergeFrom(page.peripheries());
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty() &&
           resp.peripheries_size() <= fleet->size());
  if (resp.peripheries_size() != fleet->size()) {
    return absl::StrCat("core lists ", resp.peripheries_size(), " of ",
                        fleet->size(), " peripheries");
  }
  for (int i = 0; i < resp.peripheries_size(); ++i) {
    const auto& p = resp.peripheries(i);
    const std::string want = absl::StrFormat("sim-%05d", i);
    const auto kind =
        tunnel ? varan::v1::CONNECTION_TUNNEL : varan::v1::CONNECTION_DIAL;
    if (p.name() != want || p.state() != varan::v1::PERIPHERY_STATE_ONLINE ||
        p.connection() != kind) {
      return absl::StrCat("core lists ", p.name(), " (expected ", want, ") as ",
                          varan::v1::PeripheryState_Name(p.state()), ", ",
                          varan::v1::Connection_Name(p.connection()));
    }
  }
  return "";
}

ModeResult RunMode(const std::string& mode, const Options& opt,
                   BenchPostgres* pg) {
  ModeResult r;
  r.mode = mode;
  const bool tunnel = mode == "tunnel";
  Cores cores(opt, pg);
  bool started = false;
  auto collect_warnings = [&] {
    for (int c = 0; c < cores.size() && started; ++c) {
      size_t total = 0;
      for (const auto& line : cores.Warnings(c, &total)) {
        r.warnings.push_back(absl::StrCat("replica ", c + 1, ": ", line));
      }
      if (total > 5) {
        r.warnings.push_back(absl::StrCat("replica ", c + 1, ": (", total - 5,
                                          " more warn or error lines)"));
      }
    }
  };
  auto fail = [&](std::string why) {
    r.ok = false;
    r.failure = std::move(why);
    if (started) {
      if (std::string exited = cores.Exited(); !exited.empty()) {
        absl::StrAppend(&r.failure, ". Meanwhile ", exited);
      }
    }
    collect_warnings();
    return r;
  };
  if (!cores.Start()) return fail("core did not start");
  started = true;
  const int n_cores = cores.size();
  const std::vector<std::string> addresses = cores.addresses();
  for (int c = 0; c < n_cores; ++c) {
    std::fprintf(stderr, "fleet_sim: %s: core %d pid %s at %s\n", mode.c_str(),
                 c + 1, cores.pid(c).c_str(), addresses[c].c_str());
  }
  auto each_core = [n_cores](auto f) {
    std::vector<double> v;
    for (int c = 0; c < n_cores; ++c) v.push_back(f(c));
    return v;
  };
  auto cpu_of_cores = [&] {
    return each_core([&](int c) { return CpuSeconds(cores.pid(c)); });
  };
  auto rss_of_cores = [&] {
    return each_core([&](int c) { return StatusMb(cores.pid(c), "VmRSS"); });
  };

  std::unique_ptr<SimFleet> fleet;
  TunnelFleet* tunnels = nullptr;
  DialFleet* dials = nullptr;
  if (tunnel) {
    auto f = std::make_unique<TunnelFleet>(
        addresses, cores.join_token(), opt.peripheries, opt.register_window);
    tunnels = f.get();
    fleet = std::move(f);
  } else {
    auto f = std::make_unique<DialFleet>(addresses, cores.join_token(),
                                         opt.peripheries, opt.register_window,
                                         opt.dial_channels);
    if (!f->Serve()) return fail("cannot serve the Agent service on [::]:0");
    dials = f.get();
    fleet = std::move(f);
  }
  auto shutdown = [&] {
    if (tunnels != nullptr) tunnels->Shutdown();
    if (dials != nullptr) dials->Shutdown();
  };
  std::vector<std::unique_ptr<varan::client::CoreClient>> clients;
  for (int c = 0; c < n_cores; ++c) {
    auto client = varan::client::CoreClient::Create(
        {addresses[c], cores.admin_token(), absl::Seconds(60), {}});
    if (!client.ok()) return fail(client.status().ToString());
    clients.push_back(*std::move(client));
  }

  r.load_before = LoadAverage();
  std::fprintf(stderr, "fleet_sim: %s: registering %d peripheries\n",
               mode.c_str(), opt.peripheries);
  fleet->Start();
  const absl::Time deadline = absl::Now() + absl::Seconds(opt.timeout);
  // Cheap wait on this side first; then every core must list them all
  // online (a replica counts those another live replica holds).
  bool all = varan::testing::WaitFor(
      [&] { return fleet->confirmed() == fleet->size() || !cores.Running(); },
      absl::Seconds(opt.timeout));
  std::vector<absl::Time> listed_at(static_cast<size_t>(n_cores),
                                    absl::InfiniteFuture());
  if (all && cores.Running()) {
    all = varan::testing::WaitFor(
        [&] {
          bool every = true;
          for (int c = 0; c < n_cores; ++c) {
            if (listed_at[c] != absl::InfiniteFuture()) continue;
            auto info = clients[c]->GetInfo();
            if (info.ok() && info->peripheries_online() ==
                                 static_cast<uint32_t>(opt.peripheries)) {
              listed_at[c] = absl::Now();
            } else {
              every = false;
            }
          }
          return every;
        },
        std::max(deadline - absl::Now(), absl::Seconds(5)));
  }
  if (!all) {
    std::string why = absl::StrCat(
        fleet->confirmed(), " of ", opt.peripheries,
        " peripheries online after ", opt.timeout, " s (", fleet->retries(),
        " retries; first error: ", fleet->first_error(), ")\ncore log tail:\n",
        cores.LogTail());
    shutdown();
    return fail(why);
  }
  r.register_s = absl::ToDoubleSeconds(
      *std::max_element(listed_at.begin(), listed_at.end()) - fleet->start());
  r.register_first_s = absl::ToDoubleSeconds(
      *std::min_element(listed_at.begin(), listed_at.end()) - fleet->start());
  r.register_sim_s =
      absl::ToDoubleSeconds(fleet->all_confirmed_at() - fleet->start());
  r.rss_registered_mb = rss_of_cores();
  for (int c = 0; c < n_cores; ++c) {
    if (std::string bad =
            CheckListed(addresses[c], cores.admin_token(), fleet.get(), tunnel);
        !bad.empty()) {
      shutdown();
      return fail(n_cores == 1 ? bad
                               : absl::StrCat("replica ", c + 1, ": ", bad));
    }
  }
  std::fprintf(stderr, "fleet_sim: %s: all online after %.2f s; fan-out\n",
               mode.c_str(), r.register_s);

  // Dial mode: each core that fans out connects to every periphery, so
  // this process accepts N connections per such core; through as many
  // cores as the file descriptor limit holds (all when it does).
  const rlim_t n = static_cast<rlim_t>(opt.peripheries);
  r.fanout_cores =
      tunnel ? n_cores
             : static_cast<int>(std::clamp<rlim_t>(
                   (FileLimit() - std::min<rlim_t>(FileLimit(), 4096 + n)) / n,
                   1, static_cast<rlim_t>(n_cores)));
  if (r.fanout_cores < n_cores) {
    std::fprintf(stderr,
                 "fleet_sim: %s: fan-outs through %d of %d replicas only: "
                 "RLIMIT_NOFILE %llu cannot hold %d connections per replica "
                 "fanning out\n",
                 mode.c_str(), r.fanout_cores, n_cores,
                 static_cast<unsigned long long>(FileLimit()), opt.peripheries);
  }

  // The first fan-out through each core (dial: each connects to every
  // periphery; replicas: each opens its relay channels).
  std::vector<std::string> jobs;
  std::string error;
  for (int c = 0; c < r.fanout_cores; ++c) {
    double ms = 0;
    jobs.push_back(FanOut(clients[c].get(), opt.peripheries, &ms, &error));
    r.first_fanout_ms.push_back(ms);
    if (!error.empty()) {
      shutdown();
      return fail(error);
    }
  }

  // Idle: heartbeats only. Let the fan-out's aftermath (commits) settle for
  // a heartbeat interval first.
  std::fprintf(stderr, "fleet_sim: %s: idle for %.0f s\n", mode.c_str(),
               opt.idle_seconds);
  absl::SleepFor(std::min(fleet->interval(), absl::Seconds(opt.idle_seconds)));
  const absl::Time t0 = absl::Now();
  const std::vector<double> cpu0 = cpu_of_cores();
  const double self0 = CpuSeconds("self");
  const double machine0 = MachineBusySeconds();
  absl::SleepFor(absl::Seconds(opt.idle_seconds));
  const std::vector<double> cpu1 = cpu_of_cores();
  const double self1 = CpuSeconds("self");
  const double machine1 = MachineBusySeconds();
  r.idle_window_s = absl::ToDoubleSeconds(absl::Now() - t0);
  for (int c = 0; c < n_cores; ++c) {
    r.idle_cpu_percent.push_back(100.0 * (cpu1[c] - cpu0[c]) / r.idle_window_s);
  }
  r.self_idle_cpu_percent = 100.0 * (self1 - self0) / r.idle_window_s;
  r.machine_idle_cpu_percent = 100.0 * (machine1 - machine0) / r.idle_window_s;
  r.rss_idle_mb = rss_of_cores();

  auto sum = [](const std::vector<double>& v) {
    double total = 0;
    for (double x : v) total += x;
    return total;
  };
  const double fan_cpu0 = sum(cpu_of_cores());
  const double fan_self0 = CpuSeconds("self");
  for (int i = 0; i < opt.fanouts; ++i) {
    std::fprintf(stderr, "fleet_sim: %s: fan-out %d of %d\n", mode.c_str(),
                 i + 1, opt.fanouts);
    double ms = 0;
    // Through each core in turn.
    jobs.push_back(FanOut(clients[i % r.fanout_cores].get(), opt.peripheries,
                          &ms, &error));
    if (!error.empty()) {
      shutdown();
      return fail(error);
    }
    r.fanout_ms.push_back(ms);
  }
  r.core_cpu_per_fanout_s = (sum(cpu_of_cores()) - fan_cpu0) / opt.fanouts;
  r.self_cpu_per_fanout_s = (CpuSeconds("self") - fan_self0) / opt.fanouts;
  r.rss_end_mb = rss_of_cores();
  r.retries = fleet->retries();
  r.shed = fleet->shed();
  if (r.retries > 0) {
    std::fprintf(stderr, "fleet_sim: %s: %llu retries; the first because %s\n",
                 mode.c_str(), static_cast<unsigned long long>(r.retries),
                 fleet->first_retry_reason().c_str());
  }
  r.heartbeats = fleet->heartbeats();
  r.load_after = LoadAverage();
  std::string bad = fleet->CheckExecutions(jobs);
  if (bad.empty() && fleet->errors() > 0) {
    bad = absl::StrCat(fleet->errors(),
                       " error(s); first: ", fleet->first_error());
  }
  if (bad.empty() && !cores.Running()) bad = "core died";
  clients.clear();
  shutdown();
  for (int c = 0; c < n_cores; ++c)
    r.core_log_bytes.push_back(cores.LogBytes(c));
  collect_warnings();
  cores.Stop();
  if (!bad.empty()) return fail(bad);
  r.ok = true;
  return r;
}

double Max(const std::vector<double>& v) {
  return v.empty() ? kNotMeasured : *std::max_element(v.begin(), v.end());
}
double Min(const std::vector<double>& v) {
  return v.empty() ? kNotMeasured : *std::min_element(v.begin(), v.end());
}
// v[i], or kNotMeasured.
double At(const std::vector<double>& v, size_t i) {
  return i < v.size() ? v[i] : kNotMeasured;
}
double Sum(const std::vector<double>& v) {
  double total = 0;
  for (double x : v) total += x;
  return total;
}

void Report(const Options& opt, const std::vector<ModeResult>& results) {
  const bool replicas = opt.replicas > 1;
  if (replicas) {
    std::printf(
        "### Fleet scale over %d core replicas: %d simulated peripheries in "
        "one process (fleet_sim --replicas %d)\n\n",
        opt.replicas, opt.peripheries, opt.replicas);
    std::printf(
        "%d real varan-core replicas on one new database of %s, each with "
        "its own data directory, port and --replica-address (the fleet "
        "re-read every second). Simulated periphery i connects to replica i "
        "mod "
        "%d only (as if a load balancer had spread them); registration is "
        "timed until every replica lists all of them online. Fan-outs: the "
        "first through each replica in turn (for each, a third of the "
        "targets are its own and the rest held by the other replicas, "
        "reached through them: tunnel mode relays through the replica "
        "holding the tunnel, dial mode dials directly), then the measured "
        "ones round robin over the replicas. The rest as below for one "
        "core.\n\n",
        opt.replicas, opt.postgres_label.c_str(), opt.replicas);
  } else {
    std::printf(
        "### Fleet scale: %d simulated peripheries in one process "
        "(fleet_sim)\n\n",
        opt.peripheries);
  }
  std::printf(
      "A real varan-core (--heartbeat-interval 5%s%s) and one fleet_sim "
      "process simulating every periphery: each registers with the join "
      "token (at most %d registrations in flight), heartbeats every 5 s and "
      "answers every execution at once (started, one line of output, exit "
      "0). Tunnel: one Registry.Connect stream per periphery, each on its "
      "own channel and TCP connection. Dial: each periphery advertises its "
      "own loopback address 127.a.b.c:P, so core dials N channels (one "
      "connection each); one Agent server in fleet_sim tells them apart by "
      "the credential core presents; registrations and heartbeats go %s. "
      "Fan-out: CoreClient::Exec of `true` with a selector matching all, "
      "from the request to job_finished; every target must succeed and "
      "every periphery run exactly its executions. Idle: core's CPU over "
      "%.0f s of heartbeats only (after one fan-out, so core holds its "
      "channels), as a share of one core.\n\n",
      opt.core_args.empty() ? "" : ", ",
      absl::StrJoin(opt.core_args, " ").c_str(), opt.register_window,
      opt.dial_channels == opt.peripheries
          ? "over a channel (connection) of each periphery's own, as real "
            "peripheries"
          : absl::StrFormat(
                "over %d channels (connections) the peripheries share: the "
                "file descriptor limit (RLIMIT_NOFILE %llu, a hard limit "
                "this process cannot raise) cannot hold 2 connections per "
                "periphery in core and here, so core's side of the "
                "heartbeats costs less in connections than it would with "
                "real peripheries",
                opt.dial_channels, static_cast<unsigned long long>(FileLimit()))
                .c_str(),
      opt.idle_seconds);
  std::printf("| measure | goal |");
  for (const auto& r : results) {
    std::printf(" %s%s | ratio to goal |", r.mode.c_str(),
                r.ok ? "" : " (FAILED, see below)");
  }
  std::printf("\n|---|---|");
  for (size_t i = 0; i < results.size(); ++i) std::printf("---|---|");
  std::printf("\n");
  auto row = [&](const char* name, const char* goal, double goal_value,
                 auto value, const char* fmt) {
    std::printf("| %s | %s |", name, goal);
    for (const auto& r : results) {
      double v = value(r);
      if (std::isnan(v)) {
        std::printf(" %s | |", r.ok ? "n/a" : "not reached");
        continue;
      }
      std::printf(" %s |", absl::StrFormat(fmt, v).c_str());
      if (goal_value > 0) {
        std::printf(" %.2fx |", v / goal_value);
      } else {
        std::printf(" |");
      }
    }
    std::printf("\n");
  };
  row(
      replicas ? "all registered and listed online by every replica"
               : "all registered and listed online",
      "<= 10 s", 10, [](const ModeResult& r) { return r.register_s; },
      "%.2f s");
  if (replicas) {
    row(
        "all registered and listed online by the first replica", "", 0,
        [](const ModeResult& r) { return r.register_first_s; }, "%.2f s");
  }
  row(
      replicas ? "core RSS, idle (all registered, after one fan-out), the "
                 "largest replica"
               : "core RSS, idle (all registered, after one fan-out)",
      "<= 400 MB", 400, [](const ModeResult& r) { return Max(r.rss_idle_mb); },
      "%.0f MB");
  row(
      replicas ? "core CPU, idle heartbeating, the busiest replica"
               : "core CPU, idle heartbeating",
      "<= 10% of one core", 10,
      [](const ModeResult& r) { return Max(r.idle_cpu_percent); }, "%.1f%%");
  row(
      "fan-out to all, median", replicas ? "<= 3 s" : "<= 2 s",
      replicas ? 3000 : 2000,
      [](const ModeResult& r) {
        return r.fanout_ms.empty() ? kNotMeasured : Median(r.fanout_ms);
      },
      "%.0f ms");
  row(
      "fan-out to all, min", "", 0,
      [](const ModeResult& r) { return Min(r.fanout_ms); }, "%.0f ms");
  row(
      "fan-out to all, max", "", 0,
      [](const ModeResult& r) { return Max(r.fanout_ms); }, "%.0f ms");
  row(
      replicas ? "first fan-out, through replica 1"
               : "first fan-out (dial: core connects to each periphery)",
      "", 0, [](const ModeResult& r) { return At(r.first_fanout_ms, 0); },
      "%.0f ms");
  row(
      replicas ? "cores' CPU per measured fan-out, all replicas together"
               : "core CPU per measured fan-out",
      "", 0, [](const ModeResult& r) { return r.core_cpu_per_fanout_s; },
      "%.2f s");
  row(
      "this process's CPU per measured fan-out", "", 0,
      [](const ModeResult& r) { return r.self_cpu_per_fanout_s; }, "%.2f s");
  row(
      replicas ? "core RSS right after registration, the largest replica"
               : "core RSS right after registration",
      "", 0, [](const ModeResult& r) { return Max(r.rss_registered_mb); },
      "%.0f MB");
  row(
      replicas ? "core RSS after the fan-outs, the largest replica"
               : "core RSS after the fan-outs",
      "", 0, [](const ModeResult& r) { return Max(r.rss_end_mb); }, "%.0f MB");
  row(
      "this process's CPU, idle (all simulated peripheries)", "", 0,
      [](const ModeResult& r) { return r.self_idle_cpu_percent; }, "%.1f%%");
  row(
      "registration retries (refused or broken, retried with backoff)", "", 0,
      [](const ModeResult& r) {
        return r.ok ? static_cast<double>(r.retries) : kNotMeasured;
      },
      "%.0f");
  row(
      "of which refused by core's load shedding (retried after its hint)", "",
      0,
      [](const ModeResult& r) {
        return r.ok ? static_cast<double>(r.shed) : kNotMeasured;
      },
      "%.0f");
  row(
      replicas ? "core log written, all replicas together" : "core log written",
      "", 0,
      [](const ModeResult& r) {
        double bytes = 0;
        for (size_t b : r.core_log_bytes) bytes += static_cast<double>(b);
        return r.core_log_bytes.empty() ? kNotMeasured : bytes / 1e6;
      },
      "%.2f MB");
  if (replicas) {
    row(
        "cores' CPU, idle, all replicas together", "", 0,
        [](const ModeResult& r) {
          return r.idle_cpu_percent.empty() ? kNotMeasured
                                            : Sum(r.idle_cpu_percent);
        },
        "%.1f%%");
    row(
        "machine CPU, idle (every process: the replicas, PostgreSQL, this "
        "one, other users')",
        "", 0, [](const ModeResult& r) { return r.machine_idle_cpu_percent; },
        "%.1f%%");
    for (int c = 0; c < opt.replicas; ++c) {
      const size_t i = static_cast<size_t>(c);
      auto label = [c](const char* what) {
        return absl::StrCat("replica ", c + 1, ": ", what);
      };
      row(
          label("RSS, idle").c_str(), "", 0,
          [i](const ModeResult& r) { return At(r.rss_idle_mb, i); }, "%.0f MB");
      row(
          label("CPU, idle heartbeating").c_str(), "", 0,
          [i](const ModeResult& r) { return At(r.idle_cpu_percent, i); },
          "%.1f%%");
      row(
          label("RSS after the fan-outs").c_str(), "", 0,
          [i](const ModeResult& r) { return At(r.rss_end_mb, i); }, "%.0f MB");
      row(
          label("first fan-out through it").c_str(), "", 0,
          [i](const ModeResult& r) { return At(r.first_fanout_ms, i); },
          "%.0f ms");
    }
  }
  std::printf(
      "\nFan-outs measured: %d per mode (after the first). Load "
      "average before / after each mode:",
      opt.fanouts);
  for (const auto& r : results) {
    std::printf(" %s %s / %s;", r.mode.c_str(), r.load_before.c_str(),
                r.load_after.empty() ? "(failed before the end)"
                                     : r.load_after.c_str());
  }
  std::printf("\n\n");
  for (const auto& r : results) {
    if (r.fanout_cores >= opt.replicas) continue;
    std::printf(
        "%s mode: the fan-outs went through %d of the %d replicas only. "
        "Each replica that fans out connects to every dialed periphery "
        "itself, so this one process would accept %d connections per such "
        "replica, and RLIMIT_NOFILE (%llu, a hard limit this process cannot "
        "raise) holds %d such replica(s): the other replicas' first fan-out "
        "is not measured.\n\n",
        r.mode.c_str(), r.fanout_cores, opt.replicas, opt.peripheries,
        static_cast<unsigned long long>(FileLimit()), r.fanout_cores);
  }
  for (const auto& r : results) {
    if (!r.ok)
      std::printf("**%s mode FAILED: %s**\n\n", r.mode.c_str(),
                  r.failure.c_str());
  }
  for (const auto& r : results) {
    if (r.warnings.empty()) continue;
    std::printf(
        "%s mode: log lines at warn or error (the first few of each "
        "replica):\n\n",
        r.mode.c_str());
    for (const auto& line : r.warnings) std::printf("    %s\n", line.c_str());
    std::printf("\n");
  }
}

// Replicas against one core, mode by mode: `peers[i]` and `results[i]` ran
// the same mode.
void ReportPeer(const Options& opt, const std::vector<ModeResult>& peers,
                const std::vector<ModeResult>& results) {
  std::printf(
      "### Fleet scale: %d replicas against one core, same run (fleet_sim "
      "--replicas %d)\n\n",
      opt.replicas, opt.replicas);
  std::printf(
      "The peer: one varan-core on SQLite (core's default, as in fleet "
      "scale above), the same %d simulated peripheries and the same "
      "measurements, run just before the replicas in each mode. RSS and "
      "idle CPU of the replicas are given for all of them together and for "
      "the largest or busiest one.\n\n",
      opt.peripheries);
  std::printf("| measure |");
  for (const auto& r : results) {
    std::printf(" %s: one core | %s: %d replicas | replicas / one core |",
                r.mode.c_str(), r.mode.c_str(), opt.replicas);
  }
  std::printf("\n|---|");
  for (size_t i = 0; i < results.size(); ++i) std::printf("---|---|---|");
  std::printf("\n");
  auto row = [&](const char* name, auto one, auto many, const char* fmt) {
    std::printf("| %s |", name);
    for (size_t i = 0; i < results.size(); ++i) {
      const double a = one(peers[i]);
      const double b = many(results[i]);
      auto cell = [fmt](double v) {
        return std::isnan(v) ? std::string("not reached")
                             : absl::StrFormat(fmt, v);
      };
      std::printf(" %s | %s |", cell(a).c_str(), cell(b).c_str());
      if (std::isnan(a) || std::isnan(b) || a == 0) {
        std::printf(" |");
      } else {
        std::printf(" %.2fx |", b / a);
      }
    }
    std::printf("\n");
  };
  auto total = [](const std::vector<double>& v) {
    return v.empty() ? kNotMeasured : Sum(v);
  };
  row(
      "all registered and listed online (by every replica)",
      [](const ModeResult& r) { return r.register_s; },
      [](const ModeResult& r) { return r.register_s; }, "%.2f s");
  row(
      "core RSS, idle: all cores together",
      [&](const ModeResult& r) { return total(r.rss_idle_mb); },
      [&](const ModeResult& r) { return total(r.rss_idle_mb); }, "%.0f MB");
  row(
      "core RSS, idle: the largest core",
      [](const ModeResult& r) { return Max(r.rss_idle_mb); },
      [](const ModeResult& r) { return Max(r.rss_idle_mb); }, "%.0f MB");
  row(
      "core CPU, idle heartbeating: all cores together",
      [&](const ModeResult& r) { return total(r.idle_cpu_percent); },
      [&](const ModeResult& r) { return total(r.idle_cpu_percent); }, "%.1f%%");
  row(
      "core CPU, idle heartbeating: the busiest core",
      [](const ModeResult& r) { return Max(r.idle_cpu_percent); },
      [](const ModeResult& r) { return Max(r.idle_cpu_percent); }, "%.1f%%");
  row(
      "fan-out to all, median",
      [](const ModeResult& r) {
        return r.fanout_ms.empty() ? kNotMeasured : Median(r.fanout_ms);
      },
      [](const ModeResult& r) {
        return r.fanout_ms.empty() ? kNotMeasured : Median(r.fanout_ms);
      },
      "%.0f ms");
  row(
      "first fan-out (through replica 1)",
      [](const ModeResult& r) { return At(r.first_fanout_ms, 0); },
      [](const ModeResult& r) { return At(r.first_fanout_ms, 0); }, "%.0f ms");
  row(
      "cores' CPU per measured fan-out, all together",
      [](const ModeResult& r) { return r.core_cpu_per_fanout_s; },
      [](const ModeResult& r) { return r.core_cpu_per_fanout_s; }, "%.2f s");
  std::printf("\nLoad average before / after the peer:");
  for (const auto& r : peers) {
    std::printf(" %s %s / %s;", r.mode.c_str(), r.load_before.c_str(),
                r.load_after.empty() ? "(failed before the end)"
                                     : r.load_after.c_str());
  }
  std::printf("\n\n");
  for (const auto& r : peers) {
    if (!r.ok) {
      std::printf("**%s mode, one core: FAILED: %s**\n\n", r.mode.c_str(),
                  r.failure.c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Many gRPC clients and a server on the same two cores as core; Abseil's
  // deadlock detector (on in Debian's build) would make this process take
  // CPU from the core it measures (see TOOLCHAIN.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  signal(SIGPIPE, SIG_IGN);
  Options opt;
  bool usage = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      usage = true;
      break;
    }
    const std::string value = argv[++i];
    if (flag == "--mode") {
      opt.mode = value;
    } else if (flag == "--peripheries") {
      opt.peripheries = std::atoi(value.c_str());
    } else if (flag == "--idle-seconds") {
      opt.idle_seconds = std::atof(value.c_str());
    } else if (flag == "--fanouts") {
      opt.fanouts = std::atoi(value.c_str());
    } else if (flag == "--register-window") {
      opt.register_window = std::atoi(value.c_str());
    } else if (flag == "--timeout") {
      opt.timeout = std::atof(value.c_str());
    } else if (flag == "--core-arg") {
      opt.core_args.push_back(value);
    } else if (flag == "--replicas") {
      opt.replicas = std::atoi(value.c_str());
    } else if (flag == "--postgres") {
      opt.postgres = value;
    } else if (flag == "--peer") {
      usage |= value != "yes" && value != "no";
      opt.peer = value == "yes";
    } else {
      usage = true;
    }
  }
  if (usage || opt.peripheries < 1 || opt.fanouts < 1 ||
      opt.register_window < 1 || opt.idle_seconds <= 0 || opt.timeout <= 0 ||
      opt.replicas < 1 ||
      (opt.mode != "both" && opt.mode != "tunnel" && opt.mode != "dial") ||
      opt.peripheries > 250 * 250 * 250) {
    std::fprintf(stderr,
                 "usage: fleet_sim [--mode tunnel|dial|both] [--peripheries "
                 "N] [--idle-seconds S] [--fanouts N] [--register-window N] "
                 "[--timeout S] [--core-arg ARG]... [--replicas N] "
                 "[--postgres URL] [--peer yes|no]\n");
    return 2;
  }
  // Core and this process each hold a connection per periphery, and in
  // dial mode a second one (core's call to it) if every periphery also has
  // a connection of its own to core; plus room for connections coming and
  // going. Where the hard limit does not allow that (20,000 on the machine
  // this was written on, which root cannot raise in its container), dialed
  // peripheries share a pool of channels to core for registrations and
  // heartbeats, and the report says so.
  const rlim_t n = static_cast<rlim_t>(opt.peripheries);
  const rlim_t limit = RaiseFileLimit(3 * n + 4096);
  if (limit < n + 4096) {
    std::fprintf(stderr,
                 "fleet_sim: warning: RLIMIT_NOFILE is %llu, too few for %d "
                 "peripheries (%llu wanted)\n",
                 static_cast<unsigned long long>(limit), opt.peripheries,
                 static_cast<unsigned long long>(n + 4096));
  }
  opt.dial_channels = limit >= 2 * n + 4096
                          ? opt.peripheries
                          : std::min(opt.peripheries, kDialChannelPool);
  BenchPostgres pg;
  if (opt.replicas > 1) {
    if (absl::Status s = pg.Open(opt.postgres); !s.ok()) {
      std::fprintf(stderr, "fleet_sim: %s\n", s.ToString().c_str());
      return 1;
    }
    opt.postgres_label = pg.Describe();
  }
  std::vector<ModeResult> results, peers;
  Options one_core = opt;
  one_core.replicas = 1;
  for (const std::string mode : {"tunnel", "dial"}) {
    if (opt.mode != "both" && opt.mode != mode) continue;
    // The peer first, then the replicas, mode by mode: load from elsewhere
    // falls on both alike.
    if (opt.replicas > 1 && opt.peer) {
      std::fprintf(stderr, "fleet_sim: %s: the peer, one core\n", mode.c_str());
      peers.push_back(RunMode(mode, one_core, &pg));
    }
    results.push_back(RunMode(mode, opt, &pg));
    for (const ModeResult* r :
         {&results.back(), peers.empty() ? nullptr : &peers.back()}) {
      if (r != nullptr && !r->ok) {
        std::fprintf(stderr, "fleet_sim: %s mode failed: %s\n", mode.c_str(),
                     r->failure.c_str());
      }
    }
  }
  Report(opt, results);
  if (!peers.empty()) ReportPeer(opt, peers, results);
  for (const auto& r : results) {
    if (!r.ok) return 1;
  }
  for (const auto& r : peers) {
    if (!r.ok) return 1;
  }
  return 0;
}
