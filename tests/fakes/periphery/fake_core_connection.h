// FakeCoreConnection: an in-memory core for the uplink's tests. The test
// scripts core's answers in order (Register, Heartbeat, or a tunnel's
// answer to its hello); each call the uplink makes takes the next answer and
// is recorded with the fake clock's time, so a test reads back what the
// uplink sent, with which bearer, and how long it waited in between.
//
// A call that finds no answer left (or the next answer is for another kind
// of call) blocks until Close(), so the uplink's thread rests instead of
// spinning once the script is played out. After Close() every call fails
// at once with UNAVAILABLE.
//
// Several cores: Connect(address) hands out a connection that forwards to
// this fake and records `address` in every call (the script is one for all
// of them, in call order), and connects() lists the connections made, so a
// test sees which core each call went to and when the uplink moved.
//
// Tunnels: OpenTunnel records the hello; the tunnel's WaitOpened takes the
// next answer (its heartbeat_interval in whole seconds). An opened tunnel
// stays open (core never answers its heartbeats, which it counts) until the
// uplink cancels it.
//
// Connectivity: AwaitUp and Up answer from ComesUpAt (by default the
// connection never comes up, and AwaitUp waits its whole timeout).
//
// Thread-safe. The uplink owns the connection; tests keep a raw pointer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "periphery/uplink/core_connection.h"

namespace varan::periphery {

class FakeCoreConnection final : public CoreConnection {
 public:
  enum class Kind { kRegister, kHeartbeat, kTunnelHello, kRenew };

  struct Call {
    Kind kind;
    absl::Time at;     // on the fake clock
    std::string core;  // the address given to Connect ("" when called directly)
    std::string bearer;
    varan::v1::RegisterRequest register_request;  // kRegister
    varan::v1::HeartbeatRequest heartbeat;        // kHeartbeat
    varan::v1::TunnelHello hello;                 // kTunnelHello
    varan::v1::RenewCertificateRequest renew;     // kRenew
  };

  explicit FakeCoreConnection(const Clock* clock) : clock_(clock) {}

  // A connection to the core at `address`, answered by this fake (which
  // must outlive it).
  std::unique_ptr<CoreConnection> Connect(std::string address) {
    absl::MutexLock lock(&mu_);
    connects_.push_back(address);
    return std::make_unique<Handle>(this, std::move(address));
  }

  // The addresses given to Connect so far, in order.
  std::vector<std::string> connects() {
    absl::MutexLock lock(&mu_);
    return connects_;
  }

  // Core's next answers, in the order the uplink is expected to call.
  void AnswerRegister(absl::StatusOr<varan::v1::RegisterResponse> answer) {
    Push(Kind::kRegister, std::move(answer));
  }
  void AnswerHeartbeat(absl::StatusOr<varan::v1::HeartbeatResponse> answer) {
    Push(Kind::kHeartbeat, std::move(answer));
  }
  void AnswerTunnel(absl::StatusOr<varan::v1::TunnelOpened> answer) {
    Push(Kind::kTunnelHello, std::move(answer));
  }
  void AnswerRenew(absl::StatusOr<varan::v1::RenewCertificateResponse> answer) {
    Push(Kind::kRenew, std::move(answer));
  }

  // Waits (up to 10 s of real time, as a guard against a hung test) until
  // the uplink made at least `n` calls; returns the calls so far.
  std::vector<Call> WaitForCalls(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return calls_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    return calls_;
  }

  // What the open tunnel's TakeTrustAnswer gives next (once), as if core
  // had answered a heartbeat on it with `answer`.
  void AnswerOnTunnel(varan::v1::HeartbeatResponse answer) {
    absl::MutexLock lock(&mu_);
    tunnel_trust_answer_ = std::move(answer);
  }

  // Heartbeats sent on tunnels so far.
  int tunnel_heartbeats() {
    absl::MutexLock lock(&mu_);
    return tunnel_heartbeats_;
  }

  // When the connection to core comes up, on the fake clock (never unless
  // told): AwaitUp waits until then, or its timeout, on the fake clock, and
  // Up says whether it is past.
  void ComesUpAt(absl::Time at) {
    absl::MutexLock lock(&mu_);
    up_at_ = at;
  }
  // How many times the uplink waited in AwaitUp.
  int awaits() {
    absl::MutexLock lock(&mu_);
    return awaits_;
  }

  bool AwaitUp(absl::Duration timeout,
               const absl::Notification& stop) override {
    absl::Time up;
    {
      absl::MutexLock lock(&mu_);
      ++awaits_;
      up = up_at_;
    }
    const absl::Time now = clock_->Now();
    if (now >= up) return true;
    if (up - now > timeout) {
      clock_->WaitForNotification(stop, timeout);
      return false;
    }
    return !clock_->WaitForNotification(stop, up - now);
  }
  bool Up() override {
    absl::MutexLock lock(&mu_);
    return clock_->Now() >= up_at_;
  }

  // Releases blocked calls and fails every later one (UNAVAILABLE).
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

  absl::StatusOr<varan::v1::RegisterResponse> Register(
      const varan::v1::RegisterRequest& request, const std::string& join_token,
      absl::Duration timeout) override {
    return RegisterAt("", request, join_token, timeout);
  }

  absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
      const varan::v1::HeartbeatRequest& request, const std::string& credential,
      absl::Duration timeout) override {
    return HeartbeatAt("", request, credential, timeout);
  }

  absl::StatusOr<varan::v1::RenewCertificateResponse> RenewCertificate(
      const varan::v1::RenewCertificateRequest& request,
      const std::string& credential, absl::Duration /*timeout*/) override {
    return RenewAt("", request, credential);
  }

  std::unique_ptr<CoreTunnel> OpenTunnel(
      Executor* executor, const std::string& bearer,
      varan::v1::TunnelHello hello) override {
    return OpenTunnelAt("", executor, bearer, std::move(hello));
  }

 private:
  absl::StatusOr<varan::v1::RenewCertificateResponse> RenewAt(
      const std::string& core,
      const varan::v1::RenewCertificateRequest& request,
      const std::string& credential) {
    Call call{Kind::kRenew, clock_->Now(), core, credential, {}, {},
              {},           request};
    return std::get<absl::StatusOr<varan::v1::RenewCertificateResponse>>(
        Take(std::move(call)));
  }
  // The calls above, made on the connection to `core`.
  absl::StatusOr<varan::v1::RegisterResponse> RegisterAt(
      const std::string& core, const varan::v1::RegisterRequest& request,
      const std::string& join_token, absl::Duration /*timeout*/) {
    Call call{
        Kind::kRegister, clock_->Now(), core, join_token, request, {}, {}, {}};
    return std::get<absl::StatusOr<varan::v1::RegisterResponse>>(
        Take(std::move(call)));
  }
  absl::StatusOr<varan::v1::HeartbeatResponse> HeartbeatAt(
      const std::string& core, const varan::v1::HeartbeatRequest& request,
      const std::string& credential, absl::Duration /*timeout*/) {
    Call call{
        Kind::kHeartbeat, clock_->Now(), core, credential, {}, request, {}, {}};
    return std::get<absl::StatusOr<varan::v1::HeartbeatResponse>>(
        Take(std::move(call)));
  }
  std::unique_ptr<CoreTunnel> OpenTunnelAt(const std::string& core,
                                           Executor* /*executor*/,
                                           const std::string& bearer,
                                           varan::v1::TunnelHello hello) {
    Call call{Kind::kTunnelHello,
              clock_->Now(),
              core,
              bearer,
              {},
              {},
              std::move(hello),
              {}};
    return std::make_unique<Tunnel>(this, std::move(call));
  }

  // What Connect hands out: the fake, on behalf of one address.
  class Handle final : public CoreConnection {
   public:
    Handle(FakeCoreConnection* fake, std::string core)
        : fake_(fake), core_(std::move(core)) {}
    absl::StatusOr<varan::v1::RegisterResponse> Register(
        const varan::v1::RegisterRequest& request,
        const std::string& join_token, absl::Duration timeout) override {
      return fake_->RegisterAt(core_, request, join_token, timeout);
    }
    absl::StatusOr<varan::v1::HeartbeatResponse> Heartbeat(
        const varan::v1::HeartbeatRequest& request,
        const std::string& credential, absl::Duration timeout) override {
      return fake_->HeartbeatAt(core_, request, credential, timeout);
    }
    absl::StatusOr<varan::v1::RenewCertificateResponse> RenewCertificate(
        const varan::v1::RenewCertificateRequest& request,
        const std::string& credential, absl::Duration /*timeout*/) override {
      return fake_->RenewAt(core_, request, credential);
    }
    std::unique_ptr<CoreTunnel> OpenTunnel(
        Executor* executor, const std::string& bearer,
        varan::v1::TunnelHello hello) override {
      return fake_->OpenTunnelAt(core_, executor, bearer, std::move(hello));
    }
    bool AwaitUp(absl::Duration timeout,
                 const absl::Notification& stop) override {
      return fake_->AwaitUp(timeout, stop);
    }
    bool Up() override { return fake_->Up(); }

   private:
    FakeCoreConnection* const fake_;
    const std::string core_;
  };

  using Answer =
      std::variant<absl::StatusOr<varan::v1::RegisterResponse>,
                   absl::StatusOr<varan::v1::HeartbeatResponse>,
                   absl::StatusOr<varan::v1::TunnelOpened>,
                   absl::StatusOr<varan::v1::RenewCertificateResponse>>;

  class Tunnel final : public CoreTunnel {
   public:
    Tunnel(FakeCoreConnection* core, Call hello)
        : core_(core), hello_(std::move(hello)) {}
    ~Tunnel() override { Cancel(); }

    absl::StatusOr<varan::v1::TunnelOpened> WaitOpened(
        absl::Duration /*timeout*/) override {
      auto answer = std::get<absl::StatusOr<varan::v1::TunnelOpened>>(
          core_->Take(std::move(hello_)));
      absl::MutexLock lock(&mu_);
      last_answer_ = core_->clock_->Now();
      if (answer.ok() && answer->has_heartbeat_interval()) {
        interval_ = absl::Seconds(answer->heartbeat_interval().seconds());
      }
      if (!answer.ok()) {
        status_ = answer.status();
        if (!done_.HasBeenNotified()) done_.Notify();
      }
      return answer;
    }
    void SendHeartbeat(varan::v1::HeartbeatRequest /*heartbeat*/) override {
      absl::MutexLock lock(&core_->mu_);
      ++core_->tunnel_heartbeats_;
    }
    absl::Time last_answer() override {
      absl::MutexLock lock(&mu_);
      return last_answer_;
    }
    absl::Duration interval() override {
      absl::MutexLock lock(&mu_);
      return interval_;
    }
    std::optional<varan::v1::HeartbeatResponse> TakeTrustAnswer() override {
      absl::MutexLock lock(&core_->mu_);
      return std::exchange(core_->tunnel_trust_answer_, std::nullopt);
    }
    void Cancel() override {
      absl::MutexLock lock(&mu_);
      if (done_.HasBeenNotified()) return;
      status_ = absl::CancelledError("tunnel canceled");
      done_.Notify();
    }
    const absl::Notification& done() const override { return done_; }
    absl::Status status() override {
      absl::MutexLock lock(&mu_);
      return status_;
    }

   private:
    FakeCoreConnection* const core_;
    Call hello_;
    absl::Mutex mu_;
    absl::Time last_answer_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
    absl::Duration interval_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
    absl::Status status_ ABSL_GUARDED_BY(mu_);
    absl::Notification done_;
  };

  void Push(Kind kind, Answer answer) {
    absl::MutexLock lock(&mu_);
    script_.emplace_back(kind, std::move(answer));
  }

  // Records `call` and returns the next answer for it (see the class
  // comment for blocking and Close).
  Answer Take(Call call) {
    const Kind kind = call.kind;
    absl::MutexLock lock(&mu_);
    calls_.push_back(std::move(call));
    auto ready = [this, kind]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_ ||
             (next_ < script_.size() && script_[next_].first == kind);
    };
    mu_.Await(absl::Condition(&ready));
    if (closed_) {
      const absl::Status closed = absl::UnavailableError("fake core closed");
      switch (kind) {
        case Kind::kRegister:
          return absl::StatusOr<varan::v1::RegisterResponse>(closed);
        case Kind::kHeartbeat:
          return absl::StatusOr<varan::v1::HeartbeatResponse>(closed);
        case Kind::kTunnelHello:
          return absl::StatusOr<varan::v1::TunnelOpened>(closed);
        case Kind::kRenew:
          return absl::StatusOr<varan::v1::RenewCertificateResponse>(closed);
      }
    }
    return script_[next_++].second;
  }

  const Clock* const clock_;
  absl::Mutex mu_;
  std::vector<std::pair<Kind, Answer>> script_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> connects_ ABSL_GUARDED_BY(mu_);
  int tunnel_heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<varan::v1::HeartbeatResponse> tunnel_trust_answer_
      ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time up_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int awaits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace varan::periphery
