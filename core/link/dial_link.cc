#include "core/link/dial_link.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::core {
namespace {

// One Agent.Execute call; deletes itself after reporting OnDone.
class DialExecuteCall final
    : public grpc::ClientReadReactor<varan::v1::ExecuteEvent>,
      public ExecuteCall {
 public:
  DialExecuteCall(std::shared_ptr<grpc::Channel> channel,
                  const std::string& address, const std::string& credential,
                  const varan::v1::ExecuteRequest& request,
                  ExecuteObserver* observer)
      : channel_(std::move(channel)),
        stub_(varan::v1::Agent::NewStub(channel_)),
        address_(address),
        request_(request),
        observer_(observer) {
    context_.AddMetadata("authorization", BearerHeader(credential));
  }

  void Start() {
    stub_->async()->Execute(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void Cancel() override { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    observer_->OnEvent(event_);
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::Status s = FromGrpcStatus(status);
    if (!s.ok()) {
      s = absl::Status(
          s.code(), absl::StrCat("periphery at ", address_, ": ", s.message()));
    }
    observer_->OnDone(s);
    delete this;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<varan::v1::Agent::Stub> stub_;
  const std::string address_;
  grpc::ClientContext context_;
  const varan::v1::ExecuteRequest request_;
  varan::v1::ExecuteEvent event_;
  ExecuteObserver* const observer_;
};

}  // namespace

DialLink::DialLink(std::shared_ptr<grpc::Channel> channel, std::string address,
                   std::string credential)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      credential_(std::move(credential)) {}

ExecuteCall* DialLink::Execute(const varan::v1::ExecuteRequest& request,
                               ExecuteObserver* observer) {
  auto* call =
      new DialExecuteCall(channel_, address_, credential_, request, observer);
  call->Start();
  return call;
}

std::shared_ptr<PeripheryLink> DialLinkProvider::LinkFor(
    const std::string& /*id*/, const std::string& address,
    const std::string& credential) {
  std::shared_ptr<grpc::Channel> channel;
  {
    absl::MutexLock lock(&mu_);
    auto& slot = channels_[address];
    if (slot == nullptr) {
      grpc::ChannelArguments args;
      // Fail fast when the periphery is down instead of queueing the call.
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
      slot = grpc::CreateCustomChannel(
          address, grpc::InsecureChannelCredentials(), args);
    }
    channel = slot;
  }
  return std::make_shared<DialLink>(std::move(channel), address, credential);
}

}  // namespace varan::core
