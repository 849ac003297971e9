// The periphery's link to core: registration and heartbeats, and in tunnel
// mode the tunnel that carries them and core's requests.
//
// A background thread registers with core using the join token, keeps the
// id and credential core returns in the state directory (mode 0600) so a
// restarted periphery resumes with them, and heartbeats at the interval core
// asks for. Each heartbeat reports the executions the Executor holds for
// core (running ones, and finished ones not yet acknowledged, with their
// results); core's answer acknowledges what it recorded. When core answers
// a heartbeat with NOT_FOUND or UNAUTHENTICATED (it forgot this periphery),
// the uplink registers again. When core cannot be reached it retries with
// capped exponential backoff and jitter (the first retry is fast); a wait
// for a core it could not connect to ends as soon as the connection is up
// (CoreConnection::AwaitUp), so a restarted core hears from it at once.
//
// Several cores (replicas sharing one database, so the credential is good on
// each): the uplink talks to one at a time, the current one. A call to it
// that finds it unreachable (UNAVAILABLE, DEADLINE_EXCEEDED, a tunnel that
// cannot open for either, or an open tunnel that ends) moves it to the next
// address in the list, round robin, keeping its id and credential; the next
// one is tried at once, and only when every address has failed in a row does
// the backoff above come between one pass over the list and the next. A
// refusal or a retry-after hint is not "unreachable": the uplink stays on that
// core. One address behaves as if the list did not exist.
//
// Tunnel mode (`tunnel`): the same happens over one Registry.Connect stream
// (see TunnelSession); a stream that ends, or on which core stops answering
// heartbeats for three intervals, is replaced by a new one.
//
// Core is reached through a CoreConnection (core_connection.h; the gRPC one
// in the daemon, an in-memory one in tests) and every wait (backoff,
// heartbeat interval) goes through the injected Clock, so the logic above is
// tested without a network or real sleeps.
//
// Thread-safe: Start and Stop are called from the owner's thread; everything
// else happens on the uplink's thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/address.h"
#include "common/clock.h"
#include "common/tls.h"
#include "periphery/core_pins.h"
#include "periphery/exec/executor.h"
#include "periphery/host/facts.h"
#include "periphery/uplink/certificate_keeper.h"
#include "periphery/uplink/core_connection.h"
#include "periphery/uplink/credential_holder.h"
#include "varan/v1/core.pb.h"

namespace varan::periphery {

struct UplinkOptions {
  // Core's addresses, at least one (several: replicas of one core, in the
  // order they are tried).
  std::vector<HostPort> cores;
  // Empty when the periphery was started without one (it has a saved
  // registration); registering again then fails until one is given.
  std::string join_token;
  std::string name;
  std::map<std::string, std::string> labels;
  // Address core should dial, e.g. "[fd00::5]:7701".
  std::string advertise_address;
  // advertise_address's host was worked out at start as this host's address
  // toward core (AdvertiseAddress: there was no --advertise and the listener
  // is a wildcard): registering with another core than cores[0] advertises
  // the address toward that one, same port (advertise_address when there
  // is no route to it).
  bool advertise_toward_core = false;
  std::string state_dir;
  // Reach core through a tunnel instead of waiting to be dialed.
  bool tunnel = false;
  absl::Duration rpc_timeout = absl::Seconds(10);
  // Reconnect backoff: first retry after `min_backoff`, doubling up to
  // `max_backoff`, each wait jittered to [0.5, 1.5) of it.
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  // HTTP/2 keepalive on the connection to core: a ping after this long
  // without traffic, and the connection is dropped when the answer takes
  // longer than the timeout (core permits pings this often, see
  // common/keepalive.h).
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // TLS toward core (--core-tls-*); default: plaintext.
  ChannelSecurity security;
  // With core's built-in CA: the periphery's key and certificate (sent for
  // signing at registration, renewed when due); null otherwise. The
  // connector must make connections that present its current certificate.
  CertificateKeeper* certificates = nullptr;
  // With core's CA pinned: the pins the connector trusts, which core's
  // heartbeat answers update (HeartbeatResponse.ca_pins); null otherwise.
  CorePins* core_pins = nullptr;
  // --proxy: an HTTP CONNECT proxy URL, "none", or empty (the environment
  // decides); see common/proxy.h.
  std::string proxy;
};

class Uplink {
 public:
  // `connect` makes the connection to one of options.cores (called on the
  // uplink's thread, again each time the uplink moves to another core; with
  // one address, once). `credential` receives the credential; `host` gives the
  // facts sent at registration and takes a stats sample per heartbeat;
  // `executor` runs what core sends over the tunnel and reports held
  // executions; `clock` times the waits. Those four must outlive the Uplink.
  Uplink(UplinkOptions options, CoreConnector connect,
         CredentialHolder* credential, HostSnapshot* host, Executor* executor,
         const Clock* clock);
  ~Uplink();

  // Loads saved state and starts the thread.
  void Start();
  // Stops the thread (an RPC in flight is abandoned at its deadline).
  void Stop();

  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

 private:
  void Run();
  // Tunnel mode: one tunnel from open to end. Returns how it ended; OK when
  // stopped, or when it registered and must be opened again at once to
  // present the certificate core issued (`reconnect`).
  absl::Status RunTunnel(bool* opened, bool* reconnect);
  // UNAUTHENTICATED when registering is needed but no join token was given.
  absl::Status NeedJoinToken() const;
  absl::Status Register();
  absl::Status Heartbeat();
  varan::v1::HeartbeatRequest MakeHeartbeat();
  varan::v1::RegisterRequest MakeRegisterRequest() const;
  // The address advertised to the current core (see
  // UplinkOptions::advertise_toward_core).
  std::string AdvertiseToCurrentCore() const;
  // The connection to the current core, made when first needed.
  CoreConnection& Core();
  std::string CurrentCore() const;
  // After `status` from the current core (`broke`: an open tunnel ended):
  // moves to the next core when it was unreachable, and waits as the class
  // comment says; false when stopped.
  bool Retry(const absl::Status& status, bool broke, absl::Duration* backoff,
             bool* failing);
  // The attempt succeeded: the next failure starts a new pass.
  void Connected(absl::Duration* backoff, bool* failing);
  // Keeps a registration core returned (state dir and credential holder).
  void SaveRegistration(const std::string& id, const std::string& credential);
  // Installs the certificate a registration returned; true when one was
  // (the connection to core must then be made again to present it).
  bool InstallCertificate(const std::string& chain_pem);
  // Asks core for a new certificate when the current one is due (after a
  // failure, not again for a minute); true when it installed one (the
  // caller decides when to connect again to present it).
  bool MaybeRenewCertificate();
  // Takes in what a heartbeat answer says about trust: the pins of core's
  // CAs (kept in options_.core_pins) and a request to renew the
  // certificate now (it is from a CA core is retiring).
  void AbsorbTrust(const varan::v1::HeartbeatResponse& answer);
  // Waits before retrying after `status`; false when stopped.
  bool Backoff(const absl::Status& status, absl::Duration* backoff,
               bool* failing);
  // Waits for `d` (on the clock) unless stopped first; false when stopped.
  bool SleepFor(absl::Duration d);

  const UplinkOptions options_;
  const CoreConnector connect_;
  CredentialHolder* const credential_;
  HostSnapshot* const host_;
  Executor* const executor_;
  const Clock* const clock_;
  std::string periphery_id_;  // uplink thread only (and Start)
  absl::Duration interval_ = absl::Seconds(10);
  // Uplink thread only: the current core (an index into options_.cores),
  // the connection to it (null until needed), the unreachable answers in a
  // row since the last success or pass over the list, and whether a whole
  // pass failed since the last success (later moves are logged at debug).
  size_t current_ = 0;
  std::unique_ptr<CoreConnection> core_;
  size_t unreachable_in_row_ = 0;
  bool all_failed_ = false;
  absl::Time next_renewal_try_ = absl::InfinitePast();
  // Uplink thread only: core asked for a new certificate (AbsorbTrust).
  bool renewal_requested_ = false;
  absl::Notification stop_;
  std::thread thread_;
};

// Whether `state_dir` holds the id and credential of an earlier
// registration (so no join token is needed to start).
bool HasSavedRegistration(const std::string& state_dir);

// The address to advertise to core: `flag` (--advertise) normalised when
// given; else the first bound listener, with a wildcard host replaced by
// this host's address toward the first of `cores` it can find a route to (so
// core dials back over the family the periphery used). Errors
// (INVALID_ARGUMENT, UNAVAILABLE) say which.
absl::StatusOr<std::string> AdvertiseAddress(
    const std::string& flag, const HostPort& bound,
    const std::vector<HostPort>& cores);

// The local address this host would use to reach `core` (as seen by a
// routing lookup), e.g. "fd00::5" or "10.0.0.5". Errors name `core`.
absl::StatusOr<std::string> LocalAddressToward(const HostPort& core);

}  // namespace varan::periphery
