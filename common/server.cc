#include "common/server.h"

#include <signal.h>

#include <algorithm>
#include <climits>

#include "common/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace varan {

void RunningServer::Shutdown(absl::Time deadline) {
  if (listener != nullptr) listener->Stop();
  if (server != nullptr) server->Shutdown(absl::ToChronoTime(deadline));
}

absl::StatusOr<RunningServer> StartServer(
    const std::vector<HostPort>& listen,
    const std::vector<grpc::Service*>& services,
    const std::vector<std::pair<std::string, int>>& int_channel_args,
    std::shared_ptr<grpc::ServerCredentials> credentials,
    const ListenerOptions& listener) {
  if (credentials == nullptr) {
    credentials = grpc::InsecureServerCredentials();
  }
  if (listen.empty()) {
    return absl::InvalidArgumentError("no listen address given");
  }
  RunningServer out;
  auto opened = Listener::Open(ApplyIpv6Fallback(listen), listener);
  if (!opened.ok()) return opened.status();
  out.listener = *std::move(opened);
  out.addresses = out.listener->addresses();

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  for (const auto& [key, value] : int_channel_args) {
    builder.AddChannelArgument(key, value);
  }
  // A connection that has not finished its TLS and HTTP/2 handshake (the
  // client's SETTINGS) by then is closed; this holds for connections handed
  // in from outside too.
  builder.AddChannelArgument(
      GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
      static_cast<int>(std::clamp<int64_t>(
          absl::ToInt64Milliseconds(listener.handshake_timeout), 1, INT_MAX)));
  // No AddListeningPort: every connection comes from the listener.
  out.acceptor = builder.experimental().AddExternalConnectionAcceptor(
      grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
      credentials);
  for (grpc::Service* service : services) builder.RegisterService(service);
  out.server = builder.BuildAndStart();
  if (out.server == nullptr) {
    return absl::InternalError(
        "the gRPC server did not start (see the log above)");
  }
  out.server->GetHealthCheckService()->SetServingStatus(true);
  for (const std::string& socket : out.listener->descriptions()) {
    spdlog::info("listening socket {}", socket);
  }
  out.listener->Start([acceptor = out.acceptor.get()](int listener_fd, int fd) {
    grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters p;
    p.listener_fd = listener_fd;
    p.fd = fd;
    acceptor->HandleNewConnection(&p);
  });
  return out;
}

void BlockTerminationSignals() {
  // Writes to a closed pipe or socket must fail with EPIPE, not kill us.
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal(const std::function<void()>& reload) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      if (reload) {
        spdlog::info("SIGHUP received; reloading");
        reload();
      } else {
        spdlog::info("SIGHUP received; nothing to reload");
      }
      continue;
    }
    return sig;
  }
}

}  // namespace varan
