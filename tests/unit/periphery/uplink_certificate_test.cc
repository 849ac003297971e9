// Tests for the uplink's part in the periphery's certificate (issue #20):
// the request sent with a registration, the certificate core answers kept
// and presented from the next connection on, and its renewal when due —
// against FakeCoreConnection and FakeCertificates on a RecordingClock.
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "periphery/core_pins.h"
#include "tests/fakes/periphery/fake_certificates.h"
#include "tests/unit/periphery/uplink_fixture.h"

namespace varan::periphery {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

varan::v1::RenewCertificateResponse Renewed(const std::string& chain) {
  varan::v1::RenewCertificateResponse r;
  r.set_certificate(chain);
  return r;
}

class UplinkCertificateTest : public UplinkTest {
 protected:
  UplinkCertificateTest() { options_.certificates = &certificates_; }
  // The uplink's thread uses certificates_: stopped before it goes (the
  // base class would stop it only after this class's members are gone).
  ~UplinkCertificateTest() override {
    core_->Close();
    uplink_.reset();
  }
  // Core's pins as the uplink keeps them (UsePins), likewise stopped after.
  CorePins* UsePins(const std::string& pin) {
    auto pins = CorePins::Open("", pin);
    EXPECT_TRUE(pins.ok()) << pins.status();
    if (!pins.ok()) return nullptr;
    pins_ = *std::move(pins);
    options_.core_pins = pins_.get();
    return pins_.get();
  }
  FakeCertificates certificates_;
  std::unique_ptr<CorePins> pins_;
};

TEST_F(UplinkCertificateTest, RegistrationSendsARequestAndKeepsTheAnswer) {
  varan::v1::RegisterResponse registered =
      Registered("p-1", "cred-1", absl::Seconds(5));
  registered.set_certificate("chain-1");
  core_->AnswerRegister(registered);
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(2);
  ASSERT_GE(calls.size(), 2u);
  ASSERT_EQ(calls[0].kind, Kind::kRegister);
  EXPECT_EQ(calls[0].register_request.csr(), "csr-1");
  EXPECT_THAT(certificates_.installed(), ElementsAre("chain-1"));
  // The heartbeat that confirms the registration presents the certificate:
  // it goes over a connection made after it was installed.
  ASSERT_EQ(calls[1].kind, Kind::kHeartbeat);
  EXPECT_EQ(core_->connects().size(), 2u);
}

TEST_F(UplinkCertificateTest, ACertificateDueIsRenewedThenPresented) {
  SaveRegistration("p-7", "cred-7");
  certificates_.set_issued(clock_.Now() + absl::Seconds(12));
  for (int i = 0; i < 2; ++i) core_->AnswerHeartbeat(Beat());
  core_->AnswerRenew(Renewed("chain-2"));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(4);
  ASSERT_GE(calls.size(), 4u);
  // Heartbeats at 0 and 10 s (core's default interval here is 10 s); at
  // 20 s the certificate is due (since 12 s): it is renewed over the
  // current connection, with the credential, for a new request ...
  EXPECT_EQ(calls[0].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[1].kind, Kind::kHeartbeat);
  ASSERT_EQ(calls[2].kind, Kind::kRenew);
  EXPECT_EQ(calls[2].at - calls[0].at, absl::Seconds(20));
  EXPECT_EQ(calls[2].bearer, "cred-7");
  EXPECT_EQ(calls[2].renew.periphery_id(), "p-7");
  EXPECT_EQ(calls[2].renew.csr(), "csr-1");
  EXPECT_THAT(certificates_.installed(), ElementsAre("chain-2"));
  // ... and the heartbeat then presents it: a new connection.
  EXPECT_EQ(calls[3].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[3].at, calls[2].at);
  EXPECT_EQ(core_->connects().size(), 2u);
}

TEST_F(UplinkCertificateTest, AFailedRenewalIsTriedAgainAMinuteLater) {
  LogCapture log;
  SaveRegistration("p-7", "cred-7");
  // Due already (say it expired while the periphery was off): renewed
  // before the first heartbeat would present it.
  certificates_.set_issued(clock_.Now());
  core_->AnswerRenew(absl::UnavailableError("core is busy"));
  for (int i = 0; i < 6; ++i) core_->AnswerHeartbeat(Beat());
  core_->AnswerRenew(Renewed("chain-2"));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(9);
  ASSERT_GE(calls.size(), 9u);
  ASSERT_EQ(calls[0].kind, Kind::kRenew);
  ASSERT_EQ(calls[7].kind, Kind::kRenew);
  EXPECT_EQ(calls[7].at - calls[0].at, absl::Minutes(1));
  EXPECT_THAT(certificates_.installed(), ElementsAre("chain-2"));
  EXPECT_THAT(log.Text(), HasSubstr("renewing this periphery's certificate "
                                    "failed: UNAVAILABLE: core is busy"));
}

TEST_F(UplinkCertificateTest, ATunnelThatRegisteredIsReopenedWithIt) {
  options_.tunnel = true;
  varan::v1::TunnelOpened opened = OpenedAsP1();
  opened.set_certificate("chain-1");
  core_->AnswerTunnel(opened);
  core_->AnswerTunnel(OpenedAsP1());
  StartUplink();
  auto calls = core_->WaitForCalls(2);
  ASSERT_GE(calls.size(), 2u);
  ASSERT_EQ(calls[0].kind, Kind::kTunnelHello);
  EXPECT_EQ(calls[0].hello.register_().csr(), "csr-1");
  EXPECT_EQ(calls[0].bearer, "join-secret");
  // At once, on a new connection, resuming with the credential.
  ASSERT_EQ(calls[1].kind, Kind::kTunnelHello);
  EXPECT_EQ(calls[1].hello.periphery_id(), "p-1");
  EXPECT_EQ(calls[1].bearer, "cred-1");
  EXPECT_EQ(calls[1].at, calls[0].at);
  EXPECT_EQ(core_->connects().size(), 2u);
  EXPECT_THAT(certificates_.installed(), ElementsAre("chain-1"));
}

// A rotation of core's CA: the heartbeats say which pins the periphery
// trusts; an answer with new pins replaces them (new connections trust
// those), and one asking for a renewal gets it at once, though the
// certificate is not due.
TEST_F(UplinkCertificateTest, CoreSendsNewPinsAndAsksForARenewal) {
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  CorePins* pins = UsePins(a);
  ASSERT_NE(pins, nullptr);
  SaveRegistration("p-7", "cred-7");
  certificates_.set_issued(clock_.Now() + absl::Hours(10));
  varan::v1::HeartbeatResponse rotate = Beat();
  rotate.add_ca_pins(b);
  rotate.add_ca_pins(a);
  rotate.set_renew_certificate(true);
  core_->AnswerHeartbeat(rotate);
  core_->AnswerRenew(Renewed("chain-2"));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(3);
  ASSERT_GE(calls.size(), 3u);
  ASSERT_EQ(calls[0].kind, Kind::kHeartbeat);
  EXPECT_THAT(calls[0].heartbeat.ca_pins(), ElementsAre(a));
  ASSERT_EQ(calls[1].kind, Kind::kRenew);
  EXPECT_EQ(calls[1].at, calls[0].at);
  EXPECT_THAT(certificates_.installed(), ElementsAre("chain-2"));
  EXPECT_THAT(pins->Get(), ElementsAre(b, a));
  ASSERT_EQ(calls[2].kind, Kind::kHeartbeat);
  EXPECT_THAT(calls[2].heartbeat.ca_pins(), ElementsAre(b, a));
  EXPECT_EQ(core_->connects().size(), 2u);
}

TEST_F(UplinkCertificateTest, ATunnelTakesThePinsCoreSendsOnIt) {
  const std::string a = "sha256:" + std::string(64, 'a');
  const std::string b = "sha256:" + std::string(64, 'b');
  CorePins* pins = UsePins(a);
  ASSERT_NE(pins, nullptr);
  options_.tunnel = true;
  SaveRegistration("p-1", "cred-1");
  certificates_.set_issued(clock_.Now() + absl::Hours(10));
  core_->AnswerTunnel(OpenedAsP1());
  varan::v1::HeartbeatResponse rotate = Beat();
  rotate.add_ca_pins(b);
  core_->AnswerOnTunnel(rotate);
  StartUplink();
  // The uplink's thread takes it while the tunnel is open (real time).
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (pins->Get() != std::vector<std::string>{b} && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_THAT(pins->Get(), ElementsAre(b));
}

TEST_F(UplinkCertificateTest, ACertificateThatCannotBeKeptIsLogged) {
  LogCapture log;
  varan::v1::RegisterResponse registered =
      Registered("p-1", "cred-1", absl::Seconds(5));
  registered.set_certificate("bad");
  core_->AnswerRegister(registered);
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(2);
  ASSERT_GE(calls.size(), 2u);
  EXPECT_TRUE(certificates_.installed().empty());
  EXPECT_THAT(log.Text(),
              HasSubstr("cannot keep the certificate core issued: not for "
                        "this periphery's key"));
}

}  // namespace
}  // namespace varan::periphery
