#include "common/server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace varan {
namespace {

// Tries to bind one resolved address the way gRPC will (SO_REUSEADDR, dual
// stack for IPv6 wildcard). Returns errno, or 0.
int TryBind(const sockaddr* sa, socklen_t len) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (sa->sa_family == AF_INET6) {
    int zero = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  int err = 0;
  if (bind(fd, sa, len) != 0) err = errno;
  close(fd);
  return err;
}

}  // namespace

bool Ipv6Available() {
  // IPv6 switched off by sysctl still lets a socket bind [::], but no
  // interface will ever carry IPv6: treat it as unavailable.
  if (std::ifstream f("/proc/sys/net/ipv6/conf/all/disable_ipv6"); f) {
    int disabled = 0;
    if (f >> disabled && disabled == 1) return false;
  }
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_any;
  sa.sin6_port = 0;
  return TryBind(reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
}

absl::Status CheckListenAddresses(const std::vector<HostPort>& listen) {
  const bool v6 = Ipv6Available();
  for (HostPort hp : listen) {
    if (hp.host == "::" && !v6) hp.host = "0.0.0.0";
    if (absl::Status s = ProbeListen(hp); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<HostPort> ApplyIpv6Fallback(std::vector<HostPort> listen) {
  bool has_v6_wildcard = false;
  for (const auto& hp : listen) {
    if (hp.host == "::") has_v6_wildcard = true;
  }
  if (!has_v6_wildcard || Ipv6Available()) return listen;
  std::vector<std::string> changed;
  for (auto& hp : listen) {
    if (hp.host == "::") {
      changed.push_back(FormatHostPort(hp));
      hp.host = "0.0.0.0";
    }
  }
  spdlog::warn(
      "IPv6 is not available on this host; listening on IPv4 only "
      "instead of {}",
      absl::StrJoin(changed, ", "));
  return listen;
}

absl::Status ProbeListen(const HostPort& addr) {
  if (addr.port == 0) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  int rc = getaddrinfo(addr.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on ", FormatHostPort(addr),
                     ": cannot resolve host: ", gai_strerror(rc)));
  }
  int err = 0;
  for (addrinfo* ai = res; ai != nullptr && err == 0; ai = ai->ai_next) {
    err = TryBind(ai->ai_addr, ai->ai_addrlen);
  }
  freeaddrinfo(res);
  if (err != 0) {
    std::string hint;
    if (err == EADDRINUSE) hint = " (is another daemon running there?)";
    if (err == EADDRNOTAVAIL) hint = " (no interface has this address)";
    return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                               FormatHostPort(addr), ": ",
                                               std::strerror(err), hint));
  }
  return absl::OkStatus();
}

absl::StatusOr<RunningServer> StartServer(
    const std::vector<HostPort>& listen,
    const std::vector<grpc::Service*>& services,
    const std::vector<std::pair<std::string, int>>& int_channel_args,
    std::shared_ptr<grpc::ServerCredentials> credentials) {
  if (credentials == nullptr) {
    credentials = grpc::InsecureServerCredentials();
  }
  if (listen.empty()) {
    return absl::InvalidArgumentError("no listen address given");
  }
  std::vector<HostPort> addrs = ApplyIpv6Fallback(listen);
  for (const auto& hp : addrs) {
    absl::Status s = ProbeListen(hp);
    if (!s.ok()) return s;
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC turns SO_REUSEPORT on by default, which would let a second daemon
  // bind the same port and silently take half the connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  for (const auto& [key, value] : int_channel_args) {
    builder.AddChannelArgument(key, value);
  }
  std::vector<int> ports(addrs.size(), 0);
  for (size_t i = 0; i < addrs.size(); ++i) {
    builder.AddListeningPort(FormatHostPort(addrs[i]), credentials, &ports[i]);
  }
  for (grpc::Service* service : services) builder.RegisterService(service);
  RunningServer out;
  out.server = builder.BuildAndStart();
  if (out.server == nullptr) {
    std::vector<std::string> names;
    for (const auto& hp : addrs) names.push_back(FormatHostPort(hp));
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", absl::StrJoin(names, ", "),
                     " (gRPC could not bind; see the log above)"));
  }
  for (size_t i = 0; i < addrs.size(); ++i) {
    if (ports[i] == 0) {
      out.server->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", FormatHostPort(addrs[i])));
    }
    HostPort bound = addrs[i];
    bound.port = static_cast<uint16_t>(ports[i]);
    out.addresses.push_back(bound);
  }
  out.server->GetHealthCheckService()->SetServingStatus(true);
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
