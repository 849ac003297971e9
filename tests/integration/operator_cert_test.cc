// Operators' client certificates from the built-in cluster CA (issue #20):
// `varanctl certs issue` gets one for the caller's operator token, and
// varanctl presenting it (no bearer token) is served as that token, with its
// role, until the token is revoked. Real core, periphery and varanctl on
// loopback.
#include <signal.h>
#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// varanctl against `fleet` pinning its CA, with `args` and nothing from the
// environment.
RunResult Varanctl(TestFleet& fleet, std::vector<std::string> args) {
  std::vector<std::string> argv = {BinPath("varanctl"), "--core",
                                   fleet.core_address(), "--ca-hash",
                                   fleet.client_tls().ca_pin};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProgram(argv, {{"VARAN_CORE", ""},
                           {"VARAN_TOKEN", ""},
                           {"VARAN_TOKEN_FILE", ""},
                           {"VARAN_CA_HASH", ""},
                           {"VARAN_CONFIG_FILE", "/nonexistent/config.toml"}});
}

TEST(OperatorCertTest, ACertificateStandsForItsTokenUntilItIsRevoked) {
  TestFleet fleet;
  fleet.StartCore();
  fleet.StartPeriphery("oc-1");
  RunResult created = fleet.Ctl(
      {"tokens", "create", "--name", "ci-viewer", "--role", "viewer"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string viewer_file = fleet.dir().File("viewer.token");
  WriteFile(viewer_file, created.out);
  chmod(viewer_file.c_str(), 0600);

  const std::string me = fleet.dir().File("me");
  RunResult issued =
      Varanctl(fleet, {"--token-file", viewer_file, "certs", "issue", "--out",
                       me, "--lifetime", "2h"});
  ASSERT_EQ(issued.exit_code, 0) << issued.err;
  EXPECT_THAT(issued.out, HasSubstr(me + ".crt"));
  struct stat st {};
  ASSERT_EQ(stat((me + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto info = pki::Inspect(ReadFile(me + ".crt"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_THAT(info->dns_names, ::testing::ElementsAre(pki::kOperatorName));
  EXPECT_TRUE(info->client_auth);
  EXPECT_FALSE(info->server_auth);
  // The lifetime asked for (less the 5 minutes it is backdated).
  EXPECT_LT(absl::AbsDuration(info->not_after - (absl::Now() + absl::Hours(2))),
            absl::Minutes(1));
  // The token's secret is nowhere in it.
  EXPECT_THAT(ReadFile(me + ".crt"), Not(HasSubstr(Trimmed(created.out))));

  const std::vector<std::string> as_me = {"--tls-cert", me + ".crt",
                                          "--tls-key", me + ".key"};
  auto with = [](std::vector<std::string> a, std::vector<std::string> b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  // No bearer token: the certificate is the viewer token.
  RunResult list = Varanctl(fleet, with(as_me, {"peripheries", "list"}));
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("oc-1"));
  // With the viewer's role only.
  RunResult exec =
      Varanctl(fleet, with(as_me, {"exec", "-n", "oc-1", "--", "true"}));
  EXPECT_NE(exec.exit_code, 0);
  EXPECT_THAT(exec.err, HasSubstr("ci-viewer"));
  EXPECT_THAT(exec.err, HasSubstr("viewer role"));
  // The certificate gets its own successor.
  RunResult renewed =
      Varanctl(fleet, with(as_me, {"certs", "issue", "--out", me + "2"}));
  EXPECT_EQ(renewed.exit_code, 0) << renewed.err;

  // A periphery's certificate, of the same CA, is not an operator's.
  const std::string p = fleet.dir().File("periphery-oc-1/periphery");
  RunResult periphery = Varanctl(fleet, {"--tls-cert", p + ".crt", "--tls-key",
                                         p + ".key", "peripheries", "list"});
  EXPECT_NE(periphery.exit_code, 0);
  EXPECT_THAT(periphery.err, HasSubstr("client certificate"));

  // Revoking the token refuses both certificates at once.
  RunResult revoked = fleet.Ctl({"tokens", "revoke", "ci-viewer"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  for (const std::string& prefix : {me, me + "2"}) {
    RunResult refused =
        Varanctl(fleet, {"--tls-cert", prefix + ".crt", "--tls-key",
                         prefix + ".key", "peripheries", "list"});
    EXPECT_NE(refused.exit_code, 0) << prefix;
    EXPECT_THAT(refused.err, HasSubstr("was revoked")) << prefix;
  }
  EXPECT_THAT(fleet.core()->Log(),
              HasSubstr("issued a client certificate for operator token "
                        "\"ci-viewer\" (viewer role)"));
}

// The bootstrap admin token keeps its id when its file gets a new secret:
// a certificate issued before is refused after (SIGHUP reloads the file).
TEST(OperatorCertTest, ANewAdminTokenSecretRefusesOldCertificates) {
  TestFleet fleet;
  fleet.StartCore();
  const std::string me = fleet.dir().File("admin-cert");
  RunResult issued = Varanctl(fleet, {"--token-file", fleet.admin_token_file(),
                                      "certs", "issue", "--out", me});
  ASSERT_EQ(issued.exit_code, 0) << issued.err;
  const std::vector<std::string> list = {"--tls-cert", me + ".crt", "--tls-key",
                                         me + ".key",  "tokens",    "list"};
  RunResult before = Varanctl(fleet, list);
  EXPECT_EQ(before.exit_code, 0) << before.err;
  auto info = pki::Inspect(ReadFile(me + ".crt"));
  ASSERT_TRUE(info.ok());
  EXPECT_THAT(info->common_name, StartsWith("bootstrap-admin:"));

  WriteFile(fleet.admin_token_file(), std::string(64, 'f') + "\n");
  ASSERT_EQ(kill(fleet.core()->pid(), SIGHUP), 0);
  RunResult after;
  EXPECT_TRUE(WaitFor([&] {
    after = Varanctl(fleet, list);
    return after.exit_code != 0;
  })) << after.out;
  EXPECT_THAT(after.err, HasSubstr("another secret"));
}

TEST(OperatorCertTest, ACoreWithoutTheBuiltinCaIssuesNone) {
  TestFleet fleet({"--insecure-plaintext"});
  fleet.StartCore();
  RunResult r = RunProgram(
      {BinPath("varanctl"), "--core", fleet.core_address(),
       "--insecure-plaintext", "--token-file", fleet.admin_token_file(),
       "certs", "issue", "--out", fleet.dir().File("none")},
      {{"VARAN_CONFIG_FILE", "/nonexistent/config.toml"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no built-in cluster CA"));
}

}  // namespace
}  // namespace varan::testing
