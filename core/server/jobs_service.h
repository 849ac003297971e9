// core's Jobs service (operators): dispatch, exec, watch, get, list and
// cancel jobs, on the Dispatcher.
//
// A thin edge: authenticate with the role each RPC needs (see core.proto),
// call the Dispatcher, turn absl::Status into grpc::Status. Exec and
// WatchJob stream a job's events through one self-deleting write reactor
// each; Exec's is the job's pacing watcher (the job keeps output events in
// memory until it has written them), WatchJob's is not (it gets output_gap
// events for output the job no longer keeps). GetJob, ListJobs and
// ReadOutput answer about output through job_output.h. Dispatches and cancels
// are logged as audit lines with the token name and the caller's address.
// GetJob, ListJobs and CancelJob may read the store (a job no longer in
// memory, a page of history): they run on BlockingWork's threads, and so
// does WatchJob's look-up of a job that is not running.
// Thread-safe; the objects it points to must outlive it, and it must outlive
// the grpc::Server.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "core/jobs/dispatcher.h"
#include "core/server/auth.h"
#include "core/server/blocking_work.h"
#include "core/server/job_forward.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::core {

class JobsService final : public varan::v1::Jobs::CallbackService {
 public:
  // `forward` (null for a core alone) passes calls about jobs another
  // replica runs on to it (job_forward.h); `work` (null: gRPC's threads)
  // runs the calls that may wait on the store.
  JobsService(const Authenticator* auth, Dispatcher* dispatcher,
              JobForwarder* forward = nullptr, BlockingWork* work = nullptr)
      : auth_(auth), dispatcher_(dispatcher), forward_(forward), work_(work) {}

  grpc::ServerUnaryReactor* Dispatch(
      grpc::CallbackServerContext* context,
      const varan::v1::DispatchRequest* request,
      varan::v1::DispatchResponse* response) override;
  grpc::ServerWriteReactor<varan::v1::JobEvent>* Exec(
      grpc::CallbackServerContext* context,
      const varan::v1::DispatchRequest* request) override;
  grpc::ServerWriteReactor<varan::v1::JobEvent>* WatchJob(
      grpc::CallbackServerContext* context,
      const varan::v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* context,
                                   const varan::v1::GetJobRequest* request,
                                   varan::v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(
      grpc::CallbackServerContext* context,
      const varan::v1::ListJobsRequest* request,
      varan::v1::ListJobsResponse* response) override;
  grpc::ServerWriteReactor<varan::v1::OutputPiece>* ReadOutput(
      grpc::CallbackServerContext* context,
      const varan::v1::ReadOutputRequest* request) override;
  grpc::ServerUnaryReactor* CancelJob(
      grpc::CallbackServerContext* context,
      const varan::v1::CancelJobRequest* request,
      varan::v1::Job* response) override;

 private:
  // WatchJob's job here (it may be read back from the store), or the
  // status to end the call with.
  std::pair<std::shared_ptr<Job>, grpc::Status> JobToWatch(
      const std::string& job_id) const;
  // The replica to pass a call about `job_id` on to; empty: answer here.
  std::string ForwardTo(const std::string& job_id) const {
    return forward_ == nullptr ? std::string() : forward_->ForwardTo(job_id);
  }

  const Authenticator* const auth_;
  Dispatcher* const dispatcher_;
  JobForwarder* const forward_;
  BlockingWork* const work_;
};

}  // namespace varan::core
