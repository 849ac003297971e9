// A daemon's listening sockets and the thread that accepts on them. gRPC
// never listens itself: each accepted connection is handed to it (see
// common/server.h), so the rules below hold whatever gRPC would decide.
//
//  * "[::]:p" is one AF_INET6 socket with IPV6_V6ONLY=0 set explicitly: it
//    serves IPv6 and IPv4 clients even where loopback has no IPv6. Only
//    where IPv6 sockets cannot be had at all (or IPv6 is switched off) does
//    it become "0.0.0.0:p", and the daemon says so once.
//  * SO_REUSEPORT is off, so two daemons never silently share a port; a
//    taken port is an error naming the address.
//  * Accepting never stops: when the process is out of descriptors
//    (EMFILE/ENFILE) a reserve descriptor is given up to accept and close
//    the waiting connections, and accepting pauses briefly; other errors
//    pause it briefly too.
//  * Above a high-water mark of open descriptors new connections are closed
//    at once, and so are connections beyond the per-address cap; both with
//    a rate-limited log line. (A handshake deadline, enforced by gRPC, closes
//    connections that stay silent.)
//
// Thread-safety: a Listener is started and stopped from one thread; its
// accept thread calls the hand-off function.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/address.h"

namespace varan {

struct ListenerOptions {
  // Connections one client address may hold at once (an IPv6 address each;
  // IPv4-mapped IPv6 counts as the IPv4 address); 0: no cap.
  uint32_t max_connections_per_address = 1000;
  // A connection that has not finished its TLS and HTTP/2 handshake by then
  // is closed.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // Percentage of the descriptor limit (RLIMIT_NOFILE) above which new
  // connections are closed at once.
  double fd_high_water_percent = 90;
};

// Raises the soft RLIMIT_NOFILE to the hard limit and logs both. Returns
// the soft limit now in force.
uint64_t RaiseFileLimit();

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

class Listener {
 public:
  // Called on the accept thread with each admitted connection (non-blocking,
  // close-on-exec, TCP_NODELAY); it takes ownership of `fd`.
  using HandOff = std::function<void(int listener_fd, int fd)>;

  // Creates, binds and listens on every address of `listen` (a host name:
  // each address it resolves to; port 0: a free port, the same for all of
  // them). Errors are UNAVAILABLE (address in use, cannot bind) or
  // INVALID_ARGUMENT (cannot resolve), naming the address.
  static absl::StatusOr<std::unique_ptr<Listener>> Open(
      const std::vector<HostPort>& listen, const ListenerOptions& options);
  ~Listener();  // Stop()

  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The addresses bound, real ports filled in, in the order asked for (one
  // per --listen value).
  const std::vector<HostPort>& addresses() const { return addresses_; }
  // One line per socket saying what really listens, e.g. "[::]:7700
  // (AF_INET6, IPV6_V6ONLY=0: IPv6 and IPv4 clients)".
  const std::vector<std::string>& descriptions() const { return descriptions_; }

  // Starts the accept thread. Call once.
  void Start(HandOff hand_off);
  // Closes the listening sockets (new connections are refused) and ends the
  // accept thread. Idempotent.
  void Stop();

 private:
  struct Socket {
    int fd;
    std::string name;  // "[::]:7700"
  };
  Listener(std::vector<Socket> sockets, std::vector<HostPort> addresses,
           std::vector<std::string> descriptions,
           const ListenerOptions& options);
  class Loop;  // the accept thread's state (listener.cc)

  std::vector<Socket> sockets_;
  const std::vector<HostPort> addresses_;
  const std::vector<std::string> descriptions_;
  const ListenerOptions options_;
  int wake_fd_ = -1;  // eventfd: Stop() wakes the thread through it
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace varan
