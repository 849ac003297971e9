// Test support for integration tests: start the real varan binaries on
// loopback, run varanctl, wait for conditions without fixed sleeps.
//
// Every Daemon started here is killed (SIGKILL) by its destructor if still
// running, so a failing test leaves nothing behind. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/core_client.h"

namespace varan::testing {

// GetJob.preview_bytes the tests ask for: a small command's whole output
// arrives in OutputInfo.head.
inline constexpr uint32_t kPreview = 65536;

// Absolute path of a built binary ("varan-core", "varanctl", ...).
std::string BinPath(const std::string& name);

// A TCP port that is free on [::] and 0.0.0.0 right now.
uint16_t FreePort();

// A fresh directory under $TMPDIR, removed with its content on destruction.
class TempDir {
 public:
  // Under `base`; by default $TMPDIR, else /tmp.
  explicit TempDir(const std::string& base = "");
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
// `s` without leading and trailing whitespace (a token file's newline).
std::string Trimmed(const std::string& s);
void WriteFile(const std::string& path, const std::string& content);

struct RunResult {
  int exit_code = -1;  // -1: did not exit in time (it was killed)
  std::string out;
  std::string err;
};

// Runs `argv` to completion (killing it after `timeout`) with `env` added to
// this process's environment.
RunResult RunProgram(const std::vector<std::string>& argv,
                     const std::map<std::string, std::string>& env = {},
                     absl::Duration timeout = absl::Seconds(30));

// grpc.health.v1 Check on a fresh channel to `address` (over TLS when `tls`
// says so): true when SERVING.
bool Healthy(const std::string& address, const ClientTlsFiles& tls = {});

// Service names listed by the server reflection service (v1alpha) at
// `address`, or an empty list when the call fails.
std::vector<std::string> ReflectionServices(const std::string& address,
                                            const ClientTlsFiles& tls = {});

// A process's resident set size in kB (VmRSS of /proc/PID/status), or -1.
long RssKb(pid_t pid);

// Polls `condition` every 20 ms until true or `timeout`; returns its last
// value.
bool WaitFor(const std::function<bool()>& condition,
             absl::Duration timeout = absl::Seconds(10));

// A background process whose stdout and stderr go to a log file.
class Daemon {
 public:
  Daemon(std::vector<std::string> argv, std::string log_path,
         std::map<std::string, std::string> env = {});
  ~Daemon();

  // Starts with RLIMIT_NOFILE `limit` (soft and hard) instead of this
  // process's; 0: inherit. Set before Start.
  void set_file_limit(uint64_t limit) { file_limit_ = limit; }
  void Start();
  pid_t pid() const { return pid_; }
  bool Running();
  // Sends `sig`, waits up to `timeout`; returns the exit code (128+N if
  // killed by signal N), or -1 if it did not exit in time.
  int Stop(int sig = 15, absl::Duration timeout = absl::Seconds(15));
  // Waits for exit without signalling; same return as Stop.
  int Wait(absl::Duration timeout);
  std::string Log() const { return ReadFile(log_path_); }

 private:
  std::vector<std::string> argv_;
  std::string log_path_;
  std::map<std::string, std::string> env_;
  uint64_t file_limit_ = 0;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// Pins the built-in cluster CA of the core whose data directory is
// `core_data_dir` (the pin its join.token carries).
ClientTlsFiles PinnedCore(const std::string& core_data_dir);
// A channel to `address` secured by `tls` (common/tls.h).
std::shared_ptr<grpc::Channel> SecureChannel(const std::string& address,
                                             const ClientTlsFiles& tls);

// A core on loopback with its data dir, and peripheries registered to it.
class TestFleet {
 public:
  // `core_listen` defaults to "[::]:<free port>".
  explicit TestFleet(std::vector<std::string> extra_core_args = {});
  ~TestFleet();

  // How this fixture's own calls (health checks, client(), Ctl()) reach a
  // core serving an operator's certificates. Set before StartCore. Unset,
  // they pin core's built-in cluster CA (the pin its join.token carries),
  // or use plaintext when core runs with --insecure-plaintext.
  void set_client_tls(ClientTlsFiles tls) { client_tls_ = std::move(tls); }
  // What this fixture's own calls use (see set_client_tls).
  ClientTlsFiles client_tls() const;
  // Whether core was given --insecure-plaintext.
  bool plaintext() const;
  // For calling a periphery's Agent as core does: TLS presenting core's
  // certificate from its built-in CA (the periphery's not checked).
  ClientTlsFiles AsCore() const;
  // Core's RLIMIT_NOFILE (soft and hard; 0: inherited). Set before
  // StartCore.
  void set_core_file_limit(uint64_t limit) { core_file_limit_ = limit; }

  // Starts core and waits until it answers with the admin token.
  void StartCore();
  // Stops core with `sig` (dropping this fixture's client first, see
  // ~TestFleet) and returns its exit code.
  int StopCore(int sig = 15);
  // Starts a periphery named `name` (with `env` added to its environment)
  // and waits until core lists it online. It joins with core's join.token
  // unless `extra_args` has a --join-token-file, and listens on [::1]:0
  // unless it has a --listen.
  Daemon* StartPeriphery(const std::string& name,
                         const std::vector<std::string>& labels = {},
                         std::vector<std::string> extra_args = {},
                         std::map<std::string, std::string> env = {});
  // Like StartPeriphery without waiting for it to come online (to start
  // many at once).
  Daemon* LaunchPeriphery(const std::string& name,
                          const std::vector<std::string>& labels = {},
                          std::vector<std::string> extra_args = {},
                          std::map<std::string, std::string> env = {});

  uint16_t core_port() const { return core_port_; }
  std::string core_address() const;  // "[::1]:port"
  std::string admin_token_file() const;
  std::string join_token_file() const;
  const TempDir& dir() const { return dir_; }
  Daemon* core() { return core_.get(); }
  client::CoreClient* client();

  // Waits until job `id` is no longer running (a test failure when it still
  // is after `timeout`); returns it as last read, with kPreview previews.
  varan::v1::Job WaitFinished(const std::string& id,
                              absl::Duration timeout = absl::Seconds(20));

  // A channel to core (at `address`, default core_address()) secured as
  // this fixture's own calls are.
  std::shared_ptr<grpc::Channel> Channel(const std::string& address = "") const;

  // varanctl with --core and --token-file set, then `args`.
  RunResult Ctl(const std::vector<std::string>& args);

 private:
  TempDir dir_;
  uint16_t core_port_;
  std::vector<std::string> extra_core_args_;
  std::unique_ptr<Daemon> core_;
  std::vector<std::unique_ptr<Daemon>> peripheries_;
  std::unique_ptr<client::CoreClient> client_;
  ClientTlsFiles client_tls_;
  uint64_t core_file_limit_ = 0;
};

}  // namespace varan::testing
