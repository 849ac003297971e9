// The daemons' own listener against hostile or careless clients (issue
// #18): a descriptor flood does not wedge core, silent connections are
// closed at the handshake deadline, and one address cannot hold more than
// its share. Each runs over plaintext and over TLS.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;

// A self-signed certificate for localhost, 127.0.0.1 and ::1.
constexpr char kSelfSigned[] = R"sh(
set -e
cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server.key -out server.pem -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" 2>/dev/null
chmod 600 server.key
)sh";

// A TCP connection to 127.0.0.1:`port` (or [::1] when `v6`) from
// `source` (empty: any); -1 on failure. With `wait` false the connect is
// only started.
int RawConnect(uint16_t port, bool v6 = false, const std::string& source = "",
               bool wait = true) {
  int fd = socket(v6 ? AF_INET6 : AF_INET,
                  SOCK_STREAM | SOCK_CLOEXEC | (wait ? 0 : SOCK_NONBLOCK), 0);
  if (fd < 0) return -1;
  if (!source.empty()) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
      close(fd);
      return -1;
    }
  }
  int rc;
  if (v6) {
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(port);
    to.sin6_addr = in6addr_loopback;
    rc = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  } else {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  if (rc != 0 && !(!wait && errno == EINPROGRESS)) {
    close(fd);
    return -1;
  }
  return fd;
}

// How long until the peer closes `fd` (EOF or reset), reading and
// discarding what it sends; absl::InfiniteDuration() when it is still open
// after `limit`.
absl::Duration TimeUntilClosed(int fd, absl::Duration limit) {
  const absl::Time start = absl::Now();
  const timeval tv{0, 100 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[512];
  while (absl::Now() - start < limit) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return absl::Now() - start;
  }
  return absl::InfiniteDuration();
}

// True when the server sent something on `fd` within 2 s (it took the
// connection: gRPC's SETTINGS frame, or a TLS alert/handshake byte) and
// has not closed it.
bool ServedBytes(int fd) {
  const timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[64];
  return recv(fd, buf, sizeof(buf), 0) > 0;
}

class ListenerTest : public ::testing::TestWithParam<bool> {
 protected:
  bool tls() const { return GetParam(); }

  // A fleet whose core serves TLS (an operator's certificate) when the
  // parameter says so, plaintext otherwise, with `extra` core flags.
  std::unique_ptr<TestFleet> MakeFleet(std::vector<std::string> extra) {
    if (!tls()) extra.push_back("--insecure-plaintext");
    if (tls()) {
      RunResult r =
          RunProgram({"/bin/sh", "-c", kSelfSigned, "generate", certs_.path()});
      EXPECT_EQ(r.exit_code, 0) << "openssl failed: " << r.err;
      for (const char* f :
           {"--tls-cert", "server.pem", "--tls-key", "server.key"}) {
        extra.push_back(f[0] == '-' ? std::string(f) : certs_.File(f));
      }
    }
    auto fleet = std::make_unique<TestFleet>(std::move(extra));
    fleet->set_client_tls(client_tls());
    return fleet;
  }
  ClientTlsFiles client_tls() const {
    ClientTlsFiles t;
    if (tls()) t.ca = certs_.File("server.pem");
    return t;
  }
  // Extra periphery flags to reach the fleet's core.
  std::vector<std::string> periphery_args() const {
    if (!tls()) return {"--insecure-plaintext"};
    return {"--core-tls-ca", certs_.File("server.pem")};
  }

  TempDir certs_;
};

INSTANTIATE_TEST_SUITE_P(Listener, ListenerTest, ::testing::Bool(),
                         [](const auto& p) {
                           return p.param ? "Tls" : "Plaintext";
                         });

TEST_P(ListenerTest, DescriptorFloodDoesNotWedgeCore) {
  auto fleet = MakeFleet({});
  fleet->set_core_file_limit(256);
  fleet->StartCore();
  ASSERT_NE(fleet->StartPeriphery("before", {}, periphery_args()), nullptr);
  EXPECT_THAT(fleet->core()->Log(), HasSubstr("open-file limit 256"));

  // 400 connections, more than core has descriptors, held 3 s.
  std::vector<int> flood;
  for (int i = 0; i < 400; ++i) {
    int fd = RawConnect(fleet->core_port(), false, "", /*wait=*/false);
    ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
    flood.push_back(fd);
  }
  absl::SleepFor(absl::Seconds(3));
  for (int fd : flood) close(fd);
  const absl::Time flood_end = absl::Now();

  // A new client is served at once: no wedged accept loop.
  std::string token = ReadFile(fleet->admin_token_file());
  while (!token.empty() && token.back() == '\n') token.pop_back();
  bool served = WaitFor(
      [&] {
        auto client = client::CoreClient::Create(
            {fleet->core_address(), token, absl::Seconds(1), client_tls()});
        return client.ok() && (*client)->GetInfo().ok();
      },
      absl::Seconds(1));
  EXPECT_TRUE(served) << fleet->core()->Log();
  EXPECT_LE(absl::Now() - flood_end, absl::Seconds(1.5));
  EXPECT_TRUE(fleet->core()->Running());
  // Core said what it did with the excess.
  EXPECT_THAT(fleet->core()->Log(), HasSubstr("closed"));
  EXPECT_THAT(fleet->core()->Log(),
              ::testing::AnyOf(HasSubstr("high-water mark"),
                               HasSubstr("out of file descriptors")));

  // The periphery registered before the flood is still there and works.
  varan::v1::Target target;
  target.add_names("before");
  auto list = fleet->client()->ListPeripheries(target);
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].state(), varan::v1::PERIPHERY_STATE_ONLINE);
  RunResult exec = fleet->Ctl({"exec", "-n", "before", "--", "echo", "alive"});
  EXPECT_EQ(exec.exit_code, 0) << exec.err;
  EXPECT_EQ(exec.out, "alive\n");
}

TEST_P(ListenerTest, HandshakeDeadlineClosesSilentConnections) {
  auto fleet = MakeFleet({"--handshake-timeout", "1"});
  fleet->StartCore();
  int silent = RawConnect(fleet->core_port());
  ASSERT_GE(silent, 0);
  const absl::Duration closed_after = TimeUntilClosed(silent, absl::Seconds(5));
  close(silent);
  EXPECT_GE(closed_after, absl::Milliseconds(800));
  EXPECT_LE(closed_after, absl::Seconds(3));
  // Clients that do speak are not affected.
  EXPECT_TRUE(Healthy(fleet->core_address(), client_tls()));
}

TEST_P(ListenerTest, PerAddressCapRefusesTheExcessOnly) {
  auto fleet = MakeFleet({"--max-connections-per-address", "5"});
  fleet->StartCore();
  const uint16_t port = fleet->core_port();
  std::vector<int> held;
  for (int i = 0; i < 5; ++i) {
    held.push_back(RawConnect(port));
    ASSERT_GE(held.back(), 0);
  }
  if (!tls()) {
    // gRPC took them: each got the server's SETTINGS frame.
    for (int fd : held) EXPECT_TRUE(ServedBytes(fd));
  }
  // The sixth from 127.0.0.1 is closed at once.
  int excess = RawConnect(port);
  ASSERT_GE(excess, 0);
  EXPECT_LE(TimeUntilClosed(excess, absl::Seconds(5)), absl::Seconds(1));
  close(excess);
  // Other addresses are served meanwhile: another IPv4 address, and ::1.
  int other = RawConnect(port, false, "127.0.0.2");
  ASSERT_GE(other, 0);
  if (!tls()) {
    EXPECT_TRUE(ServedBytes(other));
  } else {
    EXPECT_EQ(TimeUntilClosed(other, absl::Milliseconds(500)),
              absl::InfiniteDuration());
  }
  close(other);
  EXPECT_TRUE(Healthy(absl::StrCat("[::1]:", port), client_tls()));
  EXPECT_THAT(fleet->core()->Log(),
              HasSubstr("127.0.0.1 holds 5 connections, the most one address "
                        "may hold"));
  // Once they are closed, 127.0.0.1 is served again.
  for (int fd : held) close(fd);
  EXPECT_TRUE(WaitFor(
      [&] { return Healthy(absl::StrCat("127.0.0.1:", port), client_tls()); }));
}

}  // namespace
}  // namespace varan::testing
