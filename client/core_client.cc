#include "client/core_client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/address.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "common/time_util.h"
#include "common/tls.h"

namespace varan::client {

absl::StatusOr<std::vector<std::string>> ProbeCaPins(const std::string& address,
                                                     absl::Duration timeout) {
  auto addr = ParseDialAddress(address, 7700);
  if (!addr.ok()) return addr.status();
  auto probed = std::make_shared<ProbedChain>();
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto channel = grpc::CreateCustomChannel(
      FormatHostPort(*addr), MakeProbeSecurity(probed).credentials, args);
  // Until the handshake completed (and the probe refused the server) or
  // the connection failed.
  const auto deadline = absl::ToChronoTime(absl::Now() + timeout);
  auto chain = [&] {
    absl::MutexLock lock(&probed->mu);
    return probed->chain_pem;
  };
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (chain().empty() && state != GRPC_CHANNEL_TRANSIENT_FAILURE &&
         state != GRPC_CHANNEL_READY &&
         channel->WaitForStateChange(state, deadline)) {
    state = channel->GetState(false);
  }
  if (chain().empty()) {
    return absl::UnavailableError("no TLS handshake with it");
  }
  auto pins = pki::ChainAuthorityPins(chain());
  if (!pins.ok()) return pins.status();
  if (pins->empty()) {
    return absl::FailedPreconditionError(
        "it serves TLS with a certificate chain that holds no CA certificate "
        "to pin; pass --tls-ca with the CA that signed it");
  }
  return pins;
}

absl::StatusOr<std::unique_ptr<CoreClient>> CoreClient::Create(
    ClientOptions options) {
  auto security = MakeClientSecurity(options.tls);
  if (!security.ok()) {
    return absl::InvalidArgumentError(security.status().message());
  }
  grpc::ChannelArguments args;
  security->Apply(&args);
  // gRPC's reconnect backoff grows to 2 minutes by default; a client
  // following a job through a core restart should find it back within
  // seconds (FollowOptions::max_backoff).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  for (absl::string_view part : absl::StrSplit(options.address, ',')) {
    auto addr = ParseDialAddress(absl::StripAsciiWhitespace(part), 7700);
    if (!addr.ok()) return addr.status();
    auto core = std::make_unique<Endpoint>();
    core->address = FormatHostPort(*addr);
    core->channel =
        grpc::CreateCustomChannel(core->address, security->credentials, args);
    core->fleet = varan::v1::Fleet::NewStub(core->channel);
    core->jobs = varan::v1::Jobs::NewStub(core->channel);
    core->admin = varan::v1::Admin::NewStub(core->channel);
    endpoints.push_back(std::move(core));
  }
  return std::unique_ptr<CoreClient>(
      new CoreClient(std::move(options), std::move(endpoints)));
}

CoreClient::CoreClient(ClientOptions options,
                       std::vector<std::unique_ptr<Endpoint>> endpoints)
    : options_(std::move(options)), endpoints_(std::move(endpoints)) {}

const std::string& CoreClient::address() const {
  return endpoints_[current_.load() % endpoints_.size()]->address;
}

const CoreClient::Endpoint& CoreClient::Pick() const {
  const size_t n = endpoints_.size();
  const size_t last = current_.load() % n;
  if (n == 1) return *endpoints_[0];
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (last + k) % n;
    grpc::Channel& channel = *endpoints_[i]->channel;
    const auto deadline =
        absl::ToChronoTime(absl::Now() + options_.connect_timeout);
    grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    while (state == GRPC_CHANNEL_IDLE || state == GRPC_CHANNEL_CONNECTING) {
      if (!channel.WaitForStateChange(state, deadline)) break;
      state = channel.GetState(/*try_to_connect=*/true);
    }
    if (state == GRPC_CHANNEL_READY) {
      current_.store(i);
      return *endpoints_[i];
    }
  }
  return *endpoints_[last];
}

void CoreClient::AwaitConnection(absl::Duration d) const {
  const absl::Time until = absl::Now() + d;
  const size_t n = endpoints_.size();
  // Connected already (the stream broke for another reason): a plain wait,
  // so that a core ending streams early is not called again at once.
  if (endpoints_[current_.load() % n]->channel->GetState(false) ==
      GRPC_CHANNEL_READY) {
    absl::SleepFor(d);
    return;
  }
  // With several cores, each in turn for a moment, starting with the last
  // one used.
  const absl::Duration slice = n == 1 ? d : absl::Milliseconds(100);
  for (size_t i = current_.load() % n;; i = (i + 1) % n) {
    const absl::Time now = absl::Now();
    if (now >= until) return;
    grpc::Channel& channel = *endpoints_[i]->channel;
    const auto deadline = absl::ToChronoTime(std::min(until, now + slice));
    grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
    while (state != GRPC_CHANNEL_READY &&
           channel.WaitForStateChange(state, deadline)) {
      state = channel.GetState(/*try_to_connect=*/true);
    }
    if (state == GRPC_CHANNEL_READY) return;
  }
}

void CoreClient::Prepare(grpc::ClientContext* context,
                         bool with_deadline) const {
  if (!options_.token.empty()) {
    context->AddMetadata("authorization", BearerHeader(options_.token));
  }
  if (with_deadline) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.timeout));
  }
}

absl::Status CoreClient::Convert(const grpc::Status& status,
                                 const std::string& address) const {
  if (status.ok()) return absl::OkStatus();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::UnavailableError(absl::StrCat(
          "cannot reach core at ", address, ": ", status.error_message()));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::DeadlineExceededError(
          absl::StrCat("core at ", address, " did not answer within ",
                       absl::FormatDuration(options_.timeout)));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError(absl::StrCat(
          "core at ", address, " refused the token: ", status.error_message()));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(
          absl::StrCat("permission denied by core at ", address, ": ",
                       status.error_message()));
    case grpc::StatusCode::OK:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    // Listed for -Wswitch-enum; gRPC never returns it.
    case grpc::StatusCode::DO_NOT_USE:
      break;
  }
  // Core's own message says enough (also for a code newer than this build).
  return FromGrpcStatus(status);
}

absl::StatusOr<std::vector<varan::v1::Periphery>> CoreClient::ListPeripheries(
    const varan::v1::Target& target, bool include_removed, uint32_t page_size) {
  varan::v1::ListPeripheriesRequest req;
  *req.mutable_target() = target;
  req.set_include_removed(include_removed);
  req.set_limit(page_size);
  std::vector<varan::v1::Periphery> out;
  while (true) {
    auto resp =
        Unary(&Endpoint::fleet, &varan::v1::Fleet::Stub::ListPeripheries, req);
    if (!resp.ok()) return resp.status();
    for (auto& p : *resp->mutable_peripheries()) out.push_back(std::move(p));
    if (resp->next_page_token().empty()) return out;
    if (resp->next_page_token() == req.page_token()) {
      return absl::InternalError(
          "core answered ListPeripheries with the same page token twice");
    }
    req.set_page_token(resp->next_page_token());
  }
}

absl::StatusOr<varan::v1::Periphery> CoreClient::GetPeriphery(
    const std::string& name_or_id) {
  varan::v1::GetPeripheryRequest req;
  req.set_name_or_id(name_or_id);
  return Unary(&Endpoint::fleet, &varan::v1::Fleet::Stub::GetPeriphery, req);
}

absl::StatusOr<varan::v1::Periphery> CoreClient::RemovePeriphery(
    const std::string& name_or_id) {
  varan::v1::RemovePeripheryRequest req;
  req.set_name_or_id(name_or_id);
  return Unary(&Endpoint::fleet, &varan::v1::Fleet::Stub::RemovePeriphery, req);
}

absl::StatusOr<varan::v1::Periphery> CoreClient::UpdateLabels(
    const varan::v1::UpdateLabelsRequest& request) {
  return Unary(&Endpoint::fleet, &varan::v1::Fleet::Stub::UpdateLabels,
               request);
}

absl::StatusOr<varan::v1::DispatchResponse> CoreClient::Dispatch(
    const varan::v1::DispatchRequest& request) {
  return Unary(&Endpoint::jobs, &varan::v1::Jobs::Stub::Dispatch, request);
}

absl::Status CoreClient::Exec(const varan::v1::DispatchRequest& request,
                              const EventCallback& on_event) {
  grpc::ClientContext ctx;
  Prepare(&ctx, false);
  const Endpoint& core = Pick();
  auto reader = core.jobs->Exec(&ctx, request);
  return ReadStream(reader.get(), on_event, core.address);
}

absl::Status CoreClient::WatchJob(const std::string& job_id,
                                  uint64_t from_sequence,
                                  const EventCallback& on_event) {
  grpc::ClientContext ctx;
  Prepare(&ctx, false);
  varan::v1::WatchJobRequest req;
  req.set_job_id(job_id);
  req.set_from_sequence(from_sequence);
  const Endpoint& core = Pick();
  auto reader = core.jobs->WatchJob(&ctx, req);
  return ReadStream(reader.get(), on_event, core.address);
}

absl::StatusOr<varan::v1::Job> CoreClient::GetJobPage(
    const varan::v1::GetJobRequest& request) {
  return Unary(&Endpoint::jobs, &varan::v1::Jobs::Stub::GetJob, request);
}

absl::StatusOr<varan::v1::Job> CoreClient::GetJob(const std::string& job_id,
                                                  uint32_t preview_bytes) {
  varan::v1::GetJobRequest req;
  req.set_job_id(job_id);
  req.set_preview_bytes(preview_bytes);
  auto job = GetJobPage(req);
  if (!job.ok()) return job.status();
  // A core older than target paging leaves target_count at 0: its one
  // answer has every target.
  while (static_cast<uint32_t>(job->targets_size()) < job->target_count()) {
    req.set_target_offset(static_cast<uint32_t>(job->targets_size()));
    auto page = GetJobPage(req);
    if (!page.ok()) return page.status();
    if (page->targets().empty()) {
      return absl::InternalError(absl::StrCat(
          "core answered GetJob for ", job_id, " with no targets from ",
          req.target_offset(), " of ", job->target_count()));
    }
    auto targets = std::move(*job->mutable_targets());
    for (auto& t : *page->mutable_targets()) *targets.Add() = std::move(t);
    *job = std::move(*page);
    *job->mutable_targets() = std::move(targets);
  }
  return job;
}

absl::Status CoreClient::ReadOutput(const varan::v1::ReadOutputRequest& request,
                                    const PieceCallback& on_piece) {
  grpc::ClientContext ctx;
  Prepare(&ctx, false);
  const Endpoint& core = Pick();
  auto reader = core.jobs->ReadOutput(&ctx, request);
  return ReadStream(reader.get(), on_piece, core.address);
}

absl::StatusOr<varan::v1::ListJobsResponse> CoreClient::ListJobs(
    const varan::v1::ListJobsRequest& request) {
  return Unary(&Endpoint::jobs, &varan::v1::Jobs::Stub::ListJobs, request);
}

absl::StatusOr<varan::v1::Job> CoreClient::CancelJob(
    const std::string& job_id) {
  varan::v1::CancelJobRequest req;
  req.set_job_id(job_id);
  return Unary(&Endpoint::jobs, &varan::v1::Jobs::Stub::CancelJob, req);
}

absl::StatusOr<varan::v1::CoreInfo> CoreClient::GetInfo() {
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::GetInfo,
               varan::v1::GetInfoRequest());
}

absl::StatusOr<varan::v1::ClusterCa> CoreClient::GetClusterCa() {
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::GetClusterCa,
               varan::v1::GetClusterCaRequest());
}

absl::StatusOr<varan::v1::ClusterCa> CoreClient::RotateClusterCa(
    varan::v1::CaRotationStep step, bool force) {
  varan::v1::RotateClusterCaRequest req;
  req.set_step(step);
  req.set_force(force);
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::RotateClusterCa, req);
}

absl::StatusOr<varan::v1::IssueClientCertificateResponse>
CoreClient::IssueClientCertificate(const std::string& csr_pem,
                                   absl::Duration lifetime) {
  varan::v1::IssueClientCertificateRequest req;
  req.set_csr(csr_pem);
  if (lifetime > absl::ZeroDuration()) {
    SetDuration(lifetime, req.mutable_lifetime());
  }
  return Unary(&Endpoint::admin,
               &varan::v1::Admin::Stub::IssueClientCertificate, req);
}

absl::StatusOr<varan::v1::CreateTokenResponse> CoreClient::CreateToken(
    const varan::v1::CreateTokenRequest& request) {
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::CreateToken, request);
}

absl::StatusOr<std::vector<varan::v1::Token>> CoreClient::ListTokens(
    bool include_revoked) {
  varan::v1::ListTokensRequest req;
  req.set_include_revoked(include_revoked);
  auto resp = Unary(&Endpoint::admin, &varan::v1::Admin::Stub::ListTokens, req);
  if (!resp.ok()) return resp.status();
  return std::vector<varan::v1::Token>(resp->tokens().begin(),
                                       resp->tokens().end());
}

absl::StatusOr<varan::v1::Token> CoreClient::RevokeToken(
    const std::string& name_or_id) {
  varan::v1::RevokeTokenRequest req;
  req.set_name_or_id(name_or_id);
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::RevokeToken, req);
}

absl::StatusOr<varan::v1::CreateJoinTokenResponse> CoreClient::CreateJoinToken(
    const varan::v1::CreateJoinTokenRequest& request) {
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::CreateJoinToken,
               request);
}

absl::StatusOr<std::vector<varan::v1::JoinToken>> CoreClient::ListJoinTokens(
    bool include_revoked) {
  varan::v1::ListJoinTokensRequest req;
  req.set_include_revoked(include_revoked);
  auto resp =
      Unary(&Endpoint::admin, &varan::v1::Admin::Stub::ListJoinTokens, req);
  if (!resp.ok()) return resp.status();
  return std::vector<varan::v1::JoinToken>(resp->join_tokens().begin(),
                                           resp->join_tokens().end());
}

absl::StatusOr<varan::v1::JoinToken> CoreClient::RevokeJoinToken(
    const std::string& name_or_id) {
  varan::v1::RevokeJoinTokenRequest req;
  req.set_name_or_id(name_or_id);
  return Unary(&Endpoint::admin, &varan::v1::Admin::Stub::RevokeJoinToken, req);
}

}  // namespace varan::client
