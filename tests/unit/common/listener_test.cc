// The listener on real loopback sockets, without gRPC: what it binds, what
// it hands off, and what it refuses.
#include "common/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan {
namespace {

using ::testing::HasSubstr;

// Connects to `host`:`port` (IPv4 or IPv6 literal); the descriptor or -1.
int Connect(const std::string& host, uint16_t port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (host.find(':') != std::string::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    inet_pton(AF_INET, host.c_str(), &in->sin_addr);
    len = sizeof(sockaddr_in);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// True when the peer closed `fd` within 5 s (EOF or reset).
bool ClosedByPeer(int fd) {
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

// Keeps what the listener hands off, open, until destroyed.
class Sink {
 public:
  ~Sink() {
    absl::MutexLock lock(&mu_);
    for (int fd : fds_) close(fd);
  }
  Listener::HandOff hand_off() {
    return [this](int, int fd) {
      absl::MutexLock lock(&mu_);
      fds_.push_back(fd);
    };
  }
  // Waits (up to 5 s) until `n` connections were handed off.
  bool WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return fds_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return fds_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
};

TEST(ListenerTest, WildcardIsOneDualStackSocket) {
  auto listener = Listener::Open({{"::", 0}}, {});
  ASSERT_TRUE(listener.ok()) << listener.status();
  const uint16_t port = (*listener)->addresses()[0].port;
  EXPECT_NE(port, 0);
  EXPECT_EQ((*listener)->addresses()[0].host, "::");
  ASSERT_EQ((*listener)->descriptions().size(), 1u);
  EXPECT_EQ((*listener)->descriptions()[0],
            absl::StrCat("[::]:", port,
                         " (AF_INET6, IPV6_V6ONLY=0: IPv6 and IPv4 clients)"));
  Sink sink;
  (*listener)->Start(sink.hand_off());
  for (const char* host : {"127.0.0.1", "::1"}) {
    int fd = Connect(host, port);
    ASSERT_GE(fd, 0) << host;
    close(fd);
  }
  EXPECT_TRUE(sink.WaitFor(2));
}

TEST(ListenerTest, ATakenPortIsAnErrorNamingTheAddress) {
  auto first = Listener::Open({{"::", 0}}, {});
  ASSERT_TRUE(first.ok()) << first.status();
  const uint16_t port = (*first)->addresses()[0].port;
  for (const HostPort& hp : {HostPort{"::", port}, HostPort{"0.0.0.0", port}}) {
    auto second = Listener::Open({hp}, {});
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(second.status().message(),
              absl::StrCat("cannot listen on ", FormatHostPort(hp),
                           ": Address already in use (is another daemon "
                           "running there?)"));
    EXPECT_EQ(ProbeListen(hp).message(), second.status().message());
  }
}

TEST(ListenerTest, PerAddressCapClosesTheExcessAndServesOthers) {
  ListenerOptions options;
  options.max_connections_per_address = 2;
  auto listener = Listener::Open({{"::", 0}}, options);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const uint16_t port = (*listener)->addresses()[0].port;
  Sink sink;
  (*listener)->Start(sink.hand_off());
  std::vector<int> clients;
  for (int i = 0; i < 2; ++i) clients.push_back(Connect("127.0.0.1", port));
  ASSERT_TRUE(sink.WaitFor(2));
  int excess = Connect("127.0.0.1", port);
  ASSERT_GE(excess, 0);
  EXPECT_TRUE(ClosedByPeer(excess));
  // Another address, and IPv4-mapped counted as IPv4 (so ::1 is separate).
  clients.push_back(Connect("::1", port));
  EXPECT_TRUE(sink.WaitFor(3));
  EXPECT_EQ(sink.count(), 3u);
  for (int fd : clients) close(fd);
  close(excess);
}

TEST(ListenerTest, StopRefusesNewConnections) {
  auto listener = Listener::Open({{"127.0.0.1", 0}}, {});
  ASSERT_TRUE(listener.ok()) << listener.status();
  const uint16_t port = (*listener)->addresses()[0].port;
  EXPECT_EQ((*listener)->descriptions()[0],
            absl::StrCat("127.0.0.1:", port, " (AF_INET)"));
  Sink sink;
  (*listener)->Start(sink.hand_off());
  (*listener)->Stop();
  (*listener)->Stop();  // idempotent
  EXPECT_LT(Connect("127.0.0.1", port), 0);
}

TEST(ListenerTest, AHostNameListensOnEachOfItsAddressesOnOnePort) {
  auto listener = Listener::Open({{"localhost", 0}}, {});
  ASSERT_TRUE(listener.ok()) << listener.status();
  const uint16_t port = (*listener)->addresses()[0].port;
  EXPECT_EQ((*listener)->addresses()[0].host, "localhost");
  EXPECT_GE((*listener)->descriptions().size(), 1u);
  for (const std::string& d : (*listener)->descriptions()) {
    EXPECT_THAT(d, HasSubstr(absl::StrCat(":", port, " (AF_INET")));
  }
}

}  // namespace
}  // namespace varan
