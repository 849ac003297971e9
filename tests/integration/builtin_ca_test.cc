// TLS by default (issue #20): a core started with no TLS flag serves TLS
// with the cluster CA it creates; peripheries verify it with the pin their
// join token carries, on their very first connection; varanctl pins it or
// refuses, showing what to pin; plaintext clients are refused.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

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

// A CA made ahead of time (varanctl ca init, offline) and given to core
// with --ca-from: its pin, known before core started, is what core serves,
// and a join token written with it then (as a Kubernetes Secret is) lets a
// periphery join. Another CA given later is refused, naming both pins.
TEST(BuiltinCaTest, ACaMadeAheadOfTimeIsPinnedBeforeCoreStarts) {
  TempDir dir;
  const std::string pki = dir.File("pki");
  RunResult made = RunProgram({BinPath("varanctl"), "ca", "init", pki});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  RunResult pin_run =
      RunProgram({BinPath("varanctl"), "ca", "init", pki, "--pin-only"});
  ASSERT_EQ(pin_run.exit_code, 0) << pin_run.err;
  const std::string pin(Trimmed(pin_run.out));
  EXPECT_THAT(made.out, HasSubstr("created a cluster CA in " + pki));
  EXPECT_THAT(made.out, HasSubstr("pin:  " + pin));
  EXPECT_EQ(pki::ParsePin(pin, "the pin").value_or(""), pin);
  struct stat st {};
  ASSERT_EQ(stat((pki + "/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The join token the operator writes before core starts.
  const std::string token_file = dir.File("preset.token");
  ASSERT_TRUE(
      WriteSecretFile(token_file, JoinTokenWithPin(GenerateSecret(), pin))
          .ok());

  TestFleet fleet({"--ca-from", pki, "--join-token-file", token_file});
  fleet.StartCore();
  EXPECT_THAT(fleet.core()->Log(), HasSubstr("its pin is " + pin));
  EXPECT_EQ(ReadFile(fleet.dir().File("core/pki/ca.crt")),
            ReadFile(pki + "/ca.crt"));
  Daemon* p = fleet.StartPeriphery(
      "early-1", {}, {"--tunnel", "--join-token-file", token_file});
  ASSERT_NE(p, nullptr);
  EXPECT_THAT(p->Log(), HasSubstr("core's cluster CA pinned to " + pin));
  RunResult exec = fleet.Ctl(
      {"exec", "-n", "early-1", "--no-prefix", "--", "echo", "pinned early"});
  EXPECT_EQ(exec.exit_code, 0) << exec.err;
  EXPECT_EQ(exec.out, "pinned early\n");

  // Core's data directory holds that CA now: another one is refused.
  fleet.StopCore(SIGKILL);
  const std::string other = dir.File("other");
  ASSERT_EQ(RunProgram({BinPath("varanctl"), "ca", "init", other}).exit_code,
            0);
  RunResult refused =
      RunProgram({BinPath("varan-core"), "--data-dir", fleet.dir().File("core"),
                  "--listen", "[::1]:0", "--ca-from", other});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("--ca-from: "));
  EXPECT_THAT(refused.err, HasSubstr("is not the CA in " + other));
  EXPECT_THAT(refused.err, HasSubstr(pin));
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

// grpc.health.v1 Check of `service` at `address` in plaintext: the status
// code and the serving status.
std::pair<grpc::StatusCode, int> PlainHealth(const std::string& address,
                                             const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(service);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  return {s.error_code(), resp.status()};
}

// Kubelet's gRPC probes speak no TLS: --health-listen serves the health
// service alone, in plaintext, on IPv6 and IPv4, while core's own port
// stays TLS only.
TEST(BuiltinCaTest, TheHealthPortServesHealthAloneInPlaintext) {
  const uint16_t port = FreePort();
  TestFleet fleet({"--health-listen", absl::StrCat("[::]:", port)});
  fleet.StartCore();
  const std::string v6 = absl::StrCat("[::1]:", port);
  const std::string v4 = absl::StrCat("127.0.0.1:", port);
  EXPECT_THAT(fleet.core()->Log(),
              HasSubstr(absl::StrCat("health checks alone, in plaintext, on "
                                     "[::]:",
                                     port)));
  using Serving = grpc::health::v1::HealthCheckResponse;
  for (const std::string& address : {v6, v4}) {
    for (const std::string service : {"", "ready"}) {
      EXPECT_EQ(PlainHealth(address, service),
                std::make_pair(grpc::StatusCode::OK, int{Serving::SERVING}))
          << address << " service '" << service << "'";
    }
  }
  // Nothing else is served there; reflection lists only the health service.
  auto fleet_stub = varan::v1::Fleet::NewStub(
      grpc::CreateChannel(v6, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  varan::v1::ListPeripheriesResponse list;
  EXPECT_EQ(fleet_stub->ListPeripheries(&ctx, {}, &list).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  for (const std::string& service : ReflectionServices(v6)) {
    EXPECT_THAT(service, ::testing::AnyOf("grpc.health.v1.Health",
                                          HasSubstr("grpc.reflection")));
  }
  // Core's own port: TLS only.
  EXPECT_NE(PlainHealth(fleet.core_address(), "").first, grpc::StatusCode::OK);
  EXPECT_TRUE(fleet.client()->GetInfo().ok());
  // After core stops, the port is closed too.
  EXPECT_EQ(fleet.StopCore(), 0);
  EXPECT_EQ(PlainHealth(v6, "").first, grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace varan::testing
