#include "common/listener.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/connection_table.h"
#include "common/log.h"

namespace varan {
namespace {

// Connections accepted per socket before the other sockets get their turn.
constexpr int kAcceptBatch = 64;
// The kernel caps the backlog at net.core.somaxconn.
constexpr int kBacklog = 4096;
// Pauses after running out of descriptors, and after other accept errors.
constexpr absl::Duration kExhaustedPause = absl::Milliseconds(50);
constexpr absl::Duration kErrorPause = absl::Milliseconds(100);
// Dropping the entries of every closed connection (an fstat each): only
// bookkeeping, since an address at its cap is checked at once (Admit) and a
// reused descriptor replaces its entry; once a second cost about 1.5% of a
// core at 10,000 connections.
constexpr absl::Duration kReapPeriod = absl::Seconds(30);
constexpr absl::Duration kLogPeriod = absl::Seconds(10);

struct Resolved {
  sockaddr_storage addr;
  socklen_t len;
};

absl::StatusOr<std::vector<Resolved>> Resolve(const HostPort& hp) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot listen on ", FormatHostPort(hp),
                     ": cannot resolve host: ", gai_strerror(rc)));
  }
  std::vector<Resolved> out;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Resolved r{};
    std::memcpy(&r.addr, ai->ai_addr, ai->ai_addrlen);
    r.len = ai->ai_addrlen;
    const bool seen = std::any_of(out.begin(), out.end(), [&](const auto& o) {
      return o.len == r.len && std::memcmp(&o.addr, &r.addr, r.len) == 0;
    });
    if (!seen) out.push_back(r);
  }
  freeaddrinfo(res);
  return out;
}

absl::Status ListenError(const HostPort& hp, int err) {
  std::string hint;
  if (err == EADDRINUSE) hint = " (is another daemon running there?)";
  if (err == EADDRNOTAVAIL) hint = " (no interface has this address)";
  return absl::UnavailableError(absl::StrCat(
      "cannot listen on ", FormatHostPort(hp), ": ", std::strerror(err), hint));
}

// A TCP socket the way every Varan listener has it: SO_REUSEADDR (a
// restart need not wait for TIME_WAIT), never SO_REUSEPORT, and an IPv6
// socket dual-stack. Returns the descriptor or -errno.
int ListeningSocket(int family) {
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1, zero = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0)) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

// Tries to bind one resolved address as a listener would. Returns errno,
// or 0.
int TryBind(const sockaddr* sa, socklen_t len) {
  int fd = ListeningSocket(sa->sa_family);
  if (fd < 0) return -fd;
  int err = bind(fd, sa, len) == 0 ? 0 : errno;
  close(fd);
  return err;
}

// The host part of a socket address; IPv4-mapped IPv6 as IPv4.
std::string HostOf(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, sizeof(buf));
    } else {
      inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
    }
  } else {
    return "unknown";
  }
  return buf;
}

uint16_t PortOf(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET6
                   ? reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port
                   : reinterpret_cast<const sockaddr_in*>(&ss)->sin_port);
}

void SetPort(sockaddr_storage* ss, uint16_t port) {
  if (ss->ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(ss)->sin6_port = htons(port);
  } else {
    reinterpret_cast<sockaddr_in*>(ss)->sin_port = htons(port);
  }
}

// What one bound socket really is, for the log.
std::string Describe(int fd, const sockaddr_storage& bound,
                     const std::string& name) {
  if (bound.ss_family != AF_INET6) return absl::StrCat(name, " (AF_INET)");
  int v6only = -1;
  socklen_t len = sizeof(v6only);
  getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len);
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&bound);
  const bool wildcard = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
  return absl::StrCat(name, " (AF_INET6, IPV6_V6ONLY=", v6only,
                      wildcard ? (v6only == 0 ? ": IPv6 and IPv4 clients)"
                                              : ": IPv6 clients only)")
                               : ")");
}

rlim_t HardCeiling(rlim_t hard) {
  if (hard != RLIM_INFINITY) return hard;
  // An unlimited hard limit still cannot go past fs.nr_open.
  rlim_t nr_open = 1048576;
  if (std::ifstream f("/proc/sys/fs/nr_open"); f) f >> nr_open;
  return nr_open;
}

}  // namespace

uint64_t RaiseFileLimit() {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  const rlim_t before = lim.rlim_cur;
  const rlim_t ceiling = HardCeiling(lim.rlim_max);
  if (lim.rlim_cur < ceiling) {
    rlimit want = lim;
    want.rlim_cur = ceiling;
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
      spdlog::warn("cannot raise the open-file limit from {} to {}: {}", before,
                   ceiling, std::strerror(errno));
    }
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur != before) {
    spdlog::info("open-file limit raised from {} to the hard limit {}", before,
                 lim.rlim_cur);
  } else {
    spdlog::info("open-file limit {} (hard limit {})", lim.rlim_cur, ceiling);
  }
  return lim.rlim_cur;
}

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
  auto resolved = Resolve(addr);
  if (!resolved.ok()) return resolved.status();
  for (const Resolved& r : *resolved) {
    int err = TryBind(reinterpret_cast<const sockaddr*>(&r.addr), r.len);
    if (err != 0) return ListenError(addr, err);
  }
  return absl::OkStatus();
}

// The accept thread's state: everything here is touched by that thread
// only.
class Listener::Loop {
 public:
  Loop(const std::vector<Socket>& sockets, int wake_fd,
       const ListenerOptions& options, HandOff hand_off)
      : sockets_(sockets),
        wake_fd_(wake_fd),
        hand_off_(std::move(hand_off)),
        table_(options.max_connections_per_address, DescriptorIsSocket),
        reserve_fd_(open("/dev/null", O_RDONLY | O_CLOEXEC)) {
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    limit_ = lim.rlim_cur == RLIM_INFINITY ? INT_MAX : lim.rlim_cur;
    high_water_ = static_cast<uint64_t>(static_cast<double>(limit_) *
                                        options.fd_high_water_percent / 100);
  }
  ~Loop() {
    if (reserve_fd_ >= 0) close(reserve_fd_);
  }

  void Run() {
    std::vector<pollfd> pfds(sockets_.size() + 1);
    absl::Time next_reap = absl::Now() + kReapPeriod;
    while (true) {
      const absl::Time now = absl::Now();
      const bool paused = now < paused_until_;
      size_t n = 0;
      pfds[n++] = pollfd{wake_fd_, POLLIN, 0};
      if (!paused) {
        for (const Socket& s : sockets_) pfds[n++] = pollfd{s.fd, POLLIN, 0};
      }
      const absl::Time wake =
          std::min(next_reap, paused ? paused_until_ : next_reap);
      const int timeout_ms = static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(absl::Ceil(
                                  wake - now, absl::Milliseconds(1))),
                              0, 1000));
      if (poll(pfds.data(), n, timeout_ms) < 0 && errno != EINTR) {
        LogError("poll", errno);
        Pause(kErrorPause);
        continue;
      }
      if (pfds[0].revents != 0) return;  // Stop()
      for (size_t i = 1; i < n; ++i) {
        if (pfds[i].revents != 0) AcceptFrom(sockets_[i - 1]);
      }
      if (absl::Now() >= next_reap) {
        table_.Reap();
        next_reap = absl::Now() + kReapPeriod;
      }
    }
  }

 private:
  void Pause(absl::Duration d) {
    paused_until_ = std::max(paused_until_, absl::Now() + d);
  }

  void LogError(const char* what, int err) {
    uint64_t events = 0;
    if (error_log_.Record(absl::Now(), 1, &events)) {
      spdlog::error("{} failed: {} ({} times); accepting goes on", what,
                    std::strerror(err), events);
    }
  }

  void AcceptFrom(const Socket& s) {
    for (int i = 0; i < kAcceptBatch; ++i) {
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      int fd = accept4(s.fd, reinterpret_cast<sockaddr*>(&peer), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        Admit(s, fd, peer);
        continue;
      }
      const int err = errno;
      if (err == EAGAIN) return;  // EWOULDBLOCK on Linux
      if (err == EMFILE || err == ENFILE) {
        Shed(s, err);
        Pause(kExhaustedPause);
        return;
      }
      // Errors of the connection being accepted (accept(2)): try the next.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO ||
          err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN ||
          err == ENONET || err == EHOSTUNREACH || err == EOPNOTSUPP ||
          err == ENETUNREACH || err == EPERM) {
        continue;
      }
      LogError("accept", err);  // ENOBUFS, ENOMEM, ...
      Pause(kErrorPause);
      return;
    }
  }

  // Out of descriptors: gives up the reserve descriptor to accept and close
  // the connections waiting (so their clients learn at once instead of
  // hanging), then takes it back.
  void Shed(const Socket& s, int err) {
    uint64_t closed = 0;
    if (reserve_fd_ >= 0) {
      close(reserve_fd_);
      for (int i = 0; i < kAcceptBatch * 4; ++i) {
        int fd = accept4(s.fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) break;
        close(fd);
        ++closed;
      }
      reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    uint64_t events = 0;
    if (exhausted_log_.Record(absl::Now(), closed, &events)) {
      spdlog::warn(
          "out of file descriptors on {} ({}; limit {}): closed {} new "
          "connections at once; accepting goes on",
          s.name, std::strerror(err), limit_, events);
    }
  }

  void Admit(const Socket& s, int fd, const sockaddr_storage& peer) {
    uint64_t events = 0;
    // The kernel hands out the lowest free number: at least `fd`
    // descriptors are open.
    if (static_cast<uint64_t>(fd) >= high_water_) {
      close(fd);
      if (high_water_log_.Record(absl::Now(), 1, &events)) {
        spdlog::warn(
            "{} descriptors open, above the high-water mark {} (limit {}): "
            "closed {} new connections at once",
            fd, high_water_, limit_, events);
      }
      return;
    }
    const std::string address = HostOf(peer);
    if (!table_.Admit(address)) {
      close(fd);
      if (cap_log_.Record(absl::Now(), 1, &events)) {
        spdlog::warn(
            "{} holds {} connections, the most one address may hold "
            "(max-connections-per-address): closed {} new connections at "
            "once",
            address, table_.Count(address), events);
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct stat st {};
    if (fstat(fd, &st) == 0) {
      table_.Add(address, fd, static_cast<uint64_t>(st.st_ino));
    }
    hand_off_(s.fd, fd);
  }

  const std::vector<Socket>& sockets_;
  const int wake_fd_;
  const HandOff hand_off_;
  ConnectionTable table_;
  int reserve_fd_;
  uint64_t limit_ = 0;
  uint64_t high_water_ = 0;
  absl::Time paused_until_ = absl::InfinitePast();
  LogThrottle exhausted_log_{kLogPeriod};
  LogThrottle high_water_log_{kLogPeriod};
  LogThrottle cap_log_{kLogPeriod};
  LogThrottle error_log_{kLogPeriod};
};

absl::StatusOr<std::unique_ptr<Listener>> Listener::Open(
    const std::vector<HostPort>& listen, const ListenerOptions& options) {
  std::vector<Socket> sockets;
  std::vector<HostPort> addresses;
  std::vector<std::string> descriptions;
  auto fail = [&](absl::Status status) {
    for (const Socket& s : sockets) close(s.fd);
    return status;
  };
  for (const HostPort& hp : listen) {
    auto resolved = Resolve(hp);
    if (!resolved.ok()) return fail(resolved.status());
    uint16_t port = hp.port;
    for (Resolved& r : *resolved) {
      // Port 0: the port the first address got, for all of them.
      SetPort(&r.addr, port);
      int fd = ListeningSocket(r.addr.ss_family);
      if (fd < 0) return fail(ListenError(hp, -fd));
      sockets.push_back(Socket{fd, ""});
      if (bind(fd, reinterpret_cast<const sockaddr*>(&r.addr), r.len) != 0 ||
          ::listen(fd, kBacklog) != 0) {
        return fail(ListenError(hp, errno));
      }
      sockaddr_storage bound{};
      socklen_t len = sizeof(bound);
      getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
      port = PortOf(bound);
      sockets.back().name = FormatHostPort({HostOf(bound), port});
      descriptions.push_back(Describe(fd, bound, sockets.back().name));
    }
    addresses.push_back(HostPort{hp.host, port});
  }
  int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    return fail(
        absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno))));
  }
  auto listener = std::unique_ptr<Listener>(
      new Listener(std::move(sockets), std::move(addresses),
                   std::move(descriptions), options));
  listener->wake_fd_ = wake_fd;
  return listener;
}

Listener::Listener(std::vector<Socket> sockets, std::vector<HostPort> addresses,
                   std::vector<std::string> descriptions,
                   const ListenerOptions& options)
    : sockets_(std::move(sockets)),
      addresses_(std::move(addresses)),
      descriptions_(std::move(descriptions)),
      options_(options) {}

Listener::~Listener() { Stop(); }

void Listener::Start(HandOff hand_off) {
  loop_ =
      std::make_unique<Loop>(sockets_, wake_fd_, options_, std::move(hand_off));
  thread_ = std::thread([this] { loop_->Run(); });
}

void Listener::Stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
    thread_.join();
  }
  loop_.reset();
  for (Socket& s : sockets_) {
    if (s.fd >= 0) close(s.fd);
    s.fd = -1;
  }
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
}

}  // namespace varan
