#include "core/server/services.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/time_util.h"
#include "varan/version.h"

namespace varan::core {
namespace {

using varan::v1::JobEvent;

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context,
                               const grpc::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

using varan::v1::ROLE_ADMIN;
using varan::v1::ROLE_OPERATOR;
using varan::v1::ROLE_VIEWER;

// An operator's unary call: authenticates with at least role `needed`, then
// answers with what `call(caller)` returns (an absl::StatusOr<Response>).
template <typename Response, typename Call>
grpc::ServerUnaryReactor* OperatorUnary(const Authenticator* auth,
                                        varan::v1::Role needed,
                                        grpc::CallbackServerContext* context,
                                        Response* response, Call call) {
  Caller caller;
  if (grpc::Status s = auth->AuthenticateOperator(*context, needed, &caller);
      !s.ok()) {
    return Done(context, s);
  }
  absl::StatusOr<Response> result = call(caller);
  if (!result.ok()) return Done(context, ToGrpcStatus(result.status()));
  *response = *std::move(result);
  return Done(context, grpc::Status::OK);
}

// Like OperatorUnary for calls that answer later: `call(caller, done)`
// must call `done` (an absl::StatusOr<Response> callback) exactly once, on
// any thread.
template <typename Response, typename Call>
grpc::ServerUnaryReactor* OperatorAsync(const Authenticator* auth,
                                        varan::v1::Role needed,
                                        grpc::CallbackServerContext* context,
                                        Response* response, Call call) {
  Caller caller;
  if (grpc::Status s = auth->AuthenticateOperator(*context, needed, &caller);
      !s.ok()) {
    return Done(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  call(caller, [reactor, response](absl::StatusOr<Response> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    *response = *std::move(result);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

// What an audit line says about a command: the argv or the shell line, and
// the names (never the values) of the environment it sets.
std::string DescribeCommand(const varan::v1::CommandSpec& spec) {
  std::string out;
  if (!spec.shell().empty()) {
    out = absl::StrCat("shell ", absl::CHexEscape(spec.shell()));
  } else {
    std::vector<std::string> words;
    for (const auto& w : spec.argv()) words.push_back(absl::CHexEscape(w));
    out = absl::StrCat("argv [", absl::StrJoin(words, " "), "]");
  }
  if (!spec.env().empty()) {
    std::vector<std::string> names;
    for (const auto& [k, v] : spec.env()) names.push_back(k);
    std::sort(names.begin(), names.end());
    absl::StrAppend(&out, " env {", absl::StrJoin(names, ","), "}");
  }
  return out;
}

std::string DescribeTarget(const varan::v1::Target& target) {
  std::string out = absl::StrCat("selector \"", target.selector(), "\"");
  if (!target.names().empty()) {
    absl::StrAppend(&out, " names [", absl::StrJoin(target.names(), ","), "]");
  }
  return out;
}

void AuditDispatch(const Caller& caller, const std::string& job_id,
                   size_t targets, const varan::v1::DispatchRequest& request) {
  spdlog::info("audit: {} from {} dispatched job {} to {} target(s): {}; {}",
               caller.name, caller.peer, job_id, targets,
               DescribeTarget(request.target()),
               DescribeCommand(request.spec()));
}

// Streams a job's events from a sequence number until the job finishes.
// One write in flight; the job's watcher callback drives writes that were
// waiting for new events. Deletes itself in OnDone.
class JobEventWriter final : public grpc::ServerWriteReactor<JobEvent> {
 public:
  // `job` null means `error` says why nothing is streamed.
  static JobEventWriter* Create(std::shared_ptr<Job> job, uint64_t from,
                                const grpc::Status& error) {
    auto* w = new JobEventWriter(std::move(job), from);
    if (w->job_ == nullptr) {
      w->FinishOnce(error);
      return w;
    }
    w->watcher_ = w->job_->AddWatcher([w] { w->TryWrite(); });
    w->TryWrite();
    return w;
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) ++next_;
    }
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
      return;
    }
    TryWrite();
  }

  void OnCancel() override {
    bool idle;
    {
      absl::MutexLock lock(&mu_);
      idle = !writing_;
    }
    // With a write in flight, OnWriteDone(false) finishes instead.
    if (idle) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
  }

  void OnDone() override {
    if (job_ != nullptr) job_->RemoveWatcher(watcher_);
    delete this;
  }

 private:
  JobEventWriter(std::shared_ptr<Job> job, uint64_t from)
      : job_(std::move(job)), next_(from) {}

  void TryWrite() {
    Job::Read read;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      read = job_->EventAt(next_, &current_);
      if (read == Job::Read::kEvent) writing_ = true;
    }
    if (read == Job::Read::kEvent) {
      StartWrite(current_);
    } else if (read == Job::Read::kEnd) {
      FinishOnce(grpc::Status::OK);
    }
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  const std::shared_ptr<Job> job_;
  uint64_t watcher_ = 0;
  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // The event being written: in the job's log, which job_ keeps alive.
  const JobEvent* current_ = nullptr;
};

}  // namespace

// --- Registry --------------------------------------------------------------

grpc::ServerUnaryReactor* RegistryService::Register(
    grpc::CallbackServerContext* context,
    const varan::v1::RegisterRequest* request,
    varan::v1::RegisterResponse* response) {
  std::string join_token;
  if (grpc::Status s = auth_->AuthenticateJoin(*context, &join_token);
      !s.ok()) {
    return Done(context, s);
  }
  const std::string peer = NormalizePeerAddress(context->peer());
  if (absl::Status shed = Admit("registration"); !shed.ok()) {
    auth_->ReleaseJoin(join_token);
    AddRetryAfterTrailer(shed, context);
    return Done(context, ToGrpcStatus(shed));
  }
  auto reg = fleet_->Register(*request, peer);
  if (!reg.ok()) {
    auth_->ReleaseJoin(join_token);
    spdlog::warn("refused registration of \"{}\" from {}: {}", request->name(),
                 peer, reg.status().message());
    return Done(context, ToGrpcStatus(reg.status()));
  }
  spdlog::info(
      "periphery {} registered from {} with join token {} (id {}, dial {})",
      request->name(), peer, auth_->JoinTokenName(join_token), reg->id,
      request->advertise_address());
  response->set_periphery_id(reg->id);
  response->set_credential(reg->credential);
  SetDuration(fleet_->heartbeat_interval(),
              response->mutable_heartbeat_interval());
  return Done(context, grpc::Status::OK);
}

absl::Status RegistryService::Admit(absl::string_view what) {
  if (admission_ == nullptr) return absl::OkStatus();
  return admission_->Admit(what);
}

absl::StatusOr<varan::v1::HeartbeatResponse> RegistryService::RecordHeartbeat(
    const std::string& id, absl::string_view credential,
    const varan::v1::HeartbeatRequest& request, const std::string& peer) {
  absl::Status s = fleet_->Heartbeat(id, credential, request.stats(), peer);
  if (!s.ok()) return s;
  varan::v1::HeartbeatResponse response;
  SetDuration(fleet_->heartbeat_interval(),
              response.mutable_heartbeat_interval());
  if (!request.executions().empty()) {
    std::vector<std::string> cancel;
    for (auto& ack :
         dispatcher_->OnPeripheryReport(id, request.executions(), &cancel)) {
      response.add_acknowledged(std::move(ack));
    }
    for (auto& c : cancel) response.add_cancel(std::move(c));
  }
  return response;
}

grpc::ServerUnaryReactor* RegistryService::Heartbeat(
    grpc::CallbackServerContext* context,
    const varan::v1::HeartbeatRequest* request,
    varan::v1::HeartbeatResponse* response) {
  if (grpc::Status s = auth_->Admit(*context); !s.ok()) {
    return Done(context, s);
  }
  auto answer =
      RecordHeartbeat(request->periphery_id(), BearerToken(*context), *request,
                      NormalizePeerAddress(context->peer()));
  if (absl::IsUnauthenticated(answer.status()) ||
      absl::IsNotFound(answer.status())) {
    auth_->RecordFailure(*context);
  }
  if (!answer.ok()) return Done(context, ToGrpcStatus(answer.status()));
  *response = *std::move(answer);
  return Done(context, grpc::Status::OK);
}

grpc::ServerBidiReactor<varan::v1::TunnelUp, varan::v1::TunnelDown>*
RegistryService::Connect(grpc::CallbackServerContext* context) {
  return tunnels_->Accept(context, this);
}

absl::StatusOr<TunnelHandler::Opened> RegistryService::Open(
    const grpc::CallbackServerContext& context,
    const varan::v1::TunnelHello& hello) {
  const std::string peer = NormalizePeerAddress(context.peer());
  Opened out;
  SetDuration(fleet_->heartbeat_interval(),
              out.message.mutable_heartbeat_interval());
  if (hello.has_register_()) {
    std::string join_token;
    if (grpc::Status s = auth_->AuthenticateJoin(context, &join_token);
        !s.ok()) {
      return FromGrpcStatus(s);
    }
    if (absl::Status shed = Admit("registration (tunnel)"); !shed.ok()) {
      auth_->ReleaseJoin(join_token);
      return shed;
    }
    auto reg =
        fleet_->Register(hello.register_(), peer, varan::v1::CONNECTION_TUNNEL);
    if (!reg.ok()) {
      auth_->ReleaseJoin(join_token);
      spdlog::warn("refused registration of \"{}\" from {} (tunnel): {}",
                   hello.register_().name(), peer, reg.status().message());
      return reg.status();
    }
    spdlog::info(
        "periphery {} registered from {} with join token {} (id {}, tunnel)",
        hello.register_().name(), peer, auth_->JoinTokenName(join_token),
        reg->id);
    out.message.set_periphery_id(reg->id);
    out.message.set_credential(reg->credential);
    out.credential = reg->credential;
    out.name = hello.register_().name();
    return out;
  }
  if (hello.periphery_id().empty()) {
    return absl::InvalidArgumentError(
        "a tunnel hello needs a registration or a periphery id");
  }
  // Resuming: the credential must be the one core issued, as for Heartbeat
  // (which also says NOT_FOUND for an unknown id, so the periphery registers
  // again).
  if (grpc::Status s = auth_->Admit(context); !s.ok()) {
    return FromGrpcStatus(s);
  }
  const std::string credential(BearerToken(context));
  // Shed only callers that hold a credential: anyone else must not be able
  // to use up the handshakes of the fleet.
  if (absl::Status s =
          fleet_->CheckCredential(hello.periphery_id(), credential);
      !s.ok()) {
    auth_->RecordFailure(context);
    return s;
  }
  if (absl::Status shed = Admit("tunnel"); !shed.ok()) return shed;
  auto first = RecordHeartbeat(hello.periphery_id(), credential,
                               varan::v1::HeartbeatRequest(), peer);
  if (absl::IsUnauthenticated(first.status()) ||
      absl::IsNotFound(first.status())) {
    auth_->RecordFailure(context);
  }
  if (!first.ok()) return first.status();
  out.message.set_periphery_id(hello.periphery_id());
  out.credential = credential;
  out.name = fleet_->NameOf(hello.periphery_id());
  spdlog::info("periphery {} opened a tunnel from {}", out.name, peer);
  return out;
}

absl::StatusOr<varan::v1::HeartbeatResponse> RegistryService::Heartbeat(
    const grpc::CallbackServerContext& context, const std::string& id,
    const std::string& credential, const varan::v1::HeartbeatRequest& request) {
  return RecordHeartbeat(id, credential, request,
                         NormalizePeerAddress(context.peer()));
}

void RegistryService::Closed(const std::string& id, const absl::Status&) {
  spdlog::info("the tunnel of periphery {} closed", fleet_->NameOf(id));
}

// --- Fleet -----------------------------------------------------------------

grpc::ServerUnaryReactor* FleetService::ListPeripheries(
    grpc::CallbackServerContext* context,
    const varan::v1::ListPeripheriesRequest* request,
    varan::v1::ListPeripheriesResponse* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ListPeripheriesResponse> {
        const uint32_t limit =
            request->limit() == 0 ? 500 : std::min(request->limit(), 1000u);
        return fleet_->ListPage(request->target(), request->include_removed(),
                                request->page_token(), limit);
      });
}

grpc::ServerUnaryReactor* FleetService::GetPeriphery(
    grpc::CallbackServerContext* context,
    const varan::v1::GetPeripheryRequest* request,
    varan::v1::Periphery* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) { return fleet_->Get(request->name_or_id()); });
}

grpc::ServerUnaryReactor* FleetService::RemovePeriphery(
    grpc::CallbackServerContext* context,
    const varan::v1::RemovePeripheryRequest* request,
    varan::v1::Periphery* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller& caller) -> absl::StatusOr<varan::v1::Periphery> {
        auto p = fleet_->Remove(request->name_or_id());
        if (p.ok()) {
          spdlog::info("audit: {} from {} removed periphery {}", caller.name,
                       caller.peer, p->name());
        }
        return p;
      });
}

grpc::ServerUnaryReactor* FleetService::UpdateLabels(
    grpc::CallbackServerContext* context,
    const varan::v1::UpdateLabelsRequest* request,
    varan::v1::Periphery* response) {
  return OperatorUnary(
      auth_, ROLE_OPERATOR, context, response,
      [&](const Caller&) { return fleet_->UpdateLabels(*request); });
}

// --- Admin -----------------------------------------------------------------

grpc::ServerUnaryReactor* AdminService::GetInfo(
    grpc::CallbackServerContext* context, const varan::v1::GetInfoRequest*,
    varan::v1::CoreInfo* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::CoreInfo> {
        varan::v1::CoreInfo info;
        info.set_version(kVersion);
        SetTimestamp(start_time_, info.mutable_start_time());
        auto all = fleet_->List(varan::v1::Target());
        if (!all.ok()) return all.status();
        info.set_peripheries(static_cast<uint32_t>(all->size()));
        uint32_t online = 0;
        for (const auto& p : *all) {
          if (p.state() == varan::v1::PERIPHERY_STATE_ONLINE) ++online;
        }
        info.set_peripheries_online(online);
        SetDuration(fleet_->heartbeat_interval(),
                    info.mutable_heartbeat_interval());
        info.set_heartbeat_ttl_intervals(static_cast<uint32_t>(
            fleet_->ttl() / fleet_->heartbeat_interval()));
        if (admission_ != nullptr) {
          info.set_handshakes_shed(admission_->shed());
          info.set_handshake_rate(admission_->options().rate);
          info.set_handshake_burst(admission_->options().burst);
        }
        return info;
      });
}

grpc::ServerUnaryReactor* AdminService::CreateToken(
    grpc::CallbackServerContext* context,
    const varan::v1::CreateTokenRequest* request,
    varan::v1::CreateTokenResponse* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->CreateToken(*request, caller.name,
                                              std::move(done));
                       });
}

grpc::ServerUnaryReactor* AdminService::ListTokens(
    grpc::CallbackServerContext* context,
    const varan::v1::ListTokensRequest* request,
    varan::v1::ListTokensResponse* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ListTokensResponse> {
        varan::v1::ListTokensResponse out;
        for (auto& t : tokens_->ListTokens(request->include_revoked())) {
          *out.add_tokens() = std::move(t);
        }
        return out;
      });
}

grpc::ServerUnaryReactor* AdminService::RevokeToken(
    grpc::CallbackServerContext* context,
    const varan::v1::RevokeTokenRequest* request, varan::v1::Token* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->RevokeToken(request->name_or_id(),
                                              caller.name, std::move(done));
                       });
}

grpc::ServerUnaryReactor* AdminService::CreateJoinToken(
    grpc::CallbackServerContext* context,
    const varan::v1::CreateJoinTokenRequest* request,
    varan::v1::CreateJoinTokenResponse* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->CreateJoinToken(*request, caller.name,
                                                  std::move(done));
                       });
}

grpc::ServerUnaryReactor* AdminService::ListJoinTokens(
    grpc::CallbackServerContext* context,
    const varan::v1::ListJoinTokensRequest* request,
    varan::v1::ListJoinTokensResponse* response) {
  return OperatorUnary(
      auth_, ROLE_ADMIN, context, response,
      [&](const Caller&) -> absl::StatusOr<varan::v1::ListJoinTokensResponse> {
        varan::v1::ListJoinTokensResponse out;
        for (auto& t : tokens_->ListJoinTokens(request->include_revoked())) {
          *out.add_join_tokens() = std::move(t);
        }
        return out;
      });
}

grpc::ServerUnaryReactor* AdminService::RevokeJoinToken(
    grpc::CallbackServerContext* context,
    const varan::v1::RevokeJoinTokenRequest* request,
    varan::v1::JoinToken* response) {
  return OperatorAsync(auth_, ROLE_ADMIN, context, response,
                       [&](const Caller& caller, auto done) {
                         tokens_->RevokeJoinToken(request->name_or_id(),
                                                  caller.name, std::move(done));
                       });
}

// --- Jobs ------------------------------------------------------------------

grpc::ServerUnaryReactor* JobsService::Dispatch(
    grpc::CallbackServerContext* context,
    const varan::v1::DispatchRequest* request,
    varan::v1::DispatchResponse* response) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_OPERATOR, &caller);
      !s.ok()) {
    return Done(context, s);
  }
  // Answer once the job is committed (an id the caller holds survives a core
  // crash) and the response is filled, whichever comes last: the commit
  // callback runs on a store thread, possibly before Dispatch
  // returns here.
  struct Pending {
    grpc::ServerUnaryReactor* reactor;
    absl::Mutex mu;
    int waiting ABSL_GUARDED_BY(mu) = 2;
    grpc::Status status ABSL_GUARDED_BY(mu);
    void Arrive(const grpc::Status* error) {
      grpc::Status finish;
      {
        absl::MutexLock lock(&mu);
        if (error != nullptr) status = *error;
        if (--waiting > 0) return;
        finish = status;
      }
      reactor->Finish(finish);
    }
  };
  auto pending = std::make_shared<Pending>();
  pending->reactor = context->DefaultReactor();
  auto job = dispatcher_->Dispatch(
      *request, caller.name, [pending](const absl::Status& committed) {
        if (committed.ok()) {
          pending->Arrive(nullptr);
          return;
        }
        const grpc::Status error(grpc::StatusCode::UNAVAILABLE,
                                 absl::StrCat("core could not store the job: ",
                                              committed.message()));
        pending->Arrive(&error);
      });
  if (!job.ok()) {
    pending->reactor->Finish(ToGrpcStatus(job.status()));
    return pending->reactor;
  }
  response->set_job_id((*job)->id());
  const varan::v1::Job snapshot = (*job)->Snapshot(/*with_output=*/false);
  for (const auto& t : snapshot.targets()) response->add_targets(t.name());
  AuditDispatch(caller, (*job)->id(), snapshot.targets().size(), *request);
  grpc::ServerUnaryReactor* reactor = pending->reactor;
  pending->Arrive(nullptr);
  return reactor;
}

grpc::ServerWriteReactor<JobEvent>* JobsService::Exec(
    grpc::CallbackServerContext* context,
    const varan::v1::DispatchRequest* request) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_OPERATOR, &caller);
      !s.ok()) {
    return JobEventWriter::Create(nullptr, 0, s);
  }
  auto job = dispatcher_->Dispatch(*request, caller.name);
  if (!job.ok()) {
    return JobEventWriter::Create(nullptr, 0, ToGrpcStatus(job.status()));
  }
  AuditDispatch(caller, (*job)->id(),
                (*job)->Snapshot(/*with_output=*/false).targets().size(),
                *request);
  return JobEventWriter::Create(*std::move(job), 0, grpc::Status::OK);
}

grpc::ServerWriteReactor<JobEvent>* JobsService::WatchJob(
    grpc::CallbackServerContext* context,
    const varan::v1::WatchJobRequest* request) {
  Caller caller;
  if (grpc::Status s =
          auth_->AuthenticateOperator(*context, ROLE_VIEWER, &caller);
      !s.ok()) {
    return JobEventWriter::Create(nullptr, 0, s);
  }
  auto job = dispatcher_->Find(request->job_id());
  if (!job.ok()) {
    return JobEventWriter::Create(nullptr, 0, ToGrpcStatus(job.status()));
  }
  return JobEventWriter::Create(*std::move(job), request->from_sequence(),
                                grpc::Status::OK);
}

grpc::ServerUnaryReactor* JobsService::GetJob(
    grpc::CallbackServerContext* context,
    const varan::v1::GetJobRequest* request, varan::v1::Job* response) {
  return OperatorUnary(auth_, ROLE_VIEWER, context, response,
                       [&](const Caller&) -> absl::StatusOr<varan::v1::Job> {
                         auto job = dispatcher_->Find(request->job_id());
                         if (!job.ok()) return job.status();
                         return (*job)->Snapshot(/*with_output=*/true);
                       });
}

grpc::ServerUnaryReactor* JobsService::ListJobs(
    grpc::CallbackServerContext* context,
    const varan::v1::ListJobsRequest* request,
    varan::v1::ListJobsResponse* response) {
  return OperatorUnary(
      auth_, ROLE_VIEWER, context, response,
      [&](const Caller&) { return dispatcher_->List(*request); });
}

grpc::ServerUnaryReactor* JobsService::CancelJob(
    grpc::CallbackServerContext* context,
    const varan::v1::CancelJobRequest* request, varan::v1::Job* response) {
  return OperatorUnary(
      auth_, ROLE_OPERATOR, context, response, [&](const Caller& caller) {
        auto job = dispatcher_->Cancel(request->job_id(), caller.name);
        if (job.ok()) {
          spdlog::info("audit: {} from {} canceled job {} ({}; {})",
                       caller.name, caller.peer, job->id(),
                       DescribeTarget(job->target()),
                       DescribeCommand(job->spec()));
        }
        return job;
      });
}

}  // namespace varan::core
