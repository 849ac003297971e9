#include "core/link/tunnel_link.h"

#include <optional>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/log.h"

namespace varan::core {

using varan::v1::TunnelDown;
using varan::v1::TunnelUp;

// One Registry.Connect stream. It is the reactor, and also what links and
// calls hold to reach the periphery: a shared_ptr (its written reason) so
// they may outlive the stream; it keeps itself alive (self_) until OnDone.
class TunnelConnection final
    : public grpc::ServerBidiReactor<TunnelUp, TunnelDown>,
      public TunnelCallHost,
      public std::enable_shared_from_this<TunnelConnection> {
 public:
  TunnelConnection(TunnelHub* hub, grpc::CallbackServerContext* context,
                   TunnelHandler* handler)
      : hub_(hub), context_(context), handler_(handler) {}

  void Begin(std::shared_ptr<TunnelConnection> self) {
    self_ = std::move(self);
    StartRead(&in_);
  }

  // Starts `request` on the periphery; see PeripheryLink::Execute.
  ExecuteCall* Execute(const varan::v1::ExecuteRequest& request,
                       ExecuteObserver* observer);
  // Asks the periphery to stop an execution. False when the tunnel is
  // closed.
  bool SendCancel(const std::string& execution_id) override {
    TunnelDown msg;
    msg.mutable_cancel()->set_execution_id(execution_id);
    return Send(std::move(msg));
  }
  void SendCredit(const std::string& execution_id, uint64_t bytes) override {
    TunnelDown msg;
    msg.mutable_credit()->set_execution_id(execution_id);
    msg.mutable_credit()->set_bytes(bytes);
    Send(std::move(msg));
  }
  void SendDetach(const std::string& execution_id) override {
    TunnelDown msg;
    msg.mutable_detach()->set_execution_id(execution_id);
    Send(std::move(msg));
  }
  // Stops routing events of `execution_id`.
  void Forget(const std::string& execution_id) override;
  // Ends the stream with `status` (any thread).
  void Close(const grpc::Status& status) { FinishOnce(status); }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "tunnel broken"));
  }
  void OnDone() override;

 private:
  bool Send(TunnelDown msg);
  void FinishOnce(const grpc::Status& status);
  void HandleHello(const varan::v1::TunnelHello& hello);
  // The handler's answer to the hello (any thread).
  void OnOpened(absl::StatusOr<TunnelHandler::Opened> opened);
  // Finishes with the status a FinishOnce left pending, unless a write or
  // the hello's answer is still in flight (they call it, or finish, then).
  void FinishPending();
  void HandleEvent(varan::v1::TunnelEvent* event);
  std::string Who() const;
  // Why a call is refused once the tunnel closes (NotDelivered; Misrouted
  // with several replicas: the periphery may be moving to another).
  absl::Status Closed() const;

  TunnelHub* const hub_;
  grpc::CallbackServerContext* const context_;
  TunnelHandler* const handler_;
  std::shared_ptr<TunnelConnection> self_;
  TunnelUp in_;         // owned by the read in flight
  TunnelDown current_;  // owned by the write in flight
  // Set once, when the handler's answer opens the tunnel, before the next
  // read starts (and so before anything else reads them).
  bool opened_ = false;
  std::string id_;
  std::string name_;
  std::string credential_;

  // Lines logged for events of unknown executions (reader thread only).
  static constexpr int kUnknownLogLines = 20;
  int unknown_logged_ = 0;
  mutable absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // The hello is with the handler: a Finish waits for its answer (the
  // handler may use the context until then).
  bool opening_ ABSL_GUARDED_BY(mu_) = false;
  // No more writes or calls: Finish was asked for (or the stream is done).
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
  std::deque<TunnelDown> out_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<TunnelCall>> calls_
      ABSL_GUARDED_BY(mu_);
};

namespace {

class TunnelLink final : public PeripheryLink {
 public:
  explicit TunnelLink(std::shared_ptr<TunnelConnection> conn)
      : conn_(std::move(conn)) {}
  ExecuteCall* Execute(const varan::v1::ExecuteRequest& request,
                       ExecuteObserver* observer) override {
    return conn_->Execute(request, observer);
  }

 private:
  const std::shared_ptr<TunnelConnection> conn_;
};

// A periphery with no tunnel open and no address to dial. With several
// replicas, one that no live replica holds: it may be between two of them
// (Misrouted, so the request may go again once it is held somewhere).
class UnreachableLink final : public PeripheryLink {
 public:
  UnreachableLink(TunnelHub* hub, std::string id, bool replicas)
      : hub_(hub), id_(std::move(id)), replicas_(replicas) {}
  ExecuteCall* Execute(const varan::v1::ExecuteRequest& request,
                       ExecuteObserver* observer) override {
    auto call = std::make_shared<TunnelCall>(
        std::weak_ptr<TunnelCallHost>(), hub_->delivery(),
        request.execution_id(), 0, observer);
    absl::Status status = absl::UnavailableError(
        absl::StrCat("periphery ", id_, " has no tunnel to ",
                     replicas_ ? "any core replica" : "core",
                     " open and no address to dial"));
    call->Complete(replicas_ ? Misrouted(std::move(status))
                             : NotDelivered(std::move(status)));
    return call.get();
  }

 private:
  TunnelHub* const hub_;
  const std::string id_;
  const bool replicas_;
};

}  // namespace

// --- TunnelConnection ------------------------------------------------------

std::string TunnelConnection::Who() const {
  return absl::StrCat("periphery ", name_.empty() ? id_ : name_);
}

absl::Status TunnelConnection::Closed() const {
  absl::Status closed =
      absl::UnavailableError(absl::StrCat("the tunnel to ", Who(), " closed"));
  return hub_->replicas() ? Misrouted(std::move(closed))
                          : NotDelivered(std::move(closed));
}

ExecuteCall* TunnelConnection::Execute(const varan::v1::ExecuteRequest& request,
                                       ExecuteObserver* observer) {
  const std::string& id = request.execution_id();
  const uint64_t window = request.output_window_bytes() > 0
                              ? request.output_window_bytes()
                              : kTunnelOutputWindowBytes;
  auto call = std::make_shared<TunnelCall>(
      std::weak_ptr<TunnelCallHost>(weak_from_this()), hub_->delivery(), id,
      window, observer);
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      refused = Closed();
    } else if (calls_.contains(id)) {
      refused = absl::AlreadyExistsError(
          absl::StrCat("execution ", id, " is already on this tunnel"));
    } else {
      calls_[id] = call;
    }
  }
  if (refused.ok()) {
    TunnelDown msg;
    *msg.mutable_execute() = request;
    msg.mutable_execute()->set_output_window_bytes(window);
    if (Send(std::move(msg))) return call.get();
    Forget(id);
    refused = Closed();
  }
  call->Complete(refused);
  return call.get();
}

void TunnelConnection::Forget(const std::string& execution_id) {
  absl::MutexLock lock(&mu_);
  calls_.erase(execution_id);
}

bool TunnelConnection::Send(TunnelDown msg) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return false;
    if (writing_) {
      out_.push_back(std::move(msg));
      return true;
    }
    writing_ = true;
    current_ = std::move(msg);
  }
  StartWrite(&current_);
  return true;
}

void TunnelConnection::OnWriteDone(bool ok) {
  std::optional<grpc::Status> finish;
  bool next = false;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) closing_ = true;
    if (pending_finish_.has_value() && !finish_called_ && !opening_) {
      finish_called_ = true;
      finish = std::move(pending_finish_);
    } else if (ok && !closing_ && !out_.empty()) {
      current_ = std::move(out_.front());
      out_.pop_front();
      writing_ = true;
      next = true;
    }
  }
  if (finish.has_value()) {
    Finish(*finish);
  } else if (next) {
    StartWrite(&current_);
  } else if (!ok) {
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "tunnel broken"));
  }
}

void TunnelConnection::FinishOnce(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finish_called_ || pending_finish_.has_value()) return;
    closing_ = true;
    out_.clear();
    if (writing_ || opening_) {
      // OnWriteDone (or OnOpened) finishes once the write in flight is
      // done (the handler answered).
      pending_finish_ = status;
      return;
    }
    finish_called_ = true;
  }
  Finish(status);
}

void TunnelConnection::HandleHello(const varan::v1::TunnelHello& hello) {
  {
    absl::MutexLock lock(&mu_);
    opening_ = true;
  }
  handler_->Open(*context_, hello,
                 [self = shared_from_this()](
                     absl::StatusOr<TunnelHandler::Opened> opened) {
                   self->OnOpened(std::move(opened));
                 });
}

void TunnelConnection::OnOpened(absl::StatusOr<TunnelHandler::Opened> opened) {
  bool ended;
  {
    absl::MutexLock lock(&mu_);
    // The stream ended meanwhile (the periphery went away): nothing opens.
    ended = pending_finish_.has_value() || finish_called_;
    if (ended || !opened.ok()) opening_ = false;
  }
  if (ended) {
    FinishPending();
    return;
  }
  if (!opened.ok()) {
    AddRetryAfterTrailer(opened.status(), context_);
    FinishOnce(ToGrpcStatus(opened.status()));
    return;
  }
  opened_ = true;
  id_ = opened->message.periphery_id();
  name_ = opened->name;
  credential_ = opened->credential;
  TunnelDown msg;
  *msg.mutable_opened() = opened->message;
  Send(std::move(msg));
  hub_->Attach(id_, shared_from_this());
  // Still opening until the read is started: a Finish before it would let
  // the call end under this StartRead (FinishOnce keeps it pending).
  StartRead(&in_);
  {
    absl::MutexLock lock(&mu_);
    opening_ = false;
  }
  FinishPending();
}

void TunnelConnection::FinishPending() {
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    // With a write in flight, OnWriteDone finishes.
    if (!pending_finish_.has_value() || finish_called_ || writing_ ||
        opening_) {
      return;
    }
    finish_called_ = true;
    finish = std::move(pending_finish_);
  }
  Finish(*finish);
}

void TunnelConnection::HandleEvent(varan::v1::TunnelEvent* event) {
  std::shared_ptr<TunnelCall> call;
  {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(event->execution_id());
    if (it != calls_.end()) {
      call = it->second;
      if (event->event().has_exited()) calls_.erase(it);
    }
  }
  if (call == nullptr) {
    // Not an execution of this tunnel (unknown, finished, or a malformed
    // id). Dropped with a reason; a periphery that floods them gets a
    // bounded number of lines.
    if (unknown_logged_ < kUnknownLogLines) {
      ++unknown_logged_;
      spdlog::warn("{}: event for unknown execution \"{}\" dropped{}", Who(),
                   absl::CEscape(event->execution_id().substr(0, 200)),
                   unknown_logged_ == kUnknownLogLines
                       ? " (further ones are dropped without a line)"
                       : "");
    }
    return;
  }
  // Only queued here: the call's own thread delivers it, so a listener that
  // blocks never holds up this reader.
  absl::Status accepted = call->Accept(std::move(*event->mutable_event()));
  if (accepted.ok()) return;
  spdlog::warn("{}: {}; failing the execution", Who(), accepted.message());
  Forget(call->id());
  SendCancel(call->id());
  call->Complete(accepted, /*drop=*/true);
}

void TunnelConnection::OnReadDone(bool ok) {
  if (!ok) {
    // The periphery closed its side (or the stream broke).
    FinishOnce(grpc::Status::OK);
    return;
  }
  if (!opened_ && !in_.has_hello()) {
    FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "the first message on a tunnel must be a hello"));
    return;
  }
  switch (in_.message_case()) {
    case TunnelUp::kHello:
      if (opened_) {
        FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "a tunnel takes one hello"));
        return;
      }
      // The next read starts once the handler answers (OnOpened).
      HandleHello(in_.hello());
      return;
    case TunnelUp::kHeartbeat: {
      auto answer =
          handler_->Heartbeat(*context_, id_, credential_, in_.heartbeat());
      if (!answer.ok()) {
        FinishOnce(ToGrpcStatus(answer.status()));
        return;
      }
      TunnelDown msg;
      *msg.mutable_heartbeat() = *std::move(answer);
      Send(std::move(msg));
      break;
    }
    case TunnelUp::kEvent:
      HandleEvent(in_.mutable_event());
      break;
    case TunnelUp::kRejected: {
      const auto& r = in_.rejected();
      std::shared_ptr<TunnelCall> call;
      {
        absl::MutexLock lock(&mu_);
        auto it = calls_.find(r.execution_id());
        if (it != calls_.end()) {
          call = std::move(it->second);
          calls_.erase(it);
        }
      }
      if (call != nullptr) {
        call->Complete(absl::Status(
            static_cast<absl::StatusCode>(r.code()),
            absl::StrCat(Who(), " refused the command: ", r.message())));
      }
      break;
    }
    case TunnelUp::MESSAGE_NOT_SET:
      break;
  }
  StartRead(&in_);
}

void TunnelConnection::OnDone() {
  // Destroyed, at the earliest, when this returns.
  std::shared_ptr<TunnelConnection> self = std::move(self_);
  absl::flat_hash_map<std::string, std::shared_ptr<TunnelCall>> calls;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    out_.clear();
    calls.swap(calls_);
  }
  if (opened_) {
    hub_->Detach(id_, this);
    handler_->Closed(id_, absl::UnavailableError("tunnel closed"));
  }
  const absl::Status closed =
      absl::UnavailableError(absl::StrCat("the tunnel to ", Who(), " closed"));
  for (auto& [id, call] : calls) call->Complete(closed);
}

// --- TunnelHub -------------------------------------------------------------

TunnelHub::TunnelHub(LinkProvider* dial, ReplicaPeers* peers)
    : dial_(dial), peers_(peers) {}

TunnelHub::~TunnelHub() { delivery_.WaitIdle(); }

grpc::ServerBidiReactor<TunnelUp, TunnelDown>* TunnelHub::Accept(
    grpc::CallbackServerContext* context, TunnelHandler* handler) {
  auto conn = std::make_shared<TunnelConnection>(this, context, handler);
  TunnelConnection* reactor = conn.get();
  reactor->Begin(std::move(conn));
  return reactor;
}

std::shared_ptr<PeripheryLink> TunnelHub::LinkFor(
    const std::string& id, const std::string& address,
    const std::string& credential) {
  {
    absl::MutexLock lock(&mu_);
    auto it = tunnels_.find(id);
    if (it != tunnels_.end()) return std::make_shared<TunnelLink>(it->second);
  }
  if (!address.empty()) return dial_->LinkFor(id, address, credential);
  if (peers_ != nullptr) {
    if (auto relay = peers_->RelayLinkFor(id)) return relay;
  }
  return std::make_shared<UnreachableLink>(this, id, peers_ != nullptr);
}

size_t TunnelHub::connected() const {
  absl::MutexLock lock(&mu_);
  return tunnels_.size();
}

void TunnelHub::Attach(const std::string& id,
                       std::shared_ptr<TunnelConnection> conn) {
  std::shared_ptr<TunnelConnection> old;
  {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<TunnelConnection>& slot = tunnels_[id];
    old = std::exchange(slot, std::move(conn));
  }
  if (old != nullptr) {
    spdlog::info("periphery {} opened a new tunnel; closing its old one", id);
    old->Close(grpc::Status(grpc::StatusCode::ABORTED,
                            "replaced by a newer tunnel from this periphery"));
  }
}

void TunnelHub::Detach(const std::string& id, const TunnelConnection* conn) {
  absl::MutexLock lock(&mu_);
  auto it = tunnels_.find(id);
  if (it != tunnels_.end() && it->second.get() == conn) tunnels_.erase(it);
}

}  // namespace varan::core
