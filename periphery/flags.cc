#include "periphery/flags.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/daemon.h"
#include "common/proxy.h"

namespace varan::periphery {

void AddPeripheryFlags(CLI::App& app, PeripheryConfig* c) {
  // Repeated --core (or an array in the config file) adds to the list, kept
  // as one comma-separated string so that every source reads the same way
  // and an empty element stays visible to the check at start.
  app.add_option_function<std::vector<std::string>>(
         "--core",
         [c](const std::vector<std::string>& cores) {
           c->core = absl::StrJoin(cores, ",");
         },
         "Core address to register with, e.g. [fd00::1]:7700, "
         "10.0.0.1:7700 or core.example:7700 (required); several core "
         "replicas comma-separated or --core repeated: the periphery uses "
         "one and moves to the next when it stops answering")
      ->allow_extra_args(false);
  app.add_option("--join-token-file", c->join_token_file,
                 "File holding the join token core accepts; needed until "
                 "the periphery has registered (then its own credential in "
                 "--state-dir is used)");
  app.add_option("--name", c->name,
                 "Unique name of this periphery (default: the host name)");
  app.add_option("--label", c->labels,
                 "Label k=v used by selectors; repeatable")
      ->delimiter(',');
  AddListenFlags(app, &c->daemon, "[::]:7701",
                 "Address to serve the Agent API on; repeatable. "
                 "[::]:PORT serves IPv6 and IPv4");
  app.add_flag("--no-listen", c->no_listen,
               "Serve no port at all (needs --tunnel): core reaches this "
               "periphery only through its tunnel");
  app.add_flag("--tunnel", c->tunnel,
               "Open a tunnel to core (one long-lived stream carrying "
               "registration, heartbeats and commands) instead of waiting "
               "to be dialed, for servers core cannot connect to");
  app.add_option("--advertise", c->advertise,
                 "Address core should dial, e.g. [fd00::5]:7701 (default: "
                 "this host's address toward core, and the listen port)");
  app.add_option("--state-dir", c->state_dir,
                 "Directory for the credential core issues")
      ->capture_default_str();
  AddGuardFlags(app, &c->daemon);
  AddServerTlsFlags(app, &c->daemon);
  AddClientTlsFlags(app, &c->core_tls, "core-", "core");
  app.add_option("--core-ca-hash", c->core_ca_hash,
                 "Pin of core's cluster CA (sha256:..., as varan-core logs "
                 "it); not needed when the join token carries it, as the "
                 "ones core issues do. Kept in --state-dir once given");
  app.add_flag("--insecure-plaintext", c->insecure_plaintext,
               "Talk to a core that serves plaintext (varan-core "
               "--insecure-plaintext): the credential and every command's "
               "output cross the network readable");
  AddProxyFlag(app, &c->proxy, "core");
  app.add_option("--max-concurrent", c->max_concurrent,
                 "Most commands running at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--kill-grace", c->kill_grace_seconds,
                 "Seconds between SIGTERM and SIGKILL when a command is "
                 "timed out or canceled")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--keepalive-time", c->keepalive_time_seconds,
                 "Seconds without traffic after which the connection to core "
                 "(and any to this periphery) is pinged")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--keepalive-timeout", c->keepalive_timeout_seconds,
                 "Seconds a ping may go unanswered before the connection is "
                 "dropped as dead (and reconnected)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--reconnect-max-backoff", c->reconnect_max_seconds,
                 "Longest wait, in seconds, between attempts to reach core "
                 "(waits start at 0.2 s, double, and are jittered)")
      ->capture_default_str()
      ->check(CLI::Range(0.2, 3600.0));
  app.add_option("--held-results", c->held_results,
                 "Results of core's commands kept until core acknowledges "
                 "them (for commands that finish while core is out of "
                 "reach); the oldest beyond this are dropped")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  app.add_option("--held-results-max-age", c->held_results_hours,
                 "Hours an unacknowledged result is kept at most")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 8760.0));
  app.add_option("--output-tail", c->output_tail,
                 "Bytes of each output stream of core's commands kept with a "
                 "held result")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{0}, uint64_t{16} * 1024 * 1024));
  FinishDaemonFlags(
      app, &c->daemon, "VARAN_CORE",
      "varan-periphery --core [::1]:7700 --join-token-file "
      "/etc/varan/join.token --name web-1 --label env=prod --state-dir "
      "/var/lib/varan/periphery");
}

}  // namespace varan::periphery
