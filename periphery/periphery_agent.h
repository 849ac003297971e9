// PeripheryAgent: one running periphery daemon as an object. Start() checks
// the configuration, assembles the parts (host snapshot, executor,
// credential holder, Agent service and its gRPC server unless --no-listen,
// the uplink to core) and starts them; Shutdown() stops them in order. The
// varan-periphery binary is flag parsing around one of these; a test can run
// several in one process.
//
// Ownership: the agent owns every part; the Clock given to Start must
// outlive it. Thread-safety: Start, Reload, Shutdown and the destructor are
// called from the owner's thread (one at a time); the parts run their own
// threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/address.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/peer_guard.h"
#include "common/server.h"
#include "common/tls.h"
#include "periphery/core_pins.h"
#include "periphery/exec/executor.h"
#include "periphery/host/facts.h"
#include "periphery/identity.h"
#include "periphery/server/agent_service.h"
#include "periphery/uplink/credential_holder.h"
#include "periphery/uplink/uplink.h"

namespace varan::periphery {

// What the command line says (see periphery/flags.cc for each flag's
// meaning); the defaults are the flags' defaults, except `daemon.listen`,
// which the flags default to "[::]:7701".
struct PeripheryConfig {
  // --config, --listen, --log-*, --allow, --auth-failure-limit, --tls-*.
  DaemonFlags daemon;
  // --core, required: one address, or several core replicas
  // comma-separated.
  std::string core;
  std::string join_token_file;
  std::string name;                 // default: the host name
  std::vector<std::string> labels;  // "key=value"
  std::string advertise;
  std::string state_dir = "/var/lib/varan/periphery";
  ClientTlsFiles core_tls;  // --core-tls-*
  // --core-ca-hash and --insecure-plaintext (periphery/core_trust.h).
  std::string core_ca_hash;
  bool insecure_plaintext = false;
  uint32_t max_concurrent = 64;
  double kill_grace_seconds = 5;
  bool tunnel = false;
  bool no_listen = false;
  double keepalive_time_seconds = 30;
  double keepalive_timeout_seconds = 10;
  double reconnect_max_seconds = 10;
  uint64_t held_results = 1000;
  double held_results_hours = 24;
  uint64_t output_tail = 64 * 1024;
  // --proxy: the HTTP CONNECT proxy toward core ("" takes it from the
  // environment, "none" turns proxies off).
  std::string proxy;
};

class PeripheryAgent {
 public:
  // Checks `config` before touching any file, prepares the state directory
  // and TLS files, starts the server (unless no_listen) and the uplink.
  // Errors (INVALID_ARGUMENT for a bad setting, otherwise the failing
  // step's code) carry the message the daemon prints, naming the flag or
  // file. `clock` times the uplink's waits and the guard's windows.
  static absl::StatusOr<std::unique_ptr<PeripheryAgent>> Start(
      const PeripheryConfig& config, const Clock* clock);

  // Shuts down (with a 2 s grace) unless Shutdown ran.
  ~PeripheryAgent();

  // SIGHUP: re-reads the TLS files (new ones take effect for new
  // connections; errors are logged and the previous files kept).
  void Reload();

  // Stops the uplink, cancels running commands and waits for them (their
  // kill grace plus `grace`), then gives calls in flight `grace` to finish.
  // Idempotent.
  void Shutdown(absl::Duration grace);

  // The addresses the Agent service listens on, real ports filled in
  // (empty with no_listen), and the address advertised to core ("" with
  // no_listen).
  const std::vector<HostPort>& addresses() const { return server_.addresses; }
  const std::string& advertised() const { return advertised_; }

  PeripheryAgent(const PeripheryAgent&) = delete;
  PeripheryAgent& operator=(const PeripheryAgent&) = delete;

 private:
  class Passkey {
    explicit Passkey() = default;
    friend class PeripheryAgent;
  };

 public:
  // For Start only.
  PeripheryAgent(Passkey, absl::Duration kill_grace);

 private:
  const absl::Duration kill_grace_;
  // Declared in start order: destroyed in reverse, the uplink and the
  // server before what they use.
  std::unique_ptr<HostSnapshot> host_;
  std::unique_ptr<PeerGuard> guard_;
  std::unique_ptr<TlsFiles> server_tls_;  // null: plaintext or no_listen
  // With core's CA pinned: this periphery's key and certificate (served,
  // and presented to core); null otherwise.
  std::unique_ptr<PeripheryIdentity> identity_;
  std::unique_ptr<TlsFiles> core_tls_;  // null: plaintext to core
  // The pins of core's cluster CA (null: core is not known by a pin).
  std::unique_ptr<CorePins> core_pins_;
  CredentialHolder credential_;
  std::unique_ptr<Executor> executor_;
  std::unique_ptr<AgentService> agent_;
  RunningServer server_;  // no server with no_listen
  std::string advertised_;
  std::unique_ptr<Uplink> uplink_;
  bool shut_down_ = false;
};

}  // namespace varan::periphery
