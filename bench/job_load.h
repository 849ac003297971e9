// What the jobs-per-second benchmarks share (core_bench --bench jobs,
// replica_bench --bench jobs): simulated dial-mode peripheries whose
// Agent.Execute answers `started` then `exited 0` at once, their
// registration and heartbeats, and a client keeping a window of
// Jobs.Dispatch calls in flight. With several core addresses, peripheries
// and channels are spread over them round robin.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/core_client.h"
#include "grpcpp/grpcpp.h"
#include "varan/v1/core.grpc.pb.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::bench {

// Agent.Execute of a simulated periphery: `started` (pid 1), then `exited`
// with code 0, then the end of the call. Checks nothing; deletes itself.
class InstantExecution final
    : public grpc::ServerWriteReactor<varan::v1::ExecuteEvent> {
 public:
  InstantExecution() {
    started_.mutable_started()->set_pid(1);
    exited_.mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
    StartWrite(&started_);
  }

  void OnWriteDone(bool ok) override {
    if (exit_sent_) return;
    exit_sent_ = true;
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
      return;
    }
    StartWriteAndFinish(&exited_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void OnDone() override { delete this; }

 private:
  varan::v1::ExecuteEvent started_;
  varan::v1::ExecuteEvent exited_;
  bool exit_sent_ = false;  // reactions of one call do not overlap
};

class SimAgent final : public varan::v1::Agent::CallbackService {
 public:
  grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext* /*context*/,
      const varan::v1::ExecuteRequest* /*request*/) override {
    executions_.fetch_add(1, std::memory_order_relaxed);
    return new InstantExecution();
  }

  uint64_t executions() const {
    return executions_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<uint64_t> executions_{0};
};

// One simulated periphery: its own Agent server on [::1]:<port>, and what
// core returned when it registered.
struct SimPeriphery {
  std::string name;
  SimAgent agent;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::string id;
  std::string credential;
};

// A simulated periphery named `name` serving its Agent on [::1] (a port of
// its own); null when it cannot serve.
std::unique_ptr<SimPeriphery> StartSimPeriphery(const std::string& name);

// Registers every periphery of `sims` with core and heartbeats them at the
// interval core asks for until destroyed.
class SimFleet {
 public:
  // Periphery i registers and heartbeats with core_addresses[i % size].
  SimFleet(const std::vector<std::string>& core_addresses,
           std::string join_token,
           std::vector<std::unique_ptr<SimPeriphery>>* sims)
      : join_token_(std::move(join_token)), sims_(sims) {
    for (const auto& address : core_addresses) {
      registries_.push_back(varan::v1::Registry::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
    }
  }

  ~SimFleet() {
    stop_.Notify();
    if (heartbeats_.joinable()) heartbeats_.join();
  }

  // Registers and sends each one first heartbeat, then starts heartbeating.
  bool Start() {
    for (size_t i = 0; i < sims_->size(); ++i) {
      SimPeriphery* sim = (*sims_)[i].get();
      grpc::ClientContext ctx;
      ctx.AddMetadata("authorization", "Bearer " + join_token_);
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
      varan::v1::RegisterRequest req;
      req.set_name(sim->name);
      (*req.mutable_labels())["bench"] = "sim";
      req.set_advertise_address(absl::StrCat("[::1]:", sim->port));
      req.set_version("bench");
      varan::v1::RegisterResponse resp;
      grpc::Status s = Stub(i)->Register(&ctx, req, &resp);
      if (!s.ok()) {
        std::fprintf(stderr, "bench: Register %s: %s\n", sim->name.c_str(),
                     s.error_message().c_str());
        return false;
      }
      sim->id = resp.periphery_id();
      sim->credential = resp.credential();
      interval_ = absl::Seconds(resp.heartbeat_interval().seconds()) +
                  absl::Nanoseconds(resp.heartbeat_interval().nanos());
      if (!Heartbeat(i)) return false;
    }
    heartbeats_ = std::thread([this] {
      while (!stop_.WaitForNotificationWithTimeout(interval_)) {
        for (size_t i = 0; i < sims_->size(); ++i) Heartbeat(i);
      }
    });
    return true;
  }

 private:
  varan::v1::Registry::Stub* Stub(size_t i) {
    return registries_[i % registries_.size()].get();
  }

  bool Heartbeat(size_t i) {
    const SimPeriphery& sim = *(*sims_)[i];
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + sim.credential);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    varan::v1::HeartbeatRequest req;
    req.set_periphery_id(sim.id);
    varan::v1::HeartbeatResponse resp;
    grpc::Status s = Stub(i)->Heartbeat(&ctx, req, &resp);
    if (!s.ok()) {
      std::fprintf(stderr, "bench: Heartbeat %s: %s\n", sim.name.c_str(),
                   s.error_message().c_str());
    }
    return s.ok();
  }

  std::vector<std::unique_ptr<varan::v1::Registry::Stub>> registries_;
  const std::string join_token_;
  std::vector<std::unique_ptr<SimPeriphery>>* const sims_;
  absl::Duration interval_ = absl::Seconds(10);
  absl::Notification stop_;
  std::thread heartbeats_;
};

// Keeps `window` Jobs.Dispatch calls in flight over `channels` channels (one
// TCP connection each; channel c to core_addresses[c % size]) until Stop();
// each answer starts the next call from gRPC's callback thread. Thread-safe
// counters.
class DispatchLoad {
 public:
  DispatchLoad(const std::vector<std::string>& core_addresses,
               std::string admin_token,
               std::vector<varan::v1::DispatchRequest> requests, int channels,
               int window)
      : token_(std::move(admin_token)), requests_(std::move(requests)) {
    for (int c = 0; c < channels; ++c) {
      grpc::ChannelArguments args;
      args.SetInt("varan.bench.channel", c);  // a connection of its own
      stubs_.push_back(varan::v1::Jobs::NewStub(grpc::CreateCustomChannel(
          core_addresses[static_cast<size_t>(c) % core_addresses.size()],
          grpc::InsecureChannelCredentials(), args)));
    }
    for (int i = 0; i < window; ++i) {
      slots_.push_back(std::make_unique<Slot>());
      slots_.back()->stub = stubs_[i % channels].get();
    }
  }

  ~DispatchLoad() {
    Stop();
    WaitIdle();
  }

  void Start() {
    {
      absl::MutexLock lock(&mu_);
      in_flight_ += static_cast<int>(slots_.size());
    }
    // Not under mu_: gRPC may run a callback inline.
    for (auto& slot : slots_) Issue(slot.get());
  }

  // No new call starts after this.
  void Stop() { stopping_.store(true); }

  // Waits until no call is in flight.
  void WaitIdle() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* n) { return *n == 0; }, &in_flight_));
  }

  uint64_t acked() const { return acked_.load(); }
  uint64_t failed() const { return failed_.load(); }
  std::string first_error() {
    absl::MutexLock lock(&mu_);
    return first_error_;
  }
  // Every 997th job id acknowledged, to spot-check.
  std::vector<std::string> sample_ids() {
    absl::MutexLock lock(&mu_);
    return sample_ids_;
  }

 private:
  struct Slot {
    varan::v1::Jobs::Stub* stub = nullptr;
    std::unique_ptr<grpc::ClientContext> context;
    varan::v1::DispatchResponse response;
  };

  void Issue(Slot* slot) {
    const uint64_t n = issued_.fetch_add(1);
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->AddMetadata("authorization", "Bearer " + token_);
    slot->context->set_deadline(std::chrono::system_clock::now() +
                                std::chrono::seconds(10));
    slot->response.Clear();
    slot->stub->async()->Dispatch(
        slot->context.get(), &requests_[n % requests_.size()], &slot->response,
        [this, slot](grpc::Status status) {
          if (status.ok()) {
            uint64_t acked = acked_.fetch_add(1) + 1;
            if (acked % 997 == 0) {
              absl::MutexLock lock(&mu_);
              sample_ids_.push_back(slot->response.job_id());
            }
          } else {
            failed_.fetch_add(1);
            absl::MutexLock lock(&mu_);
            if (first_error_.empty()) first_error_ = status.error_message();
          }
          if (!stopping_.load() && status.ok()) {
            Issue(slot);  // the context of the call that ended is dropped
            return;
          }
          absl::MutexLock lock(&mu_);
          --in_flight_;
        });
  }

  const std::string token_;
  const std::vector<varan::v1::DispatchRequest> requests_;
  std::vector<std::unique_ptr<varan::v1::Jobs::Stub>> stubs_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> issued_{0};
  std::atomic<uint64_t> acked_{0};
  std::atomic<uint64_t> failed_{0};
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> sample_ids_ ABSL_GUARDED_BY(mu_);
};

// Jobs in any of `states` (all when empty), counted page by page (1,000 a
// page, stopping once `stop_after` >= 0 are counted); -1 on error.
int64_t CountJobs(varan::client::CoreClient* client,
                  const std::vector<varan::v1::JobState>& states,
                  int64_t stop_after = -1);

}  // namespace varan::bench
