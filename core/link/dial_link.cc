#include "core/link/dial_link.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/proxy.h"
#include "common/time_util.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::core {
namespace {

constexpr absl::Duration kTimeoutBackstop = absl::Minutes(1);

// One Agent.Execute call; deletes itself once it reported OnDone and no
// Agent.Cancel call of its own is in flight.
class DialExecuteCall final
    : public grpc::ClientReadReactor<varan::v1::ExecuteEvent>,
      public ExecuteCall {
 public:
  DialExecuteCall(std::shared_ptr<grpc::Channel> channel,
                  const std::string& address, const std::string& credential,
                  const varan::v1::ExecuteRequest& request,
                  ExecuteObserver* observer,
                  std::shared_ptr<LiveCalls> live_calls,
                  const std::string& relay_to)
      : live_(std::move(live_calls)),
        channel_(std::move(channel)),
        stub_(varan::v1::Agent::NewStub(channel_)),
        address_(address),
        credential_(credential),
        request_(request),
        observer_(observer),
        relay_to_(relay_to) {
    // None with mutual TLS: core's certificate is what the periphery checks.
    if (!credential.empty()) {
      context_.AddMetadata("authorization", BearerHeader(credential));
    }
    if (!relay_to_.empty()) context_.AddMetadata(kRelayToHeader, relay_to_);
    if (request.spec().has_timeout()) {
      // Backstop for a periphery that never reports the end: its own
      // timeout, plus room for the kill grace and the report.
      const absl::Duration limit =
          FromDuration(request.spec().timeout()) + kTimeoutBackstop;
      context_.set_deadline(absl::ToChronoTime(absl::Now() + limit));
    }
  }

  void Start() {
    // Before the call can take the channel out of its state.
    ready_at_start_ =
        channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
    stub_->async()->Execute(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void Cancel() override {
    {
      absl::MutexLock lock(&mu_);
      if (done_ || cancel_in_flight_) return;
      cancel_in_flight_ = true;
    }
    if (!credential_.empty()) {
      cancel_context_.AddMetadata("authorization", BearerHeader(credential_));
    }
    if (!relay_to_.empty()) {
      cancel_context_.AddMetadata(kRelayToHeader, relay_to_);
    }
    cancel_request_.set_execution_id(request_.execution_id());
    cancel_context_.set_deadline(std::chrono::system_clock::now() +
                                 std::chrono::seconds(5));
    stub_->async()->Cancel(&cancel_context_, &cancel_request_,
                           &cancel_response_, [this](grpc::Status status) {
                             // The periphery could not be asked (down, or
                             // the command is already gone): end the call.
                             if (!status.ok()) context_.TryCancel();
                             bool destroy;
                             {
                               absl::MutexLock lock(&mu_);
                               cancel_in_flight_ = false;
                               destroy = done_;
                             }
                             if (destroy) delete this;
                           });
  }

  void Abort() override { context_.TryCancel(); }

  void OnReadInitialMetadataDone(bool ok) override {
    // Runs before any OnReadDone and before OnDone.
    got_metadata_ = ok;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    got_event_ = true;
    observer_->OnEvent(event_);
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::Status s = FromGrpcStatus(status);
    if (!s.ok() && !relay_to_.empty()) {
      s = absl::Status(s.code(), absl::StrCat("periphery ", relay_to_,
                                              " through core replica at ",
                                              address_, ": ", s.message()));
      // The replica says it could not deliver the request (the periphery
      // has no tunnel there any more), or the replica was never reached: it
      // sends its initial metadata before it passes a request on
      // (RelayService), and nothing came back on a channel that had no
      // connection when the call started nor when it ended. Either way the
      // request may go again through the periphery's next replica.
      if (context_.GetServerTrailingMetadata().count(kNotDeliveredTrailer) >
              0 ||
          (absl::IsUnavailable(s) && !got_metadata_ && !got_event_ &&
           !ready_at_start_ &&
           channel_->GetState(/*try_to_connect=*/false) !=
               GRPC_CHANNEL_READY)) {
        s = Misrouted(std::move(s));
      }
    } else if (!s.ok()) {
      s = absl::Status(
          s.code(), absl::StrCat("periphery at ", address_, ": ", s.message()));
      // See DialLink in the header: the periphery answered nothing and
      // the channel had no connection, neither when the call started nor
      // when it ended.
      if (absl::IsUnavailable(s) && !got_metadata_ && !got_event_ &&
          !ready_at_start_ &&
          channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
        s = NotDelivered(std::move(s));
      }
    }
    observer_->OnDone(s);
    bool destroy;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      destroy = !cancel_in_flight_;
    }
    if (destroy) delete this;
  }

 private:
  // First, so destroyed last: the call counts until it is entirely gone.
  const LiveCalls::Token live_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<varan::v1::Agent::Stub> stub_;
  const std::string address_;
  const std::string credential_;
  grpc::ClientContext context_;
  const varan::v1::ExecuteRequest request_;
  varan::v1::ExecuteEvent event_;
  // The channel had a connection when the call started.
  bool ready_at_start_ = false;
  // The periphery's initial metadata arrived (OnReadInitialMetadataDone
  // comes before the reads and OnDone).
  bool got_metadata_ = false;
  // An event arrived (reads happen one at a time; OnDone comes after).
  bool got_event_ = false;
  ExecuteObserver* const observer_;
  // The periphery a relayed call is for (empty: a direct one).
  const std::string relay_to_;
  grpc::ClientContext cancel_context_;
  varan::v1::CancelRequest cancel_request_;
  varan::v1::CancelResponse cancel_response_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancel_in_flight_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

LiveCalls::Token::Token(std::shared_ptr<LiveCalls> calls)
    : calls_(std::move(calls)) {
  absl::MutexLock lock(&calls_->mu_);
  ++calls_->live_;
}

LiveCalls::Token::~Token() {
  absl::MutexLock lock(&calls_->mu_);
  --calls_->live_;
}

bool LiveCalls::AwaitNone(absl::Duration limit) {
  absl::MutexLock lock(&mu_);
  auto none = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&none), limit);
}

DialLink::DialLink(std::shared_ptr<grpc::Channel> channel, std::string address,
                   std::string credential,
                   std::shared_ptr<LiveCalls> live_calls, std::string relay_to)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      credential_(std::move(credential)),
      live_calls_(std::move(live_calls)),
      relay_to_(std::move(relay_to)) {}

ExecuteCall* DialLink::Execute(const varan::v1::ExecuteRequest& request,
                               ExecuteObserver* observer) {
  auto* call = new DialExecuteCall(channel_, address_, credential_, request,
                                   observer, live_calls_, relay_to_);
  call->Start();
  return call;
}

std::shared_ptr<PeripheryLink> DialLinkProvider::LinkFor(
    const std::string& id, const std::string& address,
    const std::string& credential) {
  return std::make_shared<DialLink>(
      ChannelTo(address, periphery_security_ != nullptr ? id : ""), address,
      credential, live_calls_);
}

std::shared_ptr<PeripheryLink> DialLinkProvider::RelayLinkFor(
    const std::string& id, const std::string& replica_address,
    const std::string& secret) {
  return std::make_shared<DialLink>(ChannelTo(replica_address, ""),
                                    replica_address, secret, live_calls_, id);
}

std::shared_ptr<grpc::Channel> DialLinkProvider::ChannelTo(
    const std::string& address, const std::string& id) {
  std::shared_ptr<grpc::Channel> channel;
  {
    absl::MutexLock lock(&mu_);
    // Keyed by id too: a channel checks the certificate of one periphery.
    auto& slot =
        channels_[id.empty() ? address : absl::StrCat(id, "@", address)];
    if (slot == nullptr) {
      const ChannelSecurity security =
          id.empty() ? security_ : periphery_security_(id);
      grpc::ChannelArguments args;
      // Fail fast when the periphery is down instead of queueing the call.
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
      // A restarted periphery is dialed again within a second or two.
      SetClientChannelArgs(&args, keepalive_, absl::Milliseconds(200),
                           absl::Seconds(2));
      security.Apply(&args);
      ApplyProxy(proxy_, &args);
      slot = grpc::CreateCustomChannel(address,
                                       security.credentials != nullptr
                                           ? security.credentials
                                           : grpc::InsecureChannelCredentials(),
                                       args);
    }
    channel = slot;
  }
  return channel;
}

void DialLinkProvider::ResetChannels() {
  absl::MutexLock lock(&mu_);
  channels_.clear();
}

DialLinkProvider::~DialLinkProvider() {
  live_calls_->AwaitNone(absl::Seconds(5));
}

}  // namespace varan::core
