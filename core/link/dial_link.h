// DialLink: reaches a periphery by dialing its advertised address and calling
// its Agent service with the periphery's credential. DialLinkProvider caches
// one gRPC channel per address.
//
// A call that ends UNAVAILABLE is marked NotDelivered (periphery_link.h: its
// target fails at once instead of waiting for the periphery's report) only
// on structural evidence that no connection carried it: the periphery sent
// nothing back (no initial metadata, no event), and the channel was not
// READY when the call started nor when it ended — the call waited for a
// connection that never came (a periphery down, an address nobody listens
// on), and gRPC failed it without sending it. A call that started on a READY
// channel, or that heard anything from the periphery, may have started the
// command (a periphery killed mid-command, a connection cut), so it is not
// marked, whatever gRPC's message says. The one misjudged case: a channel
// that connected during the call, carried the request, and lost the
// connection before the periphery answered anything (its first event comes
// as soon as the command started).
//
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/keepalive.h"
#include "common/tls.h"
#include "core/link/periphery_link.h"
#include "grpcpp/grpcpp.h"

namespace varan::core {

// Counts one provider's calls that still exist: a call deletes itself on a
// gRPC thread just after its observer's OnDone returned, holding the
// channel until then.
class LiveCalls {
 public:
  // Held by each call as its first member: counts it from its construction
  // to the end of its destruction.
  class Token {
   public:
    explicit Token(std::shared_ptr<LiveCalls> calls);
    ~Token();
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;

   private:
    const std::shared_ptr<LiveCalls> calls_;
  };

  // Waits up to `limit` for every call to be gone; false if some remain.
  bool AwaitNone(absl::Duration limit);

 private:
  absl::Mutex mu_;
  int live_ ABSL_GUARDED_BY(mu_) = 0;
};

// Relayed calls (several core replicas): a replica asks the one holding a
// periphery's tunnel to carry its Agent calls (core/link/relay_service.h),
// naming the periphery in this header and authenticating with the
// replicas' shared secret.
inline constexpr char kRelayToHeader[] = "varan-relay-to";
// Set in the trailers of a relayed call the replica could not deliver (the
// periphery has no tunnel there): the call fails as Misrouted, and so does
// one that got nothing back on a channel that had no connection when it
// started nor when it ended (the replica was never reached: it sends its
// initial metadata before passing a request on).
inline constexpr char kNotDeliveredTrailer[] = "varan-not-delivered";

class DialLink final : public PeripheryLink {
 public:
  // `relay_to`: the periphery a call through another replica is for (empty:
  // a call to the periphery itself).
  DialLink(std::shared_ptr<grpc::Channel> channel, std::string address,
           std::string credential, std::shared_ptr<LiveCalls> live_calls,
           std::string relay_to = "");
  ExecuteCall* Execute(const varan::v1::ExecuteRequest& request,
                       ExecuteObserver* observer) override;

 private:
  // Shared with every call in flight: a call may outlive the link.
  std::shared_ptr<grpc::Channel> channel_;
  const std::string address_;
  const std::string credential_;
  const std::shared_ptr<LiveCalls> live_calls_;
  const std::string relay_to_;
};

class DialLinkProvider final : public LinkProvider {
 public:
  // Channels ping idle connections and reconnect per `keepalive` (see
  // common/keepalive.h), use `security` (TLS toward the peripheries,
  // --periphery-tls-*; default: plaintext) and `proxy` (--proxy: an HTTP
  // CONNECT proxy URL, "none", or empty for the environment's; see
  // common/proxy.h).
  explicit DialLinkProvider(Keepalive keepalive = {},
                            ChannelSecurity security = {},
                            std::string proxy = "")
      : keepalive_(keepalive),
        security_(std::move(security)),
        proxy_(std::move(proxy)) {}
  // The security of channels to one periphery, by its id (with the built-in
  // CA: mutual TLS checking that the periphery's certificate names it).
  using PeripherySecurity =
      std::function<ChannelSecurity(const std::string& id)>;
  // Set before the first link: channels to peripheries use it instead of
  // `security` (relays to other replicas keep `security`), one per
  // periphery and address.
  void set_periphery_security(PeripherySecurity security) {
    periphery_security_ = std::move(security);
  }
  // Forgets the cached channels: later links get new ones, with new
  // connections (each channel's security is made anew), while calls in
  // flight finish on theirs. Core calls it when its own certificate was
  // renewed, so that long-lived connections to peripheries do not go on
  // presenting the old one until it expires.
  void ResetChannels();
  // Waits (up to 5 s) for the calls' own deletion, which follows their
  // OnDone, so that the channels end here and not on a gRPC thread while
  // the process exits.
  ~DialLinkProvider() override;
  std::shared_ptr<PeripheryLink> LinkFor(
      const std::string& id, const std::string& address,
      const std::string& credential) override;
  // A link to periphery `id` through the core replica at `replica_address`
  // (kRelayToHeader), authenticated with the replicas' `secret`.
  std::shared_ptr<PeripheryLink> RelayLinkFor(
      const std::string& id, const std::string& replica_address,
      const std::string& secret);

 private:
  // `id` empty: a relay (the provider's own security).
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& address,
                                           const std::string& id);

  const Keepalive keepalive_;
  const ChannelSecurity security_;
  PeripherySecurity periphery_security_;
  const std::string proxy_;
  const std::shared_ptr<LiveCalls> live_calls_ = std::make_shared<LiveCalls>();
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
