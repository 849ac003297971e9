// Starting a daemon's gRPC server on its listen addresses.
//
// Rules every Varan listener follows:
//  * "[::]:p" is one socket for IPv6 and IPv4. Where the host has IPv6
//    disabled it becomes "0.0.0.0:p", and the daemon says so once.
//  * A port already in use is a start-up error naming the address; SO_REUSEPORT
//    is off, so two daemons never silently share a port.
//  * The addresses actually bound (with the real port when 0 was asked) are
//    logged and returned.
//  * Every server also serves grpc.health.v1.Health and reflection (v1alpha).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/address.h"
#include "grpcpp/grpcpp.h"

namespace varan {

// True when this host can create and bind an IPv6 socket and IPv6 is not
// switched off (net.ipv6.conf.all.disable_ipv6 = 1).
bool Ipv6Available();

// Replaces "[::]" with "0.0.0.0" when IPv6 is unavailable (logging a warning
// once per call that changed anything). Explicit IPv6 addresses are kept;
// binding them will then fail with a clear error.
std::vector<HostPort> ApplyIpv6Fallback(std::vector<HostPort> listen);

// Binds and releases a TCP socket on `addr` to find out, with the OS's
// words, whether a listener could be created there. Port 0 always passes.
absl::Status ProbeListen(const HostPort& addr);

// ProbeListen for every address, after the IPv6 fallback (without logging
// it): the first error, if any.
absl::Status CheckListenAddresses(const std::vector<HostPort>& listen);

struct RunningServer {
  std::unique_ptr<grpc::Server> server;
  // The addresses bound, real ports filled in, e.g. "[::]:7700".
  std::vector<HostPort> addresses;
};

// Builds and starts a server with `services` on `listen` (see the rules
// above), with `credentials` on every port (null: plaintext; see
// common/tls.h). Errors are UNAVAILABLE (address in use / cannot bind) or
// INVALID_ARGUMENT, naming the address. `services` must outlive the server.
absl::StatusOr<RunningServer> StartServer(
    const std::vector<HostPort>& listen,
    const std::vector<grpc::Service*>& services,
    const std::vector<std::pair<std::string, int>>& int_channel_args = {},
    std::shared_ptr<grpc::ServerCredentials> credentials = nullptr);

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and ignores
// SIGPIPE; call first thing in main so every thread created later inherits
// the mask. (Commands started by the periphery get default dispositions and
// an empty mask.)
void BlockTerminationSignals();

// Waits until SIGINT or SIGTERM arrives (requires BlockTerminationSignals),
// and returns the signal number. On SIGHUP calls `reload` (when set) and
// goes on waiting.
int WaitForTerminationSignal(const std::function<void()>& reload = nullptr);

}  // namespace varan
