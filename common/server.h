// Starting a daemon's gRPC server on its listen addresses.
//
// The daemon owns its listening sockets (common/listener.h: the rules every
// Varan listener follows, and what it does when descriptors run short); gRPC
// gets each accepted connection through an external connection acceptor and
// never listens itself. The addresses actually bound (with the real port
// when 0 was asked) are returned, and what each socket really is (family,
// IPV6_V6ONLY) is logged. Every server also serves grpc.health.v1.Health
// and reflection (v1alpha).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/address.h"
#include "common/listener.h"
#include "grpcpp/grpcpp.h"

namespace varan {

// A started server and the listener feeding it. Destroying it stops the
// listener first.
struct RunningServer {
  std::unique_ptr<grpc::Server> server;
  // The addresses bound, real ports filled in, e.g. "[::]:7700".
  std::vector<HostPort> addresses;
  // Where the listener hands connections to `server`.
  std::unique_ptr<grpc::experimental::ExternalConnectionAcceptor> acceptor;
  // Accepts connections on `addresses` (declared last: stopped first).
  std::unique_ptr<Listener> listener;

  // Stops accepting (the listening sockets close, so new clients are
  // refused), then shuts `server` down: calls in flight get until
  // `deadline`. Use this rather than server->Shutdown, which would leave the
  // listener handing connections to a server that no longer takes them.
  void Shutdown(absl::Time deadline);
};

// Builds and starts a server with `services` on `listen` (after the IPv6
// fallback, see common/listener.h), with `credentials` for every connection
// (null: plaintext; see common/tls.h) and the connection limits of
// `listener`. Errors are UNAVAILABLE (address in use / cannot bind) or
// INVALID_ARGUMENT, naming the address. `services` must outlive the server.
absl::StatusOr<RunningServer> StartServer(
    const std::vector<HostPort>& listen,
    const std::vector<grpc::Service*>& services,
    const std::vector<std::pair<std::string, int>>& int_channel_args = {},
    std::shared_ptr<grpc::ServerCredentials> credentials = nullptr,
    const ListenerOptions& listener = {});

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
