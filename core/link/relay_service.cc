#include "core/link/relay_service.h"

#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/secrets.h"
#include "core/link/dial_link.h"

namespace varan::core {

// One relayed Execute: the tunnel call's observer and the caller's stream.
// Deletes itself once both have ended (gRPC's OnDone comes after Finish,
// which comes after the tunnel call's OnDone).
class RelayService::RelayCall final
    : public grpc::ServerWriteReactor<varan::v1::ExecuteEvent>,
      public ExecuteObserver {
 public:
  RelayCall(RelayService* service, grpc::CallbackServerContext* context,
            std::string execution_id)
      : service_(service),
        context_(context),
        execution_id_(std::move(execution_id)) {}

  // Sends the initial metadata, then (OnSendInitialMetadataDone) starts the
  // call on `link` (the periphery's tunnel here): a caller that received no
  // metadata knows the request was not passed on.
  void Begin(std::shared_ptr<PeripheryLink> link,
             const varan::v1::ExecuteRequest& request) {
    link_ = std::move(link);
    request_ = request;
    StartSendInitialMetadata();
  }

  void OnSendInitialMetadataDone(bool ok) override {
    if (!ok) {
      // The caller is gone before anything was passed on.
      OnDone(NotDelivered(absl::CancelledError("the caller went away")));
      return;
    }
    ExecuteCall* call = link_->Execute(request_, this);
    absl::MutexLock lock(&mu_);
    if (link_done_) return;  // it ended already: `call` is gone
    call_ = call;
    if (cancelled_) {
      call_->Abort();
    } else if (cancel_pending_) {
      call_->Cancel();
    }
  }

  // Ends the caller's stream with `status` (nothing was started).
  void Refuse(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      link_done_ = true;
    }
    Finish(status);
  }

  // Agent.Cancel for this execution: asks the periphery to stop it.
  void CancelCommand() {
    absl::MutexLock lock(&mu_);
    if (call_ != nullptr) {
      call_->Cancel();
    } else {
      cancel_pending_ = true;  // applied once the call starts
    }
  }

  // ExecuteObserver, on the tunnel call's delivery thread (may block: that
  // paces this execution alone).
  void OnEvent(const varan::v1::ExecuteEvent& event) override {
    const varan::v1::ExecuteEvent* write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued_bytes_ < kRelayBufferBytes || cancelled_;
      };
      mu_.Await(absl::Condition(&room));
      if (cancelled_) return;
      queue_.emplace_back(event, event.ByteSizeLong());
      queued_bytes_ += queue_.back().second;
      if (writing_) return;
      writing_ = true;
      write = &queue_.front().first;
    }
    StartWrite(write);
  }

  void OnDone(const absl::Status& status) override {
    // First: once link_done_ is set, a write completing on a gRPC thread
    // may finish the call, and gRPC then deletes this at any time.
    service_->Ended(execution_id_, this);
    bool finish_now;
    {
      absl::MutexLock lock(&mu_);
      link_done_ = true;
      call_ = nullptr;
      final_ = status;
      finish_now = !writing_;
    }
    if (finish_now) FinishWith(status);
  }

  // The caller's stream.
  void OnWriteDone(bool ok) override {
    const varan::v1::ExecuteEvent* next = nullptr;
    bool finish = false;
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      queued_bytes_ -= queue_.front().second;
      queue_.pop_front();
      if (!ok) {
        // The caller is gone: drop the tunnel call too.
        cancelled_ = true;
        queue_.clear();
        queued_bytes_ = 0;
        if (call_ != nullptr) call_->Abort();
      }
      if (ok && !queue_.empty()) {
        next = &queue_.front().first;
      } else {
        writing_ = false;
        finish = link_done_;
        status = final_;
      }
    }
    if (next != nullptr) {
      StartWrite(next);
    } else if (finish) {
      FinishWith(status);
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (call_ != nullptr) call_->Abort();
  }

  void OnDone() override { delete this; }

 private:
  void FinishWith(const absl::Status& status) {
    if (IsNotDelivered(status)) {
      context_->AddTrailingMetadata(kNotDeliveredTrailer, "1");
    }
    Finish(ToGrpcStatus(status));
  }

  RelayService* const service_;
  grpc::CallbackServerContext* const context_;
  const std::string execution_id_;
  // What Begin passes on once the metadata is out.
  std::shared_ptr<PeripheryLink> link_;
  varan::v1::ExecuteRequest request_;
  absl::Mutex mu_;
  // Events to send, with their sizes; the front one is being written while
  // writing_.
  std::deque<std::pair<varan::v1::ExecuteEvent, size_t>> queue_
      ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // The caller canceled or went away.
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // The tunnel call ended (with final_); call_ is gone then.
  bool link_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_ ABSL_GUARDED_BY(mu_);
  ExecuteCall* call_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Agent.Cancel came before the call started (while the metadata went).
  bool cancel_pending_ ABSL_GUARDED_BY(mu_) = false;
};

RelayService::RelayService(const Cluster* cluster, LinkProvider* tunnels)
    : cluster_(cluster), tunnels_(tunnels) {}

grpc::Status RelayService::Check(const grpc::CallbackServerContext& context,
                                 std::string* periphery_id) const {
  absl::string_view token = BearerToken(context);
  if (token.empty() || !SecretEquals(token, cluster_->secret())) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "core serves Agent calls only to its own replicas");
  }
  auto header = context.client_metadata().find(kRelayToHeader);
  if (header == context.client_metadata().end() || header->second.empty()) {
    return grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("a relayed call names its periphery in ", kRelayToHeader));
  }
  *periphery_id = std::string(header->second.data(), header->second.size());
  return grpc::Status::OK;
}

grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* RelayService::Execute(
    grpc::CallbackServerContext* context,
    const varan::v1::ExecuteRequest* request) {
  auto* call = new RelayCall(this, context, request->execution_id());
  std::string periphery_id;
  if (grpc::Status s = Check(*context, &periphery_id); !s.ok()) {
    call->Refuse(s);
    return call;
  }
  {
    absl::MutexLock lock(&mu_);
    calls_[request->execution_id()] = call;
  }
  call->Begin(
      tunnels_->LinkFor(periphery_id, /*address=*/"", /*credential=*/""),
      *request);
  return call;
}

grpc::ServerUnaryReactor* RelayService::Cancel(
    grpc::CallbackServerContext* context,
    const varan::v1::CancelRequest* request, varan::v1::CancelResponse*) {
  auto* reactor = context->DefaultReactor();
  std::string periphery_id;
  if (grpc::Status s = Check(*context, &periphery_id); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(request->execution_id());
    if (it == calls_.end()) {
      reactor->Finish(grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("no relayed execution ", request->execution_id())));
      return reactor;
    }
    it->second->CancelCommand();
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void RelayService::Ended(const std::string& execution_id,
                         const RelayCall* call) {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(execution_id);
  if (it != calls_.end() && it->second == call) calls_.erase(it);
}

}  // namespace varan::core
