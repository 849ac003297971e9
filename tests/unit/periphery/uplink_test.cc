// Tests for periphery/uplink/uplink.h: the uplink's conversation with core
// (against FakeCoreConnection, waits on a RecordingClock: no network, no
// sleeps) and the advertise-address rules.
#include "periphery/uplink/uplink.h"

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"
#include "tests/fakes/recording_clock.h"
#include "tests/unit/periphery/uplink_fixture.h"
#include "tests/unit/temp_dir.h"
#include "varan/version.h"

namespace varan::periphery {
namespace {

using ::testing::HasSubstr;

TEST_F(UplinkTest, FirstStartRegistersWithTheJoinTokenThenHeartbeats) {
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(3);
  ASSERT_GE(calls.size(), 3u);

  ASSERT_EQ(calls[0].kind, Kind::kRegister);
  EXPECT_EQ(calls[0].bearer, "join-secret");
  const auto& req = calls[0].register_request;
  EXPECT_EQ(req.name(), "web-1");
  EXPECT_EQ(req.labels().at("env"), "prod");
  EXPECT_EQ(req.advertise_address(), "[::1]:7701");
  EXPECT_EQ(req.version(), kVersion);

  // The first heartbeat follows at once (it proves the new credential),
  // the next after the interval core asked for.
  ASSERT_EQ(calls[1].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[1].bearer, "cred-1");
  EXPECT_EQ(calls[1].heartbeat.periphery_id(), "p-1");
  EXPECT_EQ(calls[1].at, calls[0].at);
  ASSERT_EQ(calls[2].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[2].at - calls[1].at, absl::Seconds(5));

  // Kept for the Agent service and for the next start, private.
  EXPECT_EQ(credential_.Get(), "cred-1");
  EXPECT_EQ(Saved("credential"), "cred-1");
  EXPECT_EQ(Saved("periphery_id"), "p-1");
  struct stat st {};
  ASSERT_EQ(stat((dir_.path() + "/credential").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(HasSavedRegistration(dir_.path()));
}

TEST_F(UplinkTest, SavedRegistrationIsResumedWithoutTheJoinToken) {
  SaveRegistration("p-7", "cred-7");
  options_.join_token.clear();
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  // Available to the Agent service as soon as Start returns.
  EXPECT_EQ(credential_.Get(), "cred-7");
  auto calls = core_->WaitForCalls(1);
  ASSERT_GE(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[0].bearer, "cred-7");
  EXPECT_EQ(calls[0].heartbeat.periphery_id(), "p-7");
  // Where core should dial it now, which may have changed since it
  // registered.
  EXPECT_EQ(calls[0].heartbeat.advertise_address(), "[::1]:7701");
}

// Core answers a heartbeat with NOT_FOUND or UNAUTHENTICATED when it forgot
// this periphery (removed, or its store lost): the uplink registers again
// at once with the join token and carries on with the new identity.
class UplinkForgottenTest
    : public UplinkTest,
      public ::testing::WithParamInterface<absl::StatusCode> {};

TEST_P(UplinkForgottenTest, RegistersAgainAtOnce) {
  SaveRegistration("p-7", "cred-7");
  core_->AnswerHeartbeat(absl::Status(GetParam(), "unknown periphery p-7"));
  core_->AnswerRegister(Registered("p-8", "cred-8", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(3);
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls[0].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[0].bearer, "cred-7");
  ASSERT_EQ(calls[1].kind, Kind::kRegister);
  EXPECT_EQ(calls[1].bearer, "join-secret");
  EXPECT_EQ(calls[1].at, calls[0].at);
  ASSERT_EQ(calls[2].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[2].bearer, "cred-8");
  EXPECT_EQ(calls[2].heartbeat.periphery_id(), "p-8");
  EXPECT_EQ(credential_.Get(), "cred-8");
  EXPECT_EQ(Saved("periphery_id"), "p-8");
  EXPECT_EQ(Saved("credential"), "cred-8");
}

INSTANTIATE_TEST_SUITE_P(
    Codes, UplinkForgottenTest,
    ::testing::Values(absl::StatusCode::kNotFound,
                      absl::StatusCode::kUnauthenticated),
    [](const ::testing::TestParamInfo<absl::StatusCode>& param) {
      return absl::StatusCodeToString(param.param);
    });

TEST_F(UplinkTest, UnreachableCoreBacksOffExponentiallyWithJitterToTheCap) {
  constexpr int kFailures = 12;
  for (int i = 0; i < kFailures; ++i) {
    core_->AnswerRegister(absl::UnavailableError("connection refused"));
  }
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  core_->AnswerHeartbeat(absl::UnavailableError("connection reset"));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(kFailures + 4);
  ASSERT_GE(calls.size(), kFailures + 4u);
  const std::vector<absl::Duration> waits = clock_.waits();
  ASSERT_GE(waits.size(), kFailures + 2u);

  // 0.2 s doubling to the 1 s cap, each wait in [0.5, 1.5) of that.
  absl::Duration nominal = absl::Milliseconds(200);
  for (int i = 0; i < kFailures; ++i) {
    SCOPED_TRACE(i);
    EXPECT_GE(waits[i], nominal * 0.5);
    EXPECT_LT(waits[i], nominal * 1.5);
    nominal = std::min(nominal * 2, absl::Seconds(1));
  }
  // Jittered: a fleet does not retry in step.
  std::vector<absl::Duration> capped(waits.begin() + 3,
                                     waits.begin() + kFailures);
  EXPECT_NE(*std::min_element(capped.begin(), capped.end()),
            *std::max_element(capped.begin(), capped.end()));

  // Connected: heartbeat at once, then the interval; after a new failure
  // the first retry is fast again.
  EXPECT_EQ(calls[kFailures].kind, Kind::kRegister);
  EXPECT_EQ(calls[kFailures + 1].at, calls[kFailures].at);
  EXPECT_EQ(waits[kFailures], absl::Seconds(5));
  EXPECT_GE(waits[kFailures + 1], absl::Milliseconds(100));
  EXPECT_LT(waits[kFailures + 1], absl::Milliseconds(300));
  EXPECT_EQ(calls[kFailures + 3].kind, Kind::kHeartbeat);
  // One core: one connection throughout (its channel reconnects by itself).
  EXPECT_EQ(core_->connects(), std::vector<std::string>{"[::1]:7700"});
}

// Core restarted: the heartbeat after a failure goes out as soon as the
// connection to core is up again, not at the end of the backoff (which,
// grown over a long outage, could outlast core's restart grace).
TEST_F(UplinkTest, ADownCoreIsCalledAgainAsSoonAsTheConnectionIsUp) {
  const absl::Time start = clock_.Now();
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  core_->AnswerHeartbeat(absl::UnavailableError("connection refused"));
  core_->AnswerHeartbeat(Beat());
  // The backoff after the failure at +5 s is at least 100 ms (200 ms,
  // jittered); the connection is up after 40.
  core_->ComesUpAt(start + absl::Seconds(5) + absl::Milliseconds(40));
  StartUplink();
  auto calls = core_->WaitForCalls(4);
  ASSERT_GE(calls.size(), 4u);
  EXPECT_EQ(calls[2].at, start + absl::Seconds(5));
  EXPECT_EQ(calls[3].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[3].at, start + absl::Seconds(5) + absl::Milliseconds(40));
  EXPECT_EQ(core_->awaits(), 1);
}

// A failure that core itself answered while connected (UNAVAILABLE from a
// core whose database is down, say) is waited out in full: no waiting on a
// connection that is up, which would call again at once, in a loop.
TEST_F(UplinkTest, AFailureCoreAnsweredIsWaitedOutInFull) {
  const absl::Time start = clock_.Now();
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  core_->AnswerHeartbeat(absl::UnavailableError("database unreachable"));
  core_->AnswerHeartbeat(Beat());
  core_->ComesUpAt(start);
  StartUplink();
  auto calls = core_->WaitForCalls(4);
  ASSERT_GE(calls.size(), 4u);
  const absl::Duration waited = calls[3].at - calls[2].at;
  EXPECT_GE(waited, absl::Milliseconds(100));
  EXPECT_LT(waited, absl::Milliseconds(300));
  EXPECT_EQ(core_->awaits(), 0);
}

TEST_F(UplinkTest, LoadSheddingHintIsWaitedOutWithSpread) {
  // Core shedding load says when to come back: the uplink waits that long
  // and up to a quarter more (so those told the same spread out); a hint
  // beyond ten minutes counts as ten minutes.
  constexpr int kShed = 8;
  for (int i = 0; i < kShed; ++i) {
    core_->AnswerRegister(
        RetryAfterError("too many registrations", absl::Seconds(3)));
  }
  core_->AnswerRegister(
      RetryAfterError("too many registrations", absl::Hours(1)));
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  StartUplink();
  auto calls = core_->WaitForCalls(kShed + 3);
  ASSERT_GE(calls.size(), kShed + 3u);
  EXPECT_EQ(calls[kShed + 1].kind, Kind::kRegister);
  EXPECT_EQ(calls[kShed + 2].kind, Kind::kHeartbeat);
  const std::vector<absl::Duration> waits = clock_.waits();
  ASSERT_GE(waits.size(), kShed + 1u);
  for (int i = 0; i < kShed; ++i) {
    SCOPED_TRACE(i);
    EXPECT_GE(waits[i], absl::Seconds(3));
    EXPECT_LE(waits[i], absl::Seconds(3) * 1.25);
  }
  EXPECT_NE(*std::min_element(waits.begin(), waits.begin() + kShed),
            *std::max_element(waits.begin(), waits.begin() + kShed));
  EXPECT_GE(waits[kShed], absl::Minutes(10));
  EXPECT_LE(waits[kShed], absl::Minutes(10) * 1.25);
}

TEST_F(UplinkTest, ForgottenWithoutJoinTokenSaysWhatIsMissing) {
  SaveRegistration("p-7", "cred-7");
  options_.join_token.clear();
  core_->AnswerHeartbeat(absl::NotFoundError("unknown periphery p-7"));
  clock_.ParkAfter(1);
  LogCapture log;
  StartUplink();
  auto waits = clock_.WaitForWaits(1);
  // Nothing is sent without a token; the uplink keeps trying slowly (core's
  // configuration may change) and says what to do.
  auto calls = core_->WaitForCalls(1);
  uplink_->Stop();  // before the log capture ends
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].kind, Kind::kHeartbeat);
  ASSERT_EQ(waits.size(), 1u);
  EXPECT_EQ(waits[0], options_.max_backoff);
  EXPECT_THAT(log.Text(), HasSubstr("no join token was given "
                                    "(--join-token-file)"));
}

TEST_F(UplinkTest, TunnelRegistersInItsHelloAndIsReplacedWhenCoreGoesQuiet) {
  options_.tunnel = true;
  const varan::v1::TunnelOpened opened = OpenedAsP1();
  core_->AnswerTunnel(opened);
  // The next tunnel resumes; core forgot us: the one after registers again.
  core_->AnswerTunnel(absl::NotFoundError("unknown periphery p-1"));
  StartUplink();
  auto calls = core_->WaitForCalls(3);
  ASSERT_GE(calls.size(), 3u);

  ASSERT_EQ(calls[0].kind, Kind::kTunnelHello);
  EXPECT_EQ(calls[0].bearer, "join-secret");
  EXPECT_EQ(calls[0].hello.register_().name(), "web-1");
  EXPECT_EQ(Saved("credential"), "cred-1");

  // Heartbeats every 5 s from the start; core answered none, so after
  // three intervals and the RPC timeout (25 s) the tunnel is given up and
  // a new one opened after a short backoff, resuming the registration.
  EXPECT_EQ(core_->tunnel_heartbeats(), 6);
  ASSERT_EQ(calls[1].kind, Kind::kTunnelHello);
  EXPECT_EQ(calls[1].hello.periphery_id(), "p-1");
  EXPECT_EQ(calls[1].bearer, "cred-1");
  EXPECT_GE(calls[1].at - calls[0].at, absl::Milliseconds(30100));
  EXPECT_LT(calls[1].at - calls[0].at, absl::Milliseconds(30300));

  ASSERT_EQ(calls[2].kind, Kind::kTunnelHello);
  EXPECT_TRUE(calls[2].hello.has_register_());
  EXPECT_EQ(calls[2].bearer, "join-secret");
  EXPECT_EQ(calls[2].at, calls[1].at);
}

// Several core replicas (--core a,b,...): one at a time, the next when it
// stops answering.
class UplinkCoresTest : public UplinkTest {
 protected:
  static constexpr char kA[] = "10.0.0.1:7700";
  static constexpr char kB[] = "10.0.0.2:7700";
  static constexpr char kC[] = "10.0.0.3:7700";
  UplinkCoresTest() {
    options_.cores = {{"10.0.0.1", 7700}, {"10.0.0.2", 7700}};
  }
  // What the uplink logged up to its last call so far; then stops it
  // (before the LogCapture ends; the fake is closed to release its call).
  std::string StopAndLog(const LogCapture& log) {
    std::string text = log.Text();
    core_->Close();
    uplink_->Stop();
    return text;
  }
};

class UplinkUnreachableCodeTest
    : public UplinkCoresTest,
      public ::testing::WithParamInterface<absl::StatusCode> {};

TEST_P(UplinkUnreachableCodeTest, FirstCoreUnreachableRegistersWithTheNext) {
  core_->AnswerRegister(absl::Status(GetParam(), "no answer"));
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  LogCapture log;
  StartUplink();
  auto calls = core_->WaitForCalls(3);
  // Before the fake closes: from then on every call fails UNAVAILABLE and
  // the uplink moves on until it is stopped.
  const std::vector<std::string> connects = core_->connects();
  const std::string text = StopAndLog(log);
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls[0].kind, Kind::kRegister);
  EXPECT_EQ(calls[0].core, kA);
  // The next core is tried at once; the first failure costs no wait.
  EXPECT_EQ(calls[1].kind, Kind::kRegister);
  EXPECT_EQ(calls[1].core, kB);
  EXPECT_EQ(calls[1].at, calls[0].at);
  EXPECT_EQ(calls[2].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[2].core, kB);
  EXPECT_EQ(calls[2].bearer, "cred-1");
  EXPECT_EQ(connects, (std::vector<std::string>{kA, kB}));
  EXPECT_THAT(
      text, HasSubstr(absl::StrCat("[info] core at ", kA, " is unreachable")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("moving to core at ", kB)));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("registered with core at ", kB)));
}

INSTANTIATE_TEST_SUITE_P(
    Codes, UplinkUnreachableCodeTest,
    ::testing::Values(absl::StatusCode::kUnavailable,
                      absl::StatusCode::kDeadlineExceeded),
    [](const ::testing::TestParamInfo<absl::StatusCode>& param) {
      return absl::StatusCodeToString(param.param);
    });

TEST_F(UplinkCoresTest, CoreGoneMovesToTheNextKeepingTheRegistration) {
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  core_->AnswerHeartbeat(absl::UnavailableError("connection refused"));
  core_->AnswerHeartbeat(Beat());
  core_->AnswerHeartbeat(Beat());
  LogCapture log;
  StartUplink();
  auto calls = core_->WaitForCalls(5);
  const std::string text = StopAndLog(log);
  ASSERT_GE(calls.size(), 5u);
  EXPECT_EQ(calls[0].kind, Kind::kRegister);
  EXPECT_EQ(calls[2].core, kA);
  EXPECT_EQ(calls[2].at - calls[1].at, absl::Seconds(5));
  // The other replica knows the credential: heartbeats, no registration,
  // the first at once, then at the interval.
  for (int i : {3, 4}) {
    SCOPED_TRACE(i);
    EXPECT_EQ(calls[i].kind, Kind::kHeartbeat);
    EXPECT_EQ(calls[i].core, kB);
    EXPECT_EQ(calls[i].bearer, "cred-1");
    EXPECT_EQ(calls[i].heartbeat.periphery_id(), "p-1");
  }
  EXPECT_EQ(calls[3].at, calls[2].at);
  EXPECT_EQ(calls[4].at - calls[3].at, absl::Seconds(5));
  EXPECT_EQ(Saved("periphery_id"), "p-1");
  EXPECT_THAT(text, HasSubstr(absl::StrCat("core at ", kA,
                                           " is unreachable (UNAVAILABLE: "
                                           "connection refused); moving to "
                                           "core at ",
                                           kB)));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("connected to core at ", kB)));
  // Secrets stay out of the log.
  EXPECT_THAT(text, ::testing::Not(HasSubstr("cred-1")));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("join-secret")));
}

TEST_F(UplinkCoresTest, NewCoreThatForgotThePeripheryGetsARegistration) {
  // Replicas that do not share a database (yet): the existing path.
  SaveRegistration("p-7", "cred-7");
  core_->AnswerHeartbeat(absl::UnavailableError("connection refused"));
  core_->AnswerHeartbeat(absl::UnauthenticatedError("unknown credential"));
  core_->AnswerRegister(Registered("p-8", "cred-8", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(4);
  ASSERT_GE(calls.size(), 4u);
  EXPECT_EQ(calls[1].kind, Kind::kHeartbeat);
  EXPECT_EQ(calls[1].core, kB);
  EXPECT_EQ(calls[1].bearer, "cred-7");
  EXPECT_EQ(calls[2].kind, Kind::kRegister);
  EXPECT_EQ(calls[2].core, kB);
  EXPECT_EQ(calls[2].bearer, "join-secret");
  EXPECT_EQ(calls[3].core, kB);
  EXPECT_EQ(calls[3].bearer, "cred-8");
}

TEST_F(UplinkCoresTest, AllCoresDownBacksOffBetweenPassesThenRecovers) {
  options_.cores.push_back({"10.0.0.3", 7700});
  constexpr int kPasses = 4;
  for (int i = 0; i < 3 * kPasses; ++i) {
    core_->AnswerRegister(absl::UnavailableError("connection refused"));
  }
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  LogCapture log;
  StartUplink();
  auto calls = core_->WaitForCalls(3 * kPasses + 2);
  // The backoff of each pass, then the wait for the next heartbeat (which
  // may start only after the heartbeat's call returned).
  const std::vector<absl::Duration> waits = clock_.WaitForWaits(kPasses + 1);
  const std::string text = StopAndLog(log);
  ASSERT_GE(calls.size(), 3u * kPasses + 2);
  ASSERT_GE(waits.size(), size_t{kPasses} + 1);

  // Round robin; within a pass no wait, between passes the backoff,
  // growing 0.2 s, 0.4 s, 0.8 s, 1 s (the cap), jittered.
  absl::Duration nominal = absl::Milliseconds(200);
  for (int pass = 0; pass < kPasses; ++pass) {
    SCOPED_TRACE(pass);
    const int first = 3 * pass;
    EXPECT_EQ(calls[first].core, kA);
    EXPECT_EQ(calls[first + 1].core, kB);
    EXPECT_EQ(calls[first + 2].core, kC);
    EXPECT_EQ(calls[first + 2].at, calls[first].at);
    EXPECT_GE(waits[pass], nominal * 0.5);
    EXPECT_LT(waits[pass], nominal * 1.5);
    EXPECT_EQ(calls[first + 3].at - calls[first + 2].at, waits[pass]);
    nominal = std::min(nominal * 2, absl::Seconds(1));
  }
  // Back: registered with the first core, heartbeat at once.
  EXPECT_EQ(calls[3 * kPasses].kind, Kind::kRegister);
  EXPECT_EQ(calls[3 * kPasses].core, kA);
  EXPECT_EQ(calls[3 * kPasses + 1].kind, Kind::kHeartbeat);
  EXPECT_EQ(waits[kPasses], absl::Seconds(5));

  // The first pass is told move by move, then once for all; later passes
  // are quiet.
  auto count = [&text](const std::string& part) {
    size_t n = 0;
    for (size_t at = text.find(part); at != std::string::npos;
         at = text.find(part, at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count("moving to core at"), 3u);
  EXPECT_EQ(count(absl::StrCat("[warning] cannot reach any core (", kA, ", ",
                               kB, ", ", kC, ")")),
            1u);
  EXPECT_THAT(text, HasSubstr(absl::StrCat("registered with core at ", kA)));
}

TEST_F(UplinkCoresTest, RetryAfterHintAndRefusalStayOnTheSameCore) {
  core_->AnswerRegister(
      RetryAfterError("too many registrations", absl::Seconds(3)));
  core_->AnswerRegister(absl::PermissionDeniedError("join token expired"));
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  core_->AnswerHeartbeat(Beat());
  StartUplink();
  auto calls = core_->WaitForCalls(4);
  ASSERT_GE(calls.size(), 4u);
  for (const auto& call : calls) EXPECT_EQ(call.core, kA);
  EXPECT_EQ(core_->connects(), std::vector<std::string>{kA});
  const std::vector<absl::Duration> waits = clock_.waits();
  ASSERT_GE(waits.size(), 2u);
  EXPECT_GE(waits[0], absl::Seconds(3));
  EXPECT_LE(waits[0], absl::Seconds(3) * 1.25);
  EXPECT_EQ(waits[1], options_.max_backoff);
}

TEST_F(UplinkCoresTest, RegistrationWithAnotherCoreAdvertisesTheRouteToIt) {
  // Loopback in both families: toward the IPv6 core the periphery
  // advertises its IPv6 address, same port.
  options_.cores = {{"127.0.0.1", 7700}, {"::1", 7700}};
  options_.advertise_address = "127.0.0.1:7701";
  options_.advertise_toward_core = true;
  core_->AnswerRegister(absl::UnavailableError("connection refused"));
  core_->AnswerRegister(Registered("p-1", "cred-1", absl::Seconds(5)));
  StartUplink();
  auto calls = core_->WaitForCalls(2);
  ASSERT_GE(calls.size(), 2u);
  EXPECT_EQ(calls[0].register_request.advertise_address(), "127.0.0.1:7701");
  EXPECT_EQ(calls[1].core, "[::1]:7700");
  EXPECT_EQ(calls[1].register_request.advertise_address(), "[::1]:7701");
}

TEST_F(UplinkCoresTest, BrokenTunnelMovesToTheNextCore) {
  options_.tunnel = true;
  const varan::v1::TunnelOpened opened = OpenedAsP1();
  // A opens, then goes quiet (the tunnel is given up after 30 s); B cannot
  // open one; back to A after the backoff.
  core_->AnswerTunnel(opened);
  core_->AnswerTunnel(absl::UnavailableError("connection refused"));
  core_->AnswerTunnel(opened);
  StartUplink();
  auto calls = core_->WaitForCalls(3);
  ASSERT_GE(calls.size(), 3u);
  EXPECT_EQ(calls[0].core, kA);
  EXPECT_TRUE(calls[0].hello.has_register_());
  // On B the tunnel resumes with the credential, right after A's broke.
  EXPECT_EQ(calls[1].core, kB);
  EXPECT_EQ(calls[1].hello.periphery_id(), "p-1");
  EXPECT_EQ(calls[1].bearer, "cred-1");
  EXPECT_GE(calls[1].at - calls[0].at, absl::Seconds(30));
  EXPECT_LT(calls[1].at - calls[0].at, absl::Milliseconds(30100));
  // Both failed in a row: the backoff before A again.
  EXPECT_EQ(calls[2].core, kA);
  EXPECT_EQ(calls[2].hello.periphery_id(), "p-1");
  EXPECT_GE(calls[2].at - calls[1].at, absl::Milliseconds(100));
  EXPECT_LT(calls[2].at - calls[1].at, absl::Milliseconds(300));
}

TEST(AdvertiseAddressTest, ExplicitFlagIsNormalisedAndWins) {
  auto a = AdvertiseAddress("[fd00:0::5]:7701", {"::", 7701}, {{"::1", 7700}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "[fd00::5]:7701");
  auto named =
      AdvertiseAddress("web-1.example:9000", {"::", 7701}, {{"::1", 7700}});
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(*named, "web-1.example:9000");
}

TEST(AdvertiseAddressTest, BadFlagNamesTheFlag) {
  auto a = AdvertiseAddress("fd00::5:7701", {"::", 7701}, {{"::1", 7700}});
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("--advertise"));
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("[fd00::5]:7701"));
}

TEST(AdvertiseAddressTest, SpecificListenerIsAdvertisedAsBound) {
  auto a = AdvertiseAddress("", {"10.1.2.3", 7801}, {{"10.1.2.1", 7700}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "10.1.2.3:7801");
}

TEST(AdvertiseAddressTest, WildcardBecomesTheAddressTowardCoreInItsFamily) {
  // Loopback routes exist on every test host: toward an IPv4 core the
  // periphery advertises IPv4, toward an IPv6 core bracketed IPv6.
  auto v4 = AdvertiseAddress("", {"::", 7701}, {{"127.0.0.1", 7700}});
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(*v4, "127.0.0.1:7701");
  auto v6 = AdvertiseAddress("", {"0.0.0.0", 7702}, {{"::1", 7700}});
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(*v6, "[::1]:7702");
}

}  // namespace
}  // namespace varan::periphery
