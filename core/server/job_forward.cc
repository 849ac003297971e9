#include "core/server/job_forward.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_util.h"
#include "grpcpp/client_context.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::core {
namespace {

using varan::v1::JobEvent;

// Names the replica in an error of a forwarded call.
absl::Status FromReplica(const std::string& address, const grpc::Status& s) {
  absl::Status status = FromGrpcStatus(s);
  if (status.ok() || s.error_code() != grpc::StatusCode::UNAVAILABLE) {
    return status;
  }
  return absl::UnavailableError(
      absl::StrCat("the job runs on core replica ", address,
                   ", which did not answer (", s.error_message(),
                   "); retry: another replica takes its jobs over if it died"));
}

void Prepare(grpc::ClientContext* context, ReplicaPeers* peers,
             const std::string& caller) {
  context->AddMetadata("authorization", peers->Authorization());
  context->AddMetadata(kOnBehalfOfHeader, caller);
}

// A forwarded WatchJob: reads an event from the other replica, writes it
// to the caller, reads the next once that is written. Deletes itself when
// both calls are done.
class ForwardedWatch final : public grpc::ServerWriteReactor<JobEvent>,
                             public grpc::ClientReadReactor<JobEvent> {
 public:
  ForwardedWatch(std::shared_ptr<grpc::Channel> channel, ReplicaPeers* peers,
                 std::string address, const std::string& caller,
                 const varan::v1::WatchJobRequest& request)
      : stub_(varan::v1::Jobs::NewStub(std::move(channel))),
        address_(std::move(address)),
        request_(request) {
    Prepare(&client_, peers, caller);
    stub_->async()->WatchJob(&client_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  // The other replica's stream.
  void OnReadDone(bool ok) override {
    if (ok) StartWrite(&event_);  // else OnDone(status) follows
  }
  void OnDone(const grpc::Status& status) override {
    Finish(ToGrpcStatus(FromReplica(address_, status)));
    Release();
  }

  // The caller's stream.
  void OnWriteDone(bool ok) override {
    if (ok) {
      StartRead(&event_);
    } else {
      client_.TryCancel();
    }
  }
  void OnCancel() override { client_.TryCancel(); }
  void OnDone() override { Release(); }

 private:
  // Each side's OnDone calls it once; the second deletes.
  void Release() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = ++done_ == 2;
    }
    if (last) delete this;
  }

  std::unique_ptr<varan::v1::Jobs::Stub> stub_;
  const std::string address_;
  grpc::ClientContext client_;
  const varan::v1::WatchJobRequest request_;
  JobEvent event_;
  absl::Mutex mu_;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
};

// A forwarded unary call; deletes itself when it ends.
template <typename Request>
struct ForwardedUnary {
  grpc::ClientContext context;
  Request request;
  varan::v1::Job response;
  std::unique_ptr<varan::v1::Jobs::Stub> stub;
  std::function<void(absl::StatusOr<varan::v1::Job>)> done;
  std::string address;

  void End(const grpc::Status& status) {
    absl::Status s = FromReplica(address, status);
    if (s.ok()) {
      done(std::move(response));
    } else {
      done(s);
    }
    delete this;
  }
};

template <typename Request, typename Call>
void Forward(ReplicaPeers* peers, const std::string& address,
             const std::string& caller, const Request& request,
             std::function<void(absl::StatusOr<varan::v1::Job>)> done,
             Call call) {
  auto* f = new ForwardedUnary<Request>;
  f->request = request;
  f->stub = varan::v1::Jobs::NewStub(peers->ChannelTo(address));
  f->done = std::move(done);
  f->address = address;
  Prepare(&f->context, peers, caller);
  f->context.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
  call(f->stub->async(), &f->context, &f->request, &f->response,
       [f](grpc::Status status) { f->End(status); });
}

}  // namespace

std::string JobForwarder::ForwardTo(const std::string& job_id) const {
  if (dispatcher_->Running(job_id)) return "";
  // Its creator while that one lives, else the replica taking over the jobs
  // of dead ones.
  auto to = owners_->CreatorOf(job_id);
  if (!to.has_value()) to = owners_->Adopter();
  if (!to.has_value() || to->id == owners_->self_id()) return "";
  return to->address;
}

grpc::ServerWriteReactor<JobEvent>* JobForwarder::Watch(
    const std::string& address, const std::string& caller,
    const varan::v1::WatchJobRequest& request) {
  return new ForwardedWatch(peers_->ChannelTo(address), peers_, address, caller,
                            request);
}

void JobForwarder::Get(
    const std::string& address, const std::string& caller,
    const varan::v1::GetJobRequest& request,
    std::function<void(absl::StatusOr<varan::v1::Job>)> done) {
  Forward(peers_, address, caller, request, std::move(done),
          [](auto* async, auto* context, auto* req, auto* resp, auto cb) {
            async->GetJob(context, req, resp, std::move(cb));
          });
}

void JobForwarder::Cancel(
    const std::string& address, const std::string& caller,
    const varan::v1::CancelJobRequest& request,
    std::function<void(absl::StatusOr<varan::v1::Job>)> done) {
  Forward(peers_, address, caller, request, std::move(done),
          [](auto* async, auto* context, auto* req, auto* resp, auto cb) {
            async->CancelJob(context, req, resp, std::move(cb));
          });
}

}  // namespace varan::core
