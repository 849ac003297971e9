// Rotating core's built-in cluster CA (issue #20) with real binaries: a
// dial-mode and a tunnel periphery learn the new CA's pin from their
// heartbeats, core refuses to switch while a registered periphery has not,
// after the switch core serves the new CA and the peripheries renew their
// certificates from it, clients with both pins keep working, and after the
// finish the old CA's certificates are refused while restarted peripheries
// (even with a join token still naming the old CA) and a restarted core
// carry on.
#include <signal.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& s) {
  return absl::StrSplit(Trimmed(s), '\n', absl::SkipEmpty());
}

class CaRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fleet_ = std::make_unique<TestFleet>(
        std::vector<std::string>{"--heartbeat-interval", "0.5"});
    fleet_->StartCore();
    old_pin_ = fleet_->client_tls().ca_pin;
    ASSERT_FALSE(old_pin_.empty());
  }

  // A client of core trusting `pins` (comma-separated).
  std::unique_ptr<client::CoreClient> Client(const std::string& pins) {
    client::ClientOptions options;
    options.address = fleet_->core_address();
    options.token = Trimmed(ReadFile(fleet_->admin_token_file()));
    options.tls.ca_pin = pins;
    auto c = client::CoreClient::Create(options);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  // varanctl trusting `pins`.
  RunResult Ctl(const std::string& pins, std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("varanctl"),
                                     "--core",
                                     fleet_->core_address(),
                                     "--token-file",
                                     fleet_->admin_token_file(),
                                     "--ca-hash",
                                     pins};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, {{"VARAN_CORE", ""},
                             {"VARAN_TOKEN", ""},
                             {"VARAN_TOKEN_FILE", ""},
                             {"VARAN_CA_HASH", ""}});
  }
  std::string State(const std::string& name, const std::string& file) const {
    return fleet_->dir().File("periphery-" + name + "/" + file);
  }
  // The pin of the CA that issued periphery `name`'s certificate.
  std::string IssuerPin(const std::string& name) const {
    for (const std::string& pin : {old_pin_, new_pin_}) {
      const std::string ca = ReadFile(fleet_->dir().File(
          pin == old_pin_ ? "old-ca.crt" : "core/pki/ca.crt"));
      if (pki::Verify(ca, ReadFile(State(name, "periphery.crt")), absl::Now(),
                      pki::Usage::kClientAuth)
              .ok()) {
        return pin;
      }
    }
    return "";
  }

  std::unique_ptr<TestFleet> fleet_;
  std::string old_pin_, new_pin_;
};

TEST_F(CaRotationTest, TheCaIsReplacedWithoutLosingAPeriphery) {
  // A join token naming the old CA, kept as an operator might leave it.
  const std::string old_token = fleet_->dir().File("old-join.token");
  ASSERT_TRUE(
      WriteSecretFile(old_token, Trimmed(ReadFile(fleet_->join_token_file())))
          .ok());
  ASSERT_TRUE(WriteSecretFile(fleet_->dir().File("old-ca.crt"),
                              ReadFile(fleet_->dir().File("core/pki/ca.crt")))
                  .ok());
  // (Fixed ports: a restarted dial periphery is dialed where it was.)
  const std::vector<std::string> dial_args = {
      "--join-token-file", old_token, "--listen",
      absl::StrCat("[::1]:", FreePort())};
  const std::vector<std::string> away_args = {
      "--listen", absl::StrCat("[::1]:", FreePort())};
  Daemon* dial = fleet_->StartPeriphery("rot-dial", {}, dial_args);
  Daemon* tunnel = fleet_->StartPeriphery(
      "rot-tun", {}, {"--join-token-file", old_token, "--tunnel"});
  Daemon* away = fleet_->StartPeriphery("rot-away", {}, away_args);
  ASSERT_NE(dial, nullptr);
  ASSERT_NE(tunnel, nullptr);
  ASSERT_NE(away, nullptr);
  EXPECT_EQ(away->Stop(), 0);  // registered, but off during the rotation

  auto c = Client(old_pin_);
  ASSERT_NE(c, nullptr);
  auto steady = c->GetClusterCa();
  ASSERT_TRUE(steady.ok()) << steady.status();
  EXPECT_EQ(steady->pin(), old_pin_);
  EXPECT_EQ(steady->phase(), varan::v1::CA_ROTATION_PHASE_STEADY);
  // Nothing to switch to or finish yet.
  EXPECT_EQ(
      c->RotateClusterCa(varan::v1::CA_ROTATION_STEP_SWITCH).status().code(),
      absl::StatusCode::kFailedPrecondition);

  // START: a new CA trusted beside the old one.
  RunResult start = Ctl(old_pin_, {"ca", "rotate", "start"});
  ASSERT_EQ(start.exit_code, 0) << start.err;
  auto started = c->GetClusterCa();
  ASSERT_TRUE(started.ok()) << started.status();
  new_pin_ = started->other_pin();
  ASSERT_FALSE(new_pin_.empty());
  EXPECT_THAT(start.out, HasSubstr("new CA:   " + new_pin_));
  EXPECT_THAT(started->trusted_pins(), ElementsAre(old_pin_, new_pin_));
  // The online peripheries learn it with their next heartbeats, and keep it.
  for (const char* name : {"rot-dial", "rot-tun"}) {
    EXPECT_TRUE(WaitFor([&] {
      return Lines(ReadFile(State(name, "core-ca.pin"))) ==
             std::vector<std::string>{old_pin_, new_pin_};
    })) << name
        << ": " << ReadFile(State(name, "core-ca.pin"));
  }
  // The one that is off has not: the switch waits for it, naming it.
  ASSERT_TRUE(WaitFor([&] {
    auto s = c->GetClusterCa();
    return s.ok() && s->pending() == 1;
  }));
  EXPECT_THAT(c->GetClusterCa()->pending_names(), ElementsAre("rot-away"));
  RunResult early = Ctl(old_pin_, {"ca", "rotate", "switch"});
  EXPECT_NE(early.exit_code, 0);
  EXPECT_THAT(early.err, HasSubstr("rot-away"));
  EXPECT_THAT(early.err, HasSubstr("would cut them off"));
  // Back online, it learns the pin too, and the switch goes ahead.
  away = fleet_->StartPeriphery("rot-away", {}, away_args);
  ASSERT_NE(away, nullptr);
  ASSERT_TRUE(WaitFor([&] {
    auto s = c->GetClusterCa();
    return s.ok() && s->pending() == 0;
  })) << c->GetClusterCa()->DebugString();

  // A certificate of the old CA, kept to present after the finish.
  const std::string old_cert = fleet_->dir().File("old-periphery.crt");
  ASSERT_TRUE(
      WriteSecretFile(old_cert, ReadFile(State("rot-dial", "periphery.crt")))
          .ok());
  ASSERT_EQ(IssuerPin("rot-dial"), old_pin_);

  // SWITCH: core serves and issues with the new CA.
  auto switched = c->RotateClusterCa(varan::v1::CA_ROTATION_STEP_SWITCH);
  ASSERT_TRUE(switched.ok()) << switched.status();
  EXPECT_EQ(switched->pin(), new_pin_);
  EXPECT_EQ(switched->other_pin(), old_pin_);
  EXPECT_EQ(pki::AuthorityPin(ReadFile(fleet_->dir().File("core/pki/ca.crt")))
                .value_or(""),
            new_pin_);
  EXPECT_THAT(ReadFile(fleet_->join_token_file()), HasSubstr(new_pin_));
  // Core's listener serves the new certificate within a second (gRPC
  // re-reads the staged files). A client knowing only the old pin is then
  // refused, naming what core offers; one with both (or the new) works.
  RunResult old_only;
  EXPECT_TRUE(WaitFor([&] {
    old_only = Ctl(old_pin_, {"peripheries", "list"});
    return old_only.exit_code != 0;
  })) << old_only.out;
  EXPECT_THAT(old_only.err, HasSubstr("it offered " + new_pin_));
  const std::string both = absl::StrCat(old_pin_, ",", new_pin_);
  RunResult exec = Ctl(both, {"exec", "-n", "rot-dial", "-n", "rot-tun", "-n",
                              "rot-away", "--no-prefix", "--", "echo", "mid"});
  EXPECT_EQ(exec.exit_code, 0) << exec.err;
  EXPECT_EQ(exec.out, "mid\nmid\nmid\n");
  // Peripheries asked to renew hold certificates of the new CA.
  for (const char* name : {"rot-dial", "rot-tun", "rot-away"}) {
    EXPECT_TRUE(WaitFor([&] { return IssuerPin(name) == new_pin_; })) << name;
  }

  // A heartbeat of rot-dial presenting `cert`, with its credential.
  const auto heartbeat = [&](const std::string& cert) {
    ClientTlsFiles tls;
    tls.ca_pin = new_pin_;
    tls.cert = cert;
    tls.key = State("rot-dial", "periphery.key");
    auto registry = varan::v1::Registry::NewStub(
        SecureChannel(fleet_->core_address(), tls));
    grpc::ClientContext ctx;
    ctx.AddMetadata(
        "authorization",
        BearerHeader(Trimmed(ReadFile(State("rot-dial", "credential")))));
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    varan::v1::HeartbeatRequest req;
    req.set_periphery_id(Trimmed(ReadFile(State("rot-dial", "periphery_id"))));
    varan::v1::HeartbeatResponse resp;
    grpc::Status st = registry->Heartbeat(&ctx, req, &resp);
    return std::make_pair(st, resp);
  };
  // Until the finish, the old CA's certificate is still accepted, and its
  // holder asked to renew.
  auto [accepted, asked] = heartbeat(old_cert);
  EXPECT_TRUE(accepted.ok()) << accepted.error_message();
  EXPECT_TRUE(asked.renew_certificate());

  // FINISH: the old CA is forgotten everywhere.
  RunResult finish = Ctl(new_pin_, {"ca", "rotate", "finish"});
  ASSERT_EQ(finish.exit_code, 0) << finish.err;
  auto c2 = Client(new_pin_);
  ASSERT_NE(c2, nullptr);
  auto finished = c2->GetClusterCa();
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ(finished->phase(), varan::v1::CA_ROTATION_PHASE_STEADY);
  EXPECT_THAT(finished->trusted_pins(), ElementsAre(new_pin_));
  for (const char* name : {"rot-dial", "rot-tun", "rot-away"}) {
    EXPECT_TRUE(WaitFor([&] {
      return Lines(ReadFile(State(name, "core-ca.pin"))) ==
             std::vector<std::string>{new_pin_};
    })) << name;
    EXPECT_THAT(Lines(ReadFile(State(name, "core-ca.retired"))),
                ElementsAre(old_pin_))
        << name;
  }

  // Its certificates are refused from now on; the new one is accepted.
  auto [refused, unused] = heartbeat(old_cert);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(refused.error_message(), HasSubstr("certificate"));
  auto [current, answer] = heartbeat(State("rot-dial", "periphery.crt"));
  EXPECT_TRUE(current.ok()) << current.error_message();
  EXPECT_FALSE(answer.renew_certificate());
  EXPECT_THAT(answer.ca_pins(), ElementsAre(new_pin_));

  // Restarted, with a join token still naming the old CA, the peripheries
  // keep trusting the new one; core restarted keeps it too.
  EXPECT_EQ(dial->Stop(), 0);
  EXPECT_EQ(tunnel->Stop(), 0);
  EXPECT_EQ(fleet_->StopCore(), 0);
  fleet_->StartCore();
  dial->Start();
  tunnel->Start();
  auto c3 = Client(new_pin_);
  ASSERT_NE(c3, nullptr);
  EXPECT_EQ(c3->GetClusterCa()->phase(), varan::v1::CA_ROTATION_PHASE_STEADY);
  EXPECT_TRUE(WaitFor(
      [&] {
        exec = Ctl(new_pin_, {"exec", "-n", "rot-dial", "-n", "rot-tun",
                              "--no-prefix", "--", "echo", "after"});
        return exec.exit_code == 0;
      },
      absl::Seconds(20)))
      << exec.err << dial->Log() << tunnel->Log();
  EXPECT_EQ(exec.out, "after\nafter\n");
  for (Daemon* p : {dial, tunnel}) {
    EXPECT_THAT(p->Log(), HasSubstr("core's cluster CA pinned to " + new_pin_));
  }
}

}  // namespace
}  // namespace varan::testing
