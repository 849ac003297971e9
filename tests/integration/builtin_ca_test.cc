// TLS by default (issue #20): a core started with no TLS flag serves TLS
// with the cluster CA it creates; peripheries verify it with the pin their
// join token carries, on their very first connection; varanctl pins it or
// refuses, showing what to pin; plaintext clients are refused.
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Trimmed(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

// Core, a dial-mode and a tunnel periphery and varanctl, none given a TLS
// flag: a command runs, and everything that reaches core is TLS.
TEST(BuiltinCaTest, NoTlsFlagsAnywhereStillRunsACommandOverTls) {
  TestFleet fleet;
  fleet.StartCore();
  EXPECT_THAT(fleet.core()->Log(), HasSubstr("listening on [::]:"));
  EXPECT_THAT(fleet.core()->Log(), HasSubstr("(TLS)"));
  EXPECT_THAT(fleet.core()->Log(), Not(HasSubstr("plaintext")));
  // The CA's key is private; its pin is in the log and the join token.
  struct stat st {};
  ASSERT_EQ(stat(fleet.dir().File("core/pki/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const JoinTokenText join =
      SplitJoinToken(Trimmed(ReadFile(fleet.join_token_file())));
  ASSERT_FALSE(join.pin.empty());
  EXPECT_EQ(join.pin,
            pki::AuthorityPin(ReadFile(fleet.dir().File("core/pki/ca.crt")))
                .value_or(""));
  EXPECT_THAT(fleet.core()->Log(), HasSubstr("its pin is " + join.pin));

  Daemon* dial = fleet.StartPeriphery("dial-1");
  Daemon* tunnel = fleet.StartPeriphery("tunnel-1", {}, {"--tunnel"});
  ASSERT_NE(dial, nullptr);
  ASSERT_NE(tunnel, nullptr);
  for (Daemon* p : {dial, tunnel}) {
    EXPECT_THAT(p->Log(), HasSubstr("connections to core: TLS, core's "
                                    "cluster CA pinned to " +
                                    join.pin));
  }
  RunResult exec = fleet.Ctl({"exec", "-n", "dial-1", "-n", "tunnel-1",
                              "--no-prefix", "--", "echo", "over tls"});
  EXPECT_EQ(exec.exit_code, 0) << exec.err;
  EXPECT_EQ(exec.out, "over tls\nover tls\n");

  // A plaintext client gets nowhere, on IPv6 and IPv4.
  for (const std::string host : {"[::1]", "127.0.0.1"}) {
    const std::string address = absl::StrCat(host, ":", fleet.core_port());
    EXPECT_FALSE(Healthy(address)) << address;
    EXPECT_TRUE(Healthy(address, fleet.client_tls())) << address;
  }
}

// The pin comes before anything is sent: a periphery whose join token
// pins another CA never reaches core's Registry (core sees no attempt),
// and says why.
TEST(BuiltinCaTest, AJoinTokenWithAnotherPinIsRefusedBeforeAnythingIsSent) {
  TestFleet fleet;
  fleet.StartCore();
  const JoinTokenText join =
      SplitJoinToken(Trimmed(ReadFile(fleet.join_token_file())));
  const std::string wrong_pin = "sha256:" + std::string(64, '0');
  const std::string token_file = fleet.dir().File("wrong-pin.token");
  ASSERT_TRUE(
      WriteSecretFile(token_file, JoinTokenWithPin(join.secret, wrong_pin))
          .ok());
  Daemon* p = fleet.LaunchPeriphery("impostor-victim", {},
                                    {"--join-token-file", token_file});
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(p->Log(), "not the pinned one");
  })) << p->Log();
  EXPECT_THAT(p->Log(), HasSubstr(join.pin));  // what core offered
  EXPECT_THAT(p->Log(), Not(HasSubstr("registered")));
  // Core never saw a registration, refused or not.
  EXPECT_THAT(fleet.core()->Log(), Not(HasSubstr("impostor-victim")));
  EXPECT_THAT(fleet.core()->Log(), Not(HasSubstr("registered")));
  EXPECT_THAT(fleet.core()->Log(), Not(HasSubstr("refused")));
  RunResult list = fleet.Ctl({"peripheries", "list", "-o", "json"});
  EXPECT_THAT(list.out, Not(HasSubstr("impostor-victim")));
}

// varanctl with nothing to verify core by refuses, showing the pin core
// offers; with it, or a context holding it, it works.
TEST(BuiltinCaTest, VaranctlRefusesAnUnpinnedCoreShowingItsPin) {
  TestFleet fleet;
  fleet.StartCore();
  const std::string pin = fleet.client_tls().ca_pin;
  const std::vector<std::string> base = {BinPath("varanctl"), "--core",
                                         fleet.core_address(), "--token-file",
                                         fleet.admin_token_file()};
  const std::map<std::string, std::string> env = {
      {"VARAN_CONFIG_FILE", fleet.dir().File("ctl.toml")}};
  std::vector<std::string> argv = base;
  argv.insert(argv.end(), {"peripheries", "list"});
  RunResult unpinned = RunProgram(argv, env);
  EXPECT_EQ(unpinned.exit_code, 2);
  EXPECT_THAT(unpinned.err, HasSubstr("is not pinned"));
  EXPECT_THAT(unpinned.err, HasSubstr("--ca-hash " + pin));

  argv = base;
  argv.insert(argv.end(), {"--ca-hash", "sha256:" + std::string(64, '1'),
                           "peripheries", "list"});
  RunResult wrong = RunProgram(argv, env);
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_THAT(wrong.err, HasSubstr("not the pinned one"));

  RunResult set =
      RunProgram({BinPath("varanctl"), "config", "set-context", "local",
                  "--core", fleet.core_address(), "--token-file",
                  fleet.admin_token_file(), "--ca-hash", pin},
                 env);
  ASSERT_EQ(set.exit_code, 0) << set.err;
  RunResult from_context =
      RunProgram({BinPath("varanctl"), "peripheries", "list"}, env);
  EXPECT_EQ(from_context.exit_code, 0) << from_context.err;
}

// A join token created through the API carries the pin, and a periphery
// given only it joins over TLS.
TEST(BuiltinCaTest, CreatedJoinTokensCarryThePin) {
  TestFleet fleet;
  fleet.StartCore();
  RunResult created = fleet.Ctl({"join-tokens", "create", "--name", "rack-7"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const JoinTokenText token = SplitJoinToken(Trimmed(created.out));
  EXPECT_EQ(token.pin, fleet.client_tls().ca_pin);
  EXPECT_EQ(token.secret.size(), 64u);
  const std::string file = fleet.dir().File("rack-7.token");
  ASSERT_TRUE(WriteSecretFile(file, Trimmed(created.out)).ok());
  EXPECT_NE(fleet.StartPeriphery("rack-7-1", {}, {"--join-token-file", file}),
            nullptr);
  EXPECT_THAT(fleet.core()->Log(), HasSubstr("with join token rack-7"));
}

}  // namespace
}  // namespace varan::testing
