// FakeLinks: a LinkProvider for core's unit tests. Every Execute call the
// dispatcher makes is recorded as a FakeCall, and the test plays the
// periphery through it (started, output, exit, a broken call). The links
// own their calls; single test thread, with a mutex only because the
// dispatcher may call Execute on another thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/link/periphery_link.h"

namespace varan::core {

// One Execute call the dispatcher made; the test plays the periphery.
struct FakeCall final : public ExecuteCall {
  std::string periphery_id;
  varan::v1::ExecuteRequest request;
  ExecuteObserver* observer = nullptr;
  bool canceled = false;
  bool aborted = false;
  bool done = false;

  void Cancel() override { canceled = true; }
  void Abort() override { aborted = true; }

  void Start(int pid) {
    varan::v1::ExecuteEvent ev;
    ev.mutable_started()->set_pid(pid);
    observer->OnEvent(ev);
  }
  void Output(const std::string& data) {
    varan::v1::ExecuteEvent ev;
    ev.mutable_output()->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
    ev.mutable_output()->set_data(data);
    observer->OnEvent(ev);
  }
  void Exit(varan::v1::ExitStatus::Kind kind, int code = 0) {
    varan::v1::ExecuteEvent ev;
    ev.mutable_exited()->set_kind(kind);
    ev.mutable_exited()->set_code(code);
    observer->OnEvent(ev);
    End(absl::OkStatus());
  }
  void End(const absl::Status& status) {
    done = true;
    observer->OnDone(status);
  }
};

class FakeLinks final : public LinkProvider {
 public:
  class Link final : public PeripheryLink {
   public:
    Link(FakeLinks* links, std::string id)
        : links_(links), id_(std::move(id)) {}
    ExecuteCall* Execute(const varan::v1::ExecuteRequest& request,
                         ExecuteObserver* observer) override {
      auto call = std::make_unique<FakeCall>();
      call->periphery_id = id_;
      call->request = request;
      call->observer = observer;
      FakeCall* raw = call.get();
      absl::MutexLock lock(&links_->mu_);
      links_->calls_.push_back(std::move(call));
      return raw;
    }

   private:
    FakeLinks* const links_;
    const std::string id_;
  };

  std::shared_ptr<PeripheryLink> LinkFor(const std::string& id,
                                         const std::string&,
                                         const std::string&) override {
    return std::make_shared<Link>(this, id);
  }

  // Calls made so far, in order.
  std::vector<FakeCall*> calls() {
    absl::MutexLock lock(&mu_);
    std::vector<FakeCall*> out;
    for (auto& c : calls_) out.push_back(c.get());
    return out;
  }
  // The target name of each call ("<job>/<name>").
  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (FakeCall* c : calls()) {
      const std::string& id = c->request.execution_id();
      out.push_back(id.substr(id.find('/') + 1));
    }
    return out;
  }
  // Ends every call still open, as a periphery that went away would.
  // Ending one may start another (a queued target): repeat until none is
  // open.
  void EndAll() {
    for (bool ended = true; ended;) {
      ended = false;
      for (FakeCall* c : calls()) {
        if (c->done) continue;
        c->End(absl::CancelledError("test over"));
        ended = true;
      }
    }
  }

 private:
  absl::Mutex mu_;
  std::vector<std::unique_ptr<FakeCall>> calls_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
