// Tests for periphery/periphery_agent.h: the daemon as an object. Agents
// serve on loopback port 0 and point at a core nobody serves; their uplinks
// wait on a RecordingClock parked at the first wait, so nothing sleeps.
#include "periphery/periphery_agent.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "common/tls.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/fakes/recording_clock.h"
#include "tests/unit/temp_dir.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::periphery {
namespace {

// A well-formed pin of a CA nobody has: these agents never reach a core.
const std::string kPin = "sha256:" + std::string(64, 'a');

using ::testing::HasSubstr;

class PeripheryAgentTest : public ::testing::Test {
 protected:
  PeripheryAgentTest() { clock_.ParkAfter(0); }

  // A config for an agent that registered before as `credential`.
  PeripheryConfig Registered(const varan::testing::UnitTempDir& dir,
                             const std::string& credential) {
    EXPECT_TRUE(WriteSecretFile(dir.path() + "/credential", credential).ok());
    EXPECT_TRUE(WriteSecretFile(dir.path() + "/periphery_id", "p-1").ok());
    PeripheryConfig config;
    config.core = "127.0.0.1:1";
    config.core_ca_hash = kPin;
    config.daemon.listen = {"127.0.0.1:0"};
    config.state_dir = dir.path();
    config.name = "web-1";
    return config;
  }

  // Agent.GetFacts on `agent`'s listener with `credential`, presenting
  // `key`/`cert` (core's certificate, for agents pinning its CA).
  grpc::Status GetFacts(const PeripheryAgent& agent,
                        const std::string& credential,
                        const std::string& key = "",
                        const std::string& cert = "") {
    auto channel =
        grpc::CreateChannel(FormatHostPort(agent.addresses().front()),
                            MakeUnverifiedSecurity(key, cert).credentials);
    auto stub = varan::v1::Agent::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + credential);
    varan::v1::HostFacts facts;
    return stub->GetFacts(&ctx, varan::v1::GetFactsRequest(), &facts);
  }

  varan::testing::RecordingClock clock_;
};

TEST_F(PeripheryAgentTest, TwoAgentsRunSideBySideInOneProcess) {
  // A cluster CA, and core's certificate from it, which the agents pin.
  auto ca = pki::CreateAuthority("test CA", absl::Now(), absl::Hours(1));
  ASSERT_TRUE(ca.ok()) << ca.status();
  const std::string core_key = *pki::NewPrivateKey();
  pki::CertificateProfile core_profile;
  core_profile.common_name = pki::kCoreName;
  core_profile.dns_names = {pki::kCoreName};
  core_profile.client_auth = true;
  core_profile.not_before = absl::Now() - absl::Minutes(1);
  core_profile.not_after = absl::Now() + absl::Minutes(30);
  auto core_cert = pki::IssueCertificate(*ca, core_key, core_profile);
  ASSERT_TRUE(core_cert.ok()) << core_cert.status();
  const std::string core_chain = *core_cert + ca->cert_pem;
  varan::testing::UnitTempDir dir_a, dir_b;
  PeripheryConfig config_a = Registered(dir_a, "cred-a");
  PeripheryConfig config_b = Registered(dir_b, "cred-b");
  config_a.core_ca_hash = config_b.core_ca_hash =
      *pki::AuthorityPin(ca->cert_pem);
  auto a = PeripheryAgent::Start(config_a, &clock_);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = PeripheryAgent::Start(config_b, &clock_);
  ASSERT_TRUE(b.ok()) << b.status();
  auto facts = [&](const PeripheryAgent& agent, const std::string& cred) {
    return GetFacts(agent, cred, core_key, core_chain);
  };

  ASSERT_EQ((*a)->addresses().size(), 1u);
  ASSERT_EQ((*b)->addresses().size(), 1u);
  EXPECT_NE((*a)->addresses()[0].port, (*b)->addresses()[0].port);
  EXPECT_EQ((*a)->advertised(), FormatHostPort((*a)->addresses().front()));

  // Each serves core's certificate, and nobody without it, not even with
  // the agent's own credential.
  EXPECT_TRUE(facts(**a, "").ok());
  EXPECT_TRUE(facts(**b, "").ok());
  EXPECT_EQ(GetFacts(**a, "cred-a").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetFacts(**b, "cred-b").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  // Shutting one down leaves the other serving; Shutdown is idempotent.
  (*a)->Shutdown(absl::Seconds(2));
  (*a)->Shutdown(absl::Seconds(2));
  EXPECT_TRUE(facts(**b, "").ok());
}

TEST_F(PeripheryAgentTest, NoListenServesNoPort) {
  varan::testing::UnitTempDir dir;
  PeripheryConfig config = Registered(dir, "cred-a");
  config.no_listen = true;
  config.tunnel = true;
  auto agent = PeripheryAgent::Start(config, &clock_);
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_TRUE((*agent)->addresses().empty());
  EXPECT_EQ((*agent)->advertised(), "");
}

struct BadConfigCase {
  std::string name;
  void (*change)(PeripheryConfig*);
  std::string message;
};

class PeripheryAgentConfigTest
    : public PeripheryAgentTest,
      public ::testing::WithParamInterface<BadConfigCase> {};

TEST_P(PeripheryAgentConfigTest, IsRefusedNamingTheFlag) {
  varan::testing::UnitTempDir dir;
  PeripheryConfig config;
  config.core = "127.0.0.1:1";
  config.core_ca_hash = kPin;
  config.daemon.listen = {"127.0.0.1:0"};
  config.state_dir = dir.path();
  GetParam().change(&config);
  auto agent = PeripheryAgent::Start(config, &clock_);
  ASSERT_FALSE(agent.ok());
  EXPECT_THAT(std::string(agent.status().message()),
              HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PeripheryAgentConfigTest,
    ::testing::Values(
        BadConfigCase{"NoCore", [](PeripheryConfig* c) { c->core.clear(); },
                      "--core is required (e.g. --core [::1]:7700)"},
        // Several core replicas: the bad element is named.
        BadConfigCase{
            "EmptyCoreInTheList",
            [](PeripheryConfig* c) { c->core = "127.0.0.1:1,,127.0.0.1:2"; },
            "--core: address 2 of 3 in \"127.0.0.1:1,,127.0.0.1:2\" "
            "is empty"},
        BadConfigCase{"TrailingComma",
                      [](PeripheryConfig* c) { c->core = "127.0.0.1:1,"; },
                      "--core: address 2 of 2"},
        BadConfigCase{
            "MalformedCoreInTheList",
            [](PeripheryConfig* c) { c->core = "127.0.0.1:1,fd00::1:7700"; },
            "--core: invalid address \"fd00::1:7700\""},
        BadConfigCase{
            "CoreListedTwice",
            [](PeripheryConfig* c) { c->core = "127.0.0.1:1, 127.0.0.1:1"; },
            "--core: address \"127.0.0.1:1\" is listed twice"},
        BadConfigCase{"NoListenWithoutTunnel",
                      [](PeripheryConfig* c) { c->no_listen = true; },
                      "--no-listen needs --tunnel"},
        BadConfigCase{"BadLabel",
                      [](PeripheryConfig* c) { c->labels = {"env"}; },
                      "--label \"env\": expected key=value"},
        BadConfigCase{"NeverRegisteredWithoutJoinToken",
                      [](PeripheryConfig*) {},
                      "--join-token-file is required: "},
        BadConfigCase{"UnreadableJoinToken",
                      [](PeripheryConfig* c) {
                        c->join_token_file = c->state_dir + "/missing";
                      },
                      "join token: "},
        // Registered, but nothing says how to check core: it would trust
        // whoever answers.
        BadConfigCase{
            "NoWayToVerifyCore",
            [](PeripheryConfig* c) {
              c->core_ca_hash.clear();
              EXPECT_TRUE(
                  WriteSecretFile(c->state_dir + "/credential", "cred").ok());
              EXPECT_TRUE(
                  WriteSecretFile(c->state_dir + "/periphery_id", "p-1").ok());
            },
            "no way to verify core: give the join token core "
            "wrote"},
        BadConfigCase{
            "MalformedCaHash",
            [](PeripheryConfig* c) {
              c->core_ca_hash = "sha256:12";
              EXPECT_TRUE(
                  WriteSecretFile(c->state_dir + "/credential", "cred").ok());
              EXPECT_TRUE(
                  WriteSecretFile(c->state_dir + "/periphery_id", "p-1").ok());
            },
            "--core-ca-hash: expected a CA pin"},
        BadConfigCase{"PinInJoinTokenDiffersFromCaHash",
                      [](PeripheryConfig* c) {
                        c->join_token_file = c->state_dir + "/join.token";
                        EXPECT_TRUE(WriteSecretFile(
                                        c->join_token_file,
                                        "abcd.sha256:" + std::string(64, 'b'))
                                        .ok());
                      },
                      "and the join token's CA pin"}),
    [](const ::testing::TestParamInfo<BadConfigCase>& param) {
      return param.param.name;
    });

}  // namespace
}  // namespace varan::periphery
