#include "core/daemon/step_down.h"

#include <chrono>
#include <cstdlib>
#include <utility>

#include "common/log.h"
#include "core/daemon/core_server.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace varan::core {

std::optional<ReplicaInfo> StepDown::Check(
    const std::vector<ReplicaInfo>& others, absl::Time renewed, absl::Time now,
    const Probe& probe) {
  std::optional<ReplicaInfo> reaching;
  for (const ReplicaInfo& r : others) {
    if (probe(r)) {
      reaching = r;
      break;
    }
  }
  absl::MutexLock lock(&mu_);
  // A new lapse (the replica renewed since the last check): a new wait.
  if (renewed != lapse_) others_reach_since_ = absl::InfiniteFuture();
  lapse_ = renewed;
  if (!reaching) {
    others_reach_since_ = absl::InfiniteFuture();
    return std::nullopt;
  }
  if (others_reach_since_ == absl::InfiniteFuture()) others_reach_since_ = now;
  if (now - others_reach_since_ < grace_) return std::nullopt;
  return reaching;
}

CutOffWatch::CutOffWatch(absl::Duration grace, ChannelTo channel_to)
    : step_down_(grace), channel_to_(std::move(channel_to)) {
  thread_ = std::thread([this] { Run(); });
}

CutOffWatch::~CutOffWatch() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void CutOffWatch::Note(std::vector<ReplicaInfo> others, absl::Time renewed) {
  absl::MutexLock lock(&mu_);
  noted_ = std::move(others);
  noted_renewed_ = renewed;
}

void CutOffWatch::Run() {
  for (;;) {
    std::vector<ReplicaInfo> others;
    absl::Time renewed;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || noted_.has_value();
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      others = *std::move(noted_);
      noted_.reset();
      renewed = noted_renewed_;
    }
    const absl::Time now = absl::Now();
    if (renewed != announced_) {
      announced_ = renewed;
      spdlog::warn(
          "this replica has not renewed its membership in the database for "
          "its ttl: the others may take it for dead; asking them whether "
          "they reach the database (if one does, this replica steps down)");
    }
    auto reaching =
        step_down_.Check(others, renewed, now, [this](const ReplicaInfo& r) {
          return ServesDatabase(channel_to_(r.address), absl::Seconds(1));
        });
    if (reaching) StepDownNow(*reaching);
  }
}

void StopFenced() {
  spdlog::critical(
      "this replica was fenced: another replica took it for dead while it "
      "was cut off from the database, and took over its jobs; exiting with "
      "status {} so that it starts again as a new replica",
      kExitFenced);
  spdlog::default_logger()->flush();
  std::_Exit(kExitFenced);
}

void StepDownNow(const ReplicaInfo& reaching) {
  spdlog::critical(
      "this replica is cut off from the database while replica {} at {} "
      "reaches it: the others take this one for dead and take its jobs "
      "over; exiting with status {} so that its peripheries and clients "
      "move to them and it starts again as a new replica",
      reaching.id, reaching.address, kExitFenced);
  spdlog::default_logger()->flush();
  std::_Exit(kExitFenced);
}

bool ServesDatabase(const std::shared_ptr<grpc::Channel>& channel,
                    absl::Duration timeout) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(kDatabaseService);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  return status.ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

}  // namespace varan::core
