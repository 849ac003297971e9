// Peripheries' certificates from core's built-in cluster CA (issue #20):
// issued at registration for the periphery's own key, served on its port
// and presented to core, renewed before they expire (short lifetimes
// here), over IPv4 and IPv6, dial and tunnel.
#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "common/tls.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The chain the server at `address` presents in its TLS handshake.
std::string ServedChain(const std::string& address) {
  auto seen = std::make_shared<ProbedChain>();
  ChannelSecurity probe = MakeProbeSecurity(seen);
  auto channel = grpc::CreateChannel(address, probe.credentials);
  // The probe refuses the server, so this ends at the deadline, having seen
  // the chain.
  channel->WaitForConnected(std::chrono::system_clock::now() +
                            std::chrono::seconds(3));
  absl::MutexLock lock(&seen->mu);
  return seen->chain_pem;
}

class PeripheryCertTest : public ::testing::Test {
 protected:
  std::string PeripheryFile(const std::string& name, const std::string& file) {
    return fleet_->dir().File("periphery-" + name + "/" + file);
  }
  std::string IdOf(const std::string& name) {
    return Trimmed(ReadFile(PeripheryFile(name, "periphery_id")));
  }
  pki::CertificateInfo Held(const std::string& name) {
    auto info = pki::Inspect(ReadFile(PeripheryFile(name, "periphery.crt")));
    EXPECT_TRUE(info.ok()) << info.status();
    return info.ok() ? *info : pki::CertificateInfo{};
  }

  std::unique_ptr<TestFleet> fleet_;
};

// Dial over IPv4 and IPv6 and a tunnel: each periphery holds a certificate
// the cluster CA issued to its id for its own key, which never left it;
// a dial periphery serves it, and core's calls to it work.
TEST_F(PeripheryCertTest, EachPeripheryHoldsAndServesItsOwnCertificate) {
  fleet_ = std::make_unique<TestFleet>();
  fleet_->StartCore();
  const std::string ca = ReadFile(fleet_->dir().File("core/pki/ca.crt"));
  const std::string pin = *pki::AuthorityPin(ca);
  ASSERT_NE(fleet_->StartPeriphery("v6"), nullptr);
  // Also on IPv4, and core told to dial that one.
  const std::string v4 = absl::StrCat("127.0.0.1:", FreePort());
  ASSERT_NE(
      fleet_->StartPeriphery("v4", {}, {"--listen", v4, "--advertise", v4}),
      nullptr);
  ASSERT_NE(fleet_->StartPeriphery("tun", {}, {"--tunnel", "--no-listen"}),
            nullptr);
  for (const std::string name : {"v6", "v4", "tun"}) {
    SCOPED_TRACE(name);
    const std::string chain = ReadFile(PeripheryFile(name, "periphery.crt"));
    const pki::CertificateInfo info = Held(name);
    EXPECT_EQ(info.common_name, IdOf(name));
    EXPECT_THAT(info.dns_names, ElementsAre(pki::kPeripheryName));
    EXPECT_TRUE(
        pki::Verify(ca, chain, absl::Now(), pki::Usage::kClientAuth).ok());
    EXPECT_LE(info.not_after, absl::Now() + absl::Hours(24));
    // The key stayed private; core's log never saw it.
    const std::string key = ReadFile(PeripheryFile(name, "periphery.key"));
    EXPECT_THAT(key, HasSubstr("PRIVATE KEY"));
    EXPECT_THAT(fleet_->core()->Log(),
                ::testing::Not(HasSubstr(key.substr(30, 40))));
  }
  for (const std::string name : {"v6", "v4"}) {
    SCOPED_TRACE(name);
    auto p = fleet_->client()->GetPeriphery(name);
    ASSERT_TRUE(p.ok()) << p.status();
    const std::string served = ServedChain(p->address());
    auto info = pki::Inspect(served);
    ASSERT_TRUE(info.ok()) << info.status() << " from " << p->address();
    EXPECT_EQ(info->common_name, IdOf(name));
    auto pins = pki::ChainAuthorityPins(served);
    ASSERT_TRUE(pins.ok());
    EXPECT_THAT(*pins, ElementsAre(pin));
  }
  EXPECT_EQ(fleet_->client()->GetPeriphery("v4")->address(), v4);
  RunResult r = fleet_->Ctl({"exec", "-n", "v6", "-n", "v4", "-n", "tun",
                             "--no-prefix", "--", "echo", "mutual"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "mutual\nmutual\nmutual\n");
}

// Certificates living 12 s, heartbeats every second: each periphery asks
// for a new one after about 8 s, and keeps working past the first one's
// end.
TEST_F(PeripheryCertTest, CertificatesAreRenewedBeforeTheyExpire) {
  fleet_ = std::make_unique<TestFleet>(std::vector<std::string>{
      "--periphery-cert-lifetime", "12", "--heartbeat-interval", "1"});
  fleet_->StartCore();
  ASSERT_NE(fleet_->StartPeriphery("dial"), nullptr);
  ASSERT_NE(fleet_->StartPeriphery("tun", {}, {"--tunnel"}), nullptr);
  const pki::CertificateInfo first_dial = Held("dial");
  const pki::CertificateInfo first_tun = Held("tun");
  EXPECT_LE(first_dial.not_after, absl::Now() + absl::Seconds(12));
  // Past the first certificates' end.
  const absl::Time end = std::max(first_dial.not_after, first_tun.not_after);
  ASSERT_TRUE(WaitFor([&] { return absl::Now() > end + absl::Seconds(1); },
                      absl::Seconds(20)));
  for (const std::string name : {"dial", "tun"}) {
    SCOPED_TRACE(name);
    const pki::CertificateInfo now = Held(name);
    EXPECT_NE(now.serial_hex,
              (name == "dial" ? first_dial : first_tun).serial_hex);
    EXPECT_GT(now.not_after, absl::Now());
    EXPECT_EQ(now.common_name, IdOf(name));
    EXPECT_THAT(fleet_->core()->Log(),
                HasSubstr("renewed the certificate of periphery " + name));
  }
  // Still online, and still reachable both ways.
  auto list = fleet_->client()->ListPeripheries({});
  ASSERT_TRUE(list.ok()) << list.status();
  for (const auto& p : *list) {
    EXPECT_EQ(p.state(), varan::v1::PERIPHERY_STATE_ONLINE) << p.name();
  }
  RunResult r = fleet_->Ctl({"exec", "-n", "dial", "-n", "tun", "--no-prefix",
                             "--", "echo", "renewed"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "renewed\nrenewed\n");
  EXPECT_THAT(fleet_->core()->Log(),
              ::testing::Not(HasSubstr("refused a call")));
}

// A periphery off for longer than its certificate's life comes back on its
// own: it renews with the expired one (which core accepts for that alone)
// before presenting anything else, and needs no join token use.
TEST_F(PeripheryCertTest, APeripheryOffLongerThanItsCertificateComesBack) {
  fleet_ = std::make_unique<TestFleet>(std::vector<std::string>{
      "--periphery-cert-lifetime", "10", "--heartbeat-interval", "1"});
  fleet_->StartCore();
  // A fixed port, for core to dial it there again after its restart.
  const std::string port = absl::StrCat("[::1]:", FreePort());
  Daemon* dial = fleet_->StartPeriphery(
      "dial", {}, {"--listen", port, "--advertise", port});
  Daemon* tun = fleet_->StartPeriphery("tun", {}, {"--tunnel"});
  ASSERT_NE(dial, nullptr);
  ASSERT_NE(tun, nullptr);
  dial->Stop();
  tun->Stop();
  const absl::Time end =
      std::max(Held("dial").not_after, Held("tun").not_after);
  ASSERT_TRUE(WaitFor([&] { return absl::Now() > end + absl::Seconds(1); },
                      absl::Seconds(20)));
  EXPECT_LT(Held("dial").not_after, absl::Now());
  dial->Start();
  tun->Start();
  for (const std::string name : {"dial", "tun"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(WaitFor([&] { return Held(name).not_after > absl::Now(); }));
    EXPECT_THAT(fleet_->core()->Log(),
                HasSubstr("renewed the certificate of periphery " + name));
    EXPECT_TRUE(WaitFor([&] {
      auto p = fleet_->client()->GetPeriphery(name);
      return p.ok() && p->state() == varan::v1::PERIPHERY_STATE_ONLINE;
    }));
  }
  RunResult r = fleet_->Ctl(
      {"exec", "-n", "dial", "-n", "tun", "--no-prefix", "--", "echo", "back"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "back\nback\n");
  // Each registered once: the restart used no join token.
  const std::string log = fleet_->core()->Log();
  for (const std::string name : {"dial", "tun"}) {
    EXPECT_THAT(log, HasSubstr("periphery " + name + " registered from"));
    EXPECT_EQ(log.find("periphery " + name + " registered from"),
              log.rfind("periphery " + name + " registered from"));
  }
}

// No bearer secret is kept in core.db in the clear: operator and join
// tokens were hashes already; peripheries' credentials are now too, as core
// authenticates to peripheries with its certificate.
TEST_F(PeripheryCertTest, CoreDbHoldsNoBearerSecretInTheClear) {
  fleet_ = std::make_unique<TestFleet>();
  fleet_->StartCore();
  ASSERT_NE(fleet_->StartPeriphery("dial"), nullptr);
  ASSERT_NE(fleet_->StartPeriphery("tun", {}, {"--tunnel"}), nullptr);
  RunResult created =
      fleet_->Ctl({"tokens", "create", "--name", "ci", "--role", "operator"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  RunResult r = fleet_->Ctl(
      {"exec", "-n", "dial", "-n", "tun", "--no-prefix", "--", "true"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::pair<std::string, std::string>> secrets = {
      {"dial's credential",
       Trimmed(ReadFile(PeripheryFile("dial", "credential")))},
      {"tun's credential",
       Trimmed(ReadFile(PeripheryFile("tun", "credential")))},
      {"the admin token", Trimmed(ReadFile(fleet_->admin_token_file()))},
      {"the join token",
       SplitJoinToken(Trimmed(ReadFile(fleet_->join_token_file()))).secret},
      {"the operator token", Trimmed(created.out)},
  };
  fleet_->core()->Stop();
  std::string db;
  for (const char* file : {"core.db", "core.db-wal", "core.db-shm"}) {
    db += ReadFile(fleet_->dir().File(std::string("core/") + file));
  }
  ASSERT_GT(db.size(), 4096u);
  for (const auto& [what, secret] : secrets) {
    ASSERT_EQ(secret.size(), 64u) << what;
    EXPECT_EQ(db.find(secret), std::string::npos) << what << " is in core.db";
  }
  // The scan does find what is there: the ids, and the credentials' hashes.
  EXPECT_NE(db.find(IdOf("dial")), std::string::npos);
  EXPECT_NE(db.find(SecretHash(secrets[0].second)), std::string::npos);
  EXPECT_NE(db.find(SecretHash(secrets[1].second)), std::string::npos);
}

}  // namespace
}  // namespace varan::testing
