#include "periphery/server/agent_service.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/address.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "periphery/host/facts.h"

namespace varan::periphery {

using varan::v1::ExecuteEvent;

// Streams one Execution's events. Lives from Execute() until OnDone().
class AgentService::ExecuteReactor final
    : public grpc::ServerWriteReactor<ExecuteEvent> {
 public:
  ExecuteReactor(AgentService* service, std::string execution_id)
      : service_(service), execution_id_(std::move(execution_id)) {}

  // Starts streaming from `execution` (null when `error` says why not).
  void Begin(std::shared_ptr<Execution> execution, grpc::Status error) {
    if (!error.ok()) {
      Finish(error);
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      execution_ = std::move(execution);
    }
    TryWrite();
  }

  // The caller is gone: stop the command unless it asked to survive that.
  void CallerGone() {
    std::shared_ptr<Execution> e;
    {
      absl::MutexLock lock(&mu_);
      e = execution_;
    }
    if (e) e->CallerGone();
  }

  void OnWriteDone(bool ok) override {
    bool finish_now = false;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok && current_.has_exited()) exited_written_ = true;
      if (!ok && !finished_) {
        finished_ = true;
        finish_now = true;
      }
    }
    if (finish_now) {
      // The stream broke: the caller is gone.
      CallerGone();
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    if (ok) TryWrite();
  }

  void OnCancel() override {
    spdlog::info("execution {}: caller went away", execution_id_);
    CallerGone();
  }

  void OnDone() override {
    std::shared_ptr<Execution> e;
    bool delivered;
    {
      absl::MutexLock lock(&mu_);
      e = execution_;
      delivered = exited_written_;
    }
    if (e) {
      e->CallerGone();  // no effect if it already exited
      e->events().Abandon();
      service_->executor_->Detached(execution_id_, delivered);
    }
    service_->OnExecutionDone(this);
    delete this;
  }

 private:
  // Writes the next event if none is in flight, or arranges to be called
  // again when one is queued. Never blocks.
  void TryWrite() {
    EventQueue::PopResult result;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || execution_ == nullptr) return;
      result = execution_->events().TryPop(&current_, [this] { TryWrite(); });
      if (result == EventQueue::PopResult::kItem) writing_ = true;
      if (result == EventQueue::PopResult::kDrained) finished_ = true;
    }
    switch (result) {
      case EventQueue::PopResult::kItem:
        if (current_.has_exited()) {
          spdlog::info("execution {}: finished ({})", execution_id_,
                       current_.exited().ShortDebugString());
        }
        StartWrite(&current_);
        return;
      case EventQueue::PopResult::kDrained:
        Finish(grpc::Status::OK);
        return;
      case EventQueue::PopResult::kEmpty:
        return;
    }
  }

  AgentService* const service_;
  const std::string execution_id_;
  absl::Mutex mu_;
  std::shared_ptr<Execution> execution_ ABSL_GUARDED_BY(mu_);
  ExecuteEvent current_;  // owned by the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool exited_written_ ABSL_GUARDED_BY(mu_) = false;
};

AgentService::AgentService(const CredentialHolder* credential,
                           const HostSnapshot* host, Executor* executor,
                           PeerGuard* guard)
    : credential_(credential),
      host_(host),
      executor_(executor),
      guard_(guard) {}

namespace {

// How long a verified chain of core's is taken without verifying it again
// (its expiry is thus noticed up to this late).
constexpr absl::Duration kVerifiedFor = absl::Minutes(1);

}  // namespace

grpc::Status AgentService::Authenticate(
    const grpc::CallbackServerContext& context) const {
  const std::string peer = NormalizePeerAddress(context.peer());
  if (guard_ != nullptr) {
    if (absl::Status s = guard_->Admit(peer); !s.ok()) {
      return ToGrpcStatus(s);
    }
  }
  if (credential_->Get().empty()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "periphery is not registered with core yet");
  }
  if (core_pins_ != nullptr) {
    // Core's certificate of the pinned CA is the authentication: core
    // keeps only a hash of this periphery's credential.
    const std::string chain = PeerCertificateChain(context);
    const absl::Time now = absl::Now();
    {
      // The chain core's connection presents was verified lately: every
      // call on that connection presents the same one.
      absl::MutexLock lock(&verified_mu_);
      if (!chain.empty() && chain == verified_chain_ && now < verified_until_) {
        return grpc::Status::OK;
      }
    }
    absl::Status s =
        chain.empty()
            ? absl::UnauthenticatedError("the caller presented no certificate")
            : pki::VerifyPinned(chain, core_pins_->Get(), pki::kCoreName, now,
                                pki::Usage::kClientAuth);
    if (s.ok()) {
      absl::MutexLock lock(&verified_mu_);
      verified_chain_ = chain;
      verified_until_ = now + kVerifiedFor;
      return grpc::Status::OK;
    }
    if (guard_ != nullptr) guard_->RecordFailure(peer);
    spdlog::warn("refused a call from {}: not core: {}", peer, s.message());
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("only core may call: ", s.message()));
  }
  absl::string_view got = BearerToken(context);
  if (got.empty() || !SecretEquals(got, credential_->Get())) {
    if (guard_ != nullptr) guard_->RecordFailure(peer);
    spdlog::warn("refused a call from {}: missing or wrong credential", peer);
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing or wrong periphery credential");
  }
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<ExecuteEvent>* AgentService::Execute(
    grpc::CallbackServerContext* context,
    const varan::v1::ExecuteRequest* request) {
  auto* reactor = new ExecuteReactor(this, request->execution_id());
  grpc::Status auth = Authenticate(*context);
  if (!auth.ok()) {
    reactor->Begin(nullptr, auth);
    return reactor;
  }
  {
    absl::MutexLock lock(&mu_);
    running_.insert(reactor);
  }
  auto execution = executor_->Start(*request);
  if (!execution.ok()) {
    reactor->Begin(nullptr, ToGrpcStatus(execution.status()));
    return reactor;
  }
  spdlog::info("execution {}: started", request->execution_id());
  reactor->Begin(*std::move(execution), grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Cancel(
    grpc::CallbackServerContext* context,
    const varan::v1::CancelRequest* request, varan::v1::CancelResponse*) {
  auto* reactor = context->DefaultReactor();
  grpc::Status auth = Authenticate(*context);
  if (!auth.ok()) {
    reactor->Finish(auth);
    return reactor;
  }
  absl::Status s = executor_->Cancel(request->execution_id());
  if (s.ok()) {
    spdlog::info("execution {}: cancel requested", request->execution_id());
  }
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::GetFacts(
    grpc::CallbackServerContext* context, const varan::v1::GetFactsRequest*,
    varan::v1::HostFacts* response) {
  auto* reactor = context->DefaultReactor();
  grpc::Status auth = Authenticate(*context);
  if (auth.ok()) *response = host_->facts();
  reactor->Finish(auth);
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::GetStats(
    grpc::CallbackServerContext* context, const varan::v1::GetStatsRequest*,
    varan::v1::HostStats* response) {
  auto* reactor = context->DefaultReactor();
  grpc::Status auth = Authenticate(*context);
  if (auth.ok()) {
    // The sample of the latest heartbeat; reading /proc here would block
    // the reaction.
    *response = host_->Latest();
    response->set_running_executions(running());
  }
  reactor->Finish(auth);
  return reactor;
}

uint32_t AgentService::running() { return executor_->running(); }

void AgentService::OnExecutionDone(ExecuteReactor* reactor) {
  absl::MutexLock lock(&mu_);
  running_.erase(reactor);
}

bool AgentService::CancelAllAndWait(absl::Duration timeout) {
  executor_->CancelAll();
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(this, &AgentService::NoneRunning),
                              timeout);
}

}  // namespace varan::periphery
