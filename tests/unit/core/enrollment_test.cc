// Tests for core/fleet/enrollment.h on a fake clock, with the real token
// registry, fleet registry, dispatcher (over fake links), peer guard and
// handshake admission: join tokens accepted, refused and given back,
// shedding with its hint, resuming a tunnel, and heartbeats (failure
// accounting, execution reports); with a built-in CA, the certificates
// registrations get and later calls present.
#include "core/fleet/enrollment.h"

#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/fake_links.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr absl::Duration kInterval = absl::Seconds(10);
constexpr char kPeer[] = "192.0.2.7";
// Failed authentications a peer may have per minute.
constexpr uint32_t kFailureBudget = 3;

PeerGuardOptions GuardOptions() {
  PeerGuardOptions options;
  options.failures_per_minute = kFailureBudget;
  return options;
}

// One handshake per second, two at once.
AdmissionOptions SlowAdmission() {
  AdmissionOptions options;
  options.rate = 1;
  options.burst = 2;
  return options;
}

class EnrollmentTest : public ::testing::Test {
 protected:
  EnrollmentTest()
      : tokens_(&clock_, &store_),
        fleet_(&clock_, FleetOptions{kInterval, /*ttl_intervals=*/3}, &store_),
        dispatcher_(&fleet_, &links_, &store_, &clock_, DispatcherOptions{}),
        guard_(&clock_, GuardOptions()),
        admission_(&clock_, SlowAdmission()),
        enrollment_(&tokens_, &fleet_, &dispatcher_, &guard_, &admission_) {}

  ~EnrollmentTest() override { links_.EndAll(); }

  // A new join token allowing `max_uses` registrations; returns its secret.
  std::string NewJoinToken(uint32_t max_uses) {
    varan::v1::CreateJoinTokenRequest request;
    request.set_name("join-" + std::to_string(++joins_));
    request.set_max_uses(max_uses);
    std::string secret;
    absl::Notification done;
    // The answer comes once the store committed the token (a store thread).
    tokens_.CreateJoinToken(
        request, "tester",
        [&](absl::StatusOr<varan::v1::CreateJoinTokenResponse> created) {
          EXPECT_TRUE(created.ok()) << created.status();
          if (created.ok()) secret = created->secret();
          done.Notify();
        });
    done.WaitForNotification();
    return secret;
  }

  // Uses taken of the only join token.
  uint32_t JoinUses() {
    auto list = tokens_.ListJoinTokens(/*include_revoked=*/false);
    EXPECT_EQ(list.size(), 1u);
    return list.empty() ? 0 : list[0].uses();
  }

  static varan::v1::RegisterRequest Request(const std::string& name) {
    varan::v1::RegisterRequest request;
    request.set_name(name);
    request.set_advertise_address("[fd00::5]:7701");
    return request;
  }

  absl::StatusOr<Enrollment::Admitted> Register(
      const std::string& secret, const std::string& name,
      const std::string& peer = kPeer) {
    return enrollment_.Register(secret, peer, Request(name),
                                varan::v1::CONNECTION_DIAL);
  }

  // A registered periphery that heartbeated once (confirmed, online).
  Enrollment::Admitted MustJoin(const std::string& name) {
    auto admitted = Register(NewJoinToken(0), name);
    EXPECT_TRUE(admitted.ok()) << admitted.status();
    if (!admitted.ok()) return {};
    varan::v1::HeartbeatRequest beat;
    beat.set_periphery_id(admitted->periphery_id);
    EXPECT_TRUE(enrollment_.Heartbeat(admitted->credential, kPeer, beat).ok());
    return *admitted;
  }

  // Dispatches `argv` to periphery `name`; returns the job once its one
  // call is sent (after the store committed the job), or null.
  std::shared_ptr<Job> DispatchTo(const std::string& name,
                                  const std::string& argv) {
    varan::v1::DispatchRequest dispatch;
    dispatch.mutable_target()->add_names(name);
    dispatch.mutable_spec()->add_argv(argv);
    auto job = dispatcher_.Dispatch(dispatch, "tester");
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_TRUE(store_.Sync().ok());
    EXPECT_EQ(links_.calls().size(), 1u);
    return job.ok() && links_.calls().size() == 1u ? *job : nullptr;
  }

  FakeClock clock_;
  FakeLinks links_;
  MemoryStore store_;
  TokenRegistry tokens_;
  FleetRegistry fleet_;
  Dispatcher dispatcher_;
  PeerGuard guard_;
  HandshakeAdmission admission_;
  Enrollment enrollment_;
  int joins_ = 0;
};

TEST_F(EnrollmentTest, AJoinTokenRegistersThePeriphery) {
  const std::string secret = NewJoinToken(/*max_uses=*/2);
  auto admitted = Register(secret, "web-1");
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  EXPECT_FALSE(admitted->periphery_id.empty());
  EXPECT_FALSE(admitted->credential.empty());
  EXPECT_EQ(admitted->name, "web-1");
  EXPECT_EQ(admitted->heartbeat_interval, kInterval);
  EXPECT_EQ(JoinUses(), 1u);
  auto periphery = fleet_.Get("web-1");
  ASSERT_TRUE(periphery.ok()) << periphery.status();
  EXPECT_EQ(periphery->id(), admitted->periphery_id);
  EXPECT_EQ(periphery->address(), "[fd00::5]:7701");
}

TEST_F(EnrollmentTest, AWrongJoinTokenIsRefusedAndCountedAgainstThePeer) {
  const std::string secret = NewJoinToken(0);
  for (uint32_t i = 0; i < kFailureBudget; ++i) {
    auto refused = Register("not-a-token", "web-1");
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  }
  // The peer used up its budget: even a good token is not looked at.
  auto guarded = Register(secret, "web-1");
  EXPECT_EQ(guarded.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(JoinUses(), 0u);
  // Another peer is not affected.
  EXPECT_TRUE(Register(secret, "web-1", "192.0.2.8").ok());
}

TEST_F(EnrollmentTest, AUsedUpJoinTokenIsRefused) {
  const std::string secret = NewJoinToken(/*max_uses=*/1);
  ASSERT_TRUE(Register(secret, "web-1").ok());
  auto refused = Register(secret, "web-2");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_FALSE(fleet_.Get("web-2").ok());
}

// The store not counting a limited token's use in time: UNAVAILABLE (try
// again), not counted against the peer as a failed authentication.
TEST_F(EnrollmentTest, AStoreTooSlowToCountTheUseIsNotTheCallersFailure) {
  const std::string secret = NewJoinToken(/*max_uses=*/1);
  tokens_.set_join_use_wait(absl::Milliseconds(50));
  absl::Notification release;
  StoredToken stall;
  stall.info.set_id("stall");
  // Holds the store's callbacks up, as stalled commits do.
  store_.SaveToken(stall,
                   [&](const absl::Status&) { release.WaitForNotification(); });
  for (uint32_t i = 0; i <= kFailureBudget; ++i) {
    auto late = Register(secret, "web-1");
    EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  }
  release.Notify();
  ASSERT_TRUE(store_.Sync().ok());
  ASSERT_TRUE(store_.Sync().ok());  // the uses given back
  // The peer's budget is whole, and the one use is still there.
  EXPECT_TRUE(Register(secret, "web-1").ok());
}

TEST_F(EnrollmentTest, ARefusedRegistrationGivesTheJoinTokenUseBack) {
  const std::string secret = NewJoinToken(/*max_uses=*/1);
  auto refused = Register(secret, "not a valid name!");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(JoinUses(), 0u);
  EXPECT_TRUE(Register(secret, "web-1").ok());
}

TEST_F(EnrollmentTest, ShedRegistrationsGetAHintAndKeepTheirJoinTokenUse) {
  const std::string secret = NewJoinToken(/*max_uses=*/3);
  ASSERT_TRUE(Register(secret, "web-1").ok());
  ASSERT_TRUE(Register(secret, "web-2").ok());
  auto shed = Register(secret, "web-3");
  ASSERT_EQ(shed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(shed.status().message(), HasSubstr("registration"));
  const auto hint = RetryAfter(shed.status());
  ASSERT_TRUE(hint.has_value());
  EXPECT_GT(*hint, absl::ZeroDuration());
  EXPECT_LE(*hint, absl::Seconds(1));
  EXPECT_EQ(JoinUses(), 2u);
  EXPECT_FALSE(fleet_.Get("web-3").ok());
  // Coming back after the hint, it is taken.
  clock_.Advance(*hint);
  EXPECT_TRUE(Register(secret, "web-3").ok());
  EXPECT_EQ(JoinUses(), 3u);
}

// A store that is behind (Store::CheckBacklog) refuses new work with its
// retry hint, before anything is written: a new periphery (its join token
// use given back) and a new job. A periphery already registered keeps
// heartbeating. Once the store caught up, both are taken.
TEST_F(EnrollmentTest, AStoreThatIsBehindRefusesNewWorkWithAHint) {
  const Enrollment::Admitted known = MustJoin("web-1");
  const std::string secret = NewJoinToken(/*max_uses=*/1);
  store_.SetBacklog(
      RetryAfterError("core's store is behind", absl::Seconds(1)));

  auto refused = Register(secret, "web-2");
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("store is behind"));
  EXPECT_EQ(RetryAfter(refused.status()), absl::Seconds(1));
  EXPECT_FALSE(fleet_.Get("web-2").ok());
  varan::v1::HeartbeatRequest beat;
  beat.set_periphery_id(known.periphery_id);
  EXPECT_TRUE(enrollment_.Heartbeat(known.credential, kPeer, beat).ok());

  varan::v1::DispatchRequest job;
  job.mutable_target()->add_names("web-1");
  job.mutable_spec()->add_argv("true");
  auto dispatched = dispatcher_.Dispatch(job, "tester");
  ASSERT_EQ(dispatched.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(RetryAfter(dispatched.status()), absl::Seconds(1));
  ASSERT_TRUE(store_.Sync().ok());
  JobQuery all;
  all.limit = 10;
  auto listed = store_.ListJobs(all);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->jobs.empty());

  store_.SetBacklog(absl::OkStatus());
  EXPECT_TRUE(Register(secret, "web-2").ok());
  EXPECT_TRUE(dispatcher_.Dispatch(job, "tester").ok());
}

TEST_F(EnrollmentTest, ATunnelRegistrationIsRecordedAsTunnel) {
  auto request = Request("edge-1");
  request.clear_advertise_address();
  auto admitted = enrollment_.Register(NewJoinToken(0), kPeer, request,
                                       varan::v1::CONNECTION_TUNNEL);
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  auto periphery = fleet_.Get("edge-1");
  ASSERT_TRUE(periphery.ok());
  EXPECT_EQ(periphery->connection(), varan::v1::CONNECTION_TUNNEL);
}

TEST_F(EnrollmentTest, ResumingWithTheCredentialOpensAndCountsAsAHeartbeat) {
  auto joined = Register(NewJoinToken(0), "edge-1");
  ASSERT_TRUE(joined.ok());
  EXPECT_FALSE(fleet_.IsOnline(joined->periphery_id));
  auto resumed =
      enrollment_.Resume(joined->periphery_id, joined->credential, "192.0.2.9");
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->periphery_id, joined->periphery_id);
  EXPECT_EQ(resumed->credential, joined->credential);
  EXPECT_EQ(resumed->name, "edge-1");
  EXPECT_EQ(resumed->heartbeat_interval, kInterval);
  EXPECT_TRUE(fleet_.IsOnline(joined->periphery_id));
}

TEST_F(EnrollmentTest, ResumingWithABadCredentialIsRefusedBeforeAdmission) {
  auto joined = Register(NewJoinToken(0), "edge-1");  // one handshake
  ASSERT_TRUE(joined.ok());
  const std::string other = "198.51.100.1";
  auto wrong = enrollment_.Resume(joined->periphery_id, "wrong", other);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated);
  auto unknown = enrollment_.Resume("no-such-id", joined->credential, other);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  // Refused callers used up none of the two handshakes: this one is the
  // second.
  EXPECT_TRUE(
      enrollment_.Resume(joined->periphery_id, joined->credential, kPeer).ok());
  // Both refusals counted against `other`: one more and it is shut out.
  EXPECT_EQ(
      enrollment_.Resume(joined->periphery_id, "wrong", other).status().code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(enrollment_.Resume(joined->periphery_id, joined->credential, other)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(EnrollmentTest, FailedHeartbeatsAreCountedUnlessOnATunnel) {
  const Enrollment::Admitted p = MustJoin("web-1");
  varan::v1::HeartbeatRequest beat;
  beat.set_periphery_id(p.periphery_id);
  const std::string tunnel_peer = "198.51.100.2";
  // On an open tunnel, a failing heartbeat ends the tunnel; it does not
  // count against the peer.
  for (uint32_t i = 0; i <= kFailureBudget; ++i) {
    EXPECT_EQ(
        enrollment_.TunnelHeartbeat(p.periphery_id, "wrong", tunnel_peer, beat)
            .status()
            .code(),
        absl::StatusCode::kUnauthenticated);
  }
  EXPECT_TRUE(enrollment_.Heartbeat(p.credential, tunnel_peer, beat).ok());
  // Unary heartbeats with a wrong credential or an unknown id count.
  const std::string peer = "198.51.100.3";
  EXPECT_EQ(enrollment_.Heartbeat("wrong", peer, beat).status().code(),
            absl::StatusCode::kUnauthenticated);
  varan::v1::HeartbeatRequest unknown;
  unknown.set_periphery_id("no-such-id");
  for (uint32_t i = 1; i < kFailureBudget; ++i) {
    EXPECT_EQ(
        enrollment_.Heartbeat(p.credential, peer, unknown).status().code(),
        absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(enrollment_.Heartbeat(p.credential, peer, beat).status().code(),
            absl::StatusCode::kResourceExhausted);
  // The guard refuses before the credential is checked: the periphery's
  // own address still works.
  auto answer = enrollment_.Heartbeat(p.credential, kPeer, beat);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->heartbeat_interval().seconds(), 10);
}

TEST_F(EnrollmentTest, HeartbeatReportsReachTheDispatcher) {
  const Enrollment::Admitted p = MustJoin("web-1");
  auto job = DispatchTo("web-1", "true");
  ASSERT_NE(job, nullptr);
  // The call breaks before anything came back: the target waits for the
  // periphery's report.
  links_.calls()[0]->End(absl::UnavailableError("connection reset"));
  const std::string execution = job->id() + "/web-1";

  varan::v1::HeartbeatRequest beat;
  beat.set_periphery_id(p.periphery_id);
  varan::v1::ExecutionReport* report = beat.add_executions();
  report->set_execution_id(execution);
  report->mutable_started()->set_pid(42);
  report->mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
  report->mutable_exited()->set_code(3);
  // Without tails (its end had gone out on the call): asked for them.
  auto answer = enrollment_.Heartbeat(p.credential, kPeer, beat);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(answer->resend_with_tails(), ElementsAre(execution));
  EXPECT_TRUE(answer->acknowledged().empty());
  report->mutable_stdout_tail()->set_data("out\n");
  answer = enrollment_.Heartbeat(p.credential, kPeer, beat);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_TRUE(answer->resend_with_tails().empty());
  EXPECT_TRUE(answer->cancel().empty());
  // Acknowledged (the periphery forgets it) once the outcome is stored, when
  // the next heartbeat reports it again.
  EXPECT_TRUE(answer->acknowledged().empty());
  ASSERT_TRUE(store_.Sync().ok());
  answer = enrollment_.Heartbeat(p.credential, kPeer, beat);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(answer->acknowledged(), ElementsAre(execution));
  const varan::v1::Job snapshot = job->Snapshot();
  EXPECT_EQ(snapshot.targets(0).state(), varan::v1::TARGET_STATE_EXITED);
  EXPECT_EQ(snapshot.targets(0).exit_status().code(), 3);
}

TEST_F(EnrollmentTest, ARunningExecutionOfACanceledJobIsToBeStopped) {
  const Enrollment::Admitted p = MustJoin("web-1");
  auto job = DispatchTo("web-1", "sleep");
  ASSERT_NE(job, nullptr);
  links_.calls()[0]->Start(7);
  links_.calls()[0]->End(absl::UnavailableError("link down"));
  ASSERT_TRUE(dispatcher_.Cancel(job->id(), "tester").ok());
  const std::string execution = job->id() + "/web-1";
  varan::v1::HeartbeatRequest beat;
  beat.set_periphery_id(p.periphery_id);
  varan::v1::ExecutionReport* report = beat.add_executions();
  report->set_execution_id(execution);
  report->mutable_started()->set_pid(7);
  auto answer = enrollment_.Heartbeat(p.credential, kPeer, beat);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_THAT(answer->cancel(), ElementsAre(execution));
}

TEST_F(EnrollmentTest, HeartbeatsReportingNothingResolveAWaitingTarget) {
  const Enrollment::Admitted p = MustJoin("web-1");
  auto job = DispatchTo("web-1", "true");
  ASSERT_NE(job, nullptr);
  // The call breaks before the periphery said anything: the command may or
  // may not run there. A periphery holding no execution reports none, and
  // that absence is the answer: two heartbeats without it fail the target.
  links_.calls()[0]->End(absl::UnavailableError("connection reset"));
  EXPECT_TRUE(dispatcher_.HasRunsOn(p.periphery_id));
  varan::v1::HeartbeatRequest beat;
  beat.set_periphery_id(p.periphery_id);
  ASSERT_TRUE(enrollment_.Heartbeat(p.credential, kPeer, beat).ok());
  EXPECT_EQ(job->Snapshot().targets(0).state(),
            varan::v1::TARGET_STATE_DISPATCHED);
  ASSERT_TRUE(enrollment_.Heartbeat(p.credential, kPeer, beat).ok());
  const varan::v1::Job snapshot = job->Snapshot();
  EXPECT_EQ(snapshot.targets(0).state(), varan::v1::TARGET_STATE_FAILED);
  EXPECT_THAT(snapshot.targets(0).error(), HasSubstr("never started there"));
  EXPECT_TRUE(job->finished());
  EXPECT_FALSE(dispatcher_.HasRunsOn(p.periphery_id));
}

}  // namespace
}  // namespace varan::core

namespace varan::core {
namespace {

// With core's built-in CA: registrations carry a request and get a
// certificate; heartbeats, tunnels and renewals present it.
class CertifiedEnrollmentTest : public EnrollmentTest {
 protected:
  static pki::Authority NewCa() {
    auto ca = pki::CreateAuthority("cluster CA", absl::Now(), absl::Hours(1));
    EXPECT_TRUE(ca.ok()) << ca.status();
    return ca.ok() ? *ca : pki::Authority{};
  }
  static std::string NewRequest() {
    return *pki::CreateRequest(*pki::NewPrivateKey(), "p");
  }

  absl::StatusOr<Enrollment::Admitted> Join(const std::string& name) {
    varan::v1::RegisterRequest request = Request(name);
    request.set_csr(NewRequest());
    return certified_.Register(NewJoinToken(1), kPeer, request,
                               varan::v1::CONNECTION_DIAL);
  }
  // Refused calls come from addresses of their own, so that they do not use
  // up kPeer's failure budget.
  std::string Stranger() {
    return "198.51.100." + std::to_string(++strangers_);
  }
  static varan::v1::HeartbeatRequest Beat(const std::string& id) {
    varan::v1::HeartbeatRequest beat;
    beat.set_periphery_id(id);
    return beat;
  }

  PeripheryCa ca_{NewCa(), absl::Minutes(30)};
  Enrollment certified_{&tokens_,    &fleet_, &dispatcher_, &guard_,
                        &admission_, nullptr, &ca_};
  int strangers_ = 0;
};

TEST_F(CertifiedEnrollmentTest, ARegistrationWithoutARequestIsRefused) {
  const std::string secret = NewJoinToken(1);
  auto refused = certified_.Register(secret, kPeer, Request("web-1"),
                                     varan::v1::CONNECTION_DIAL);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("csr"));
  // Nothing was registered and the token's use came back.
  EXPECT_EQ(JoinUses(), 0u);
  auto all = fleet_.List(varan::v1::Target());
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
}

TEST_F(CertifiedEnrollmentTest, TheCertificateIsWhatLaterCallsPresent) {
  auto web = Join("web-1");
  ASSERT_TRUE(web.ok()) << web.status();
  ASSERT_FALSE(web->certificate.empty());
  EXPECT_TRUE(ca_.CheckPresented(web->periphery_id, web->certificate).ok());

  // The credential alone is not enough any more ...
  auto bare = certified_.Heartbeat(web->credential, Stranger(),
                                   Beat(web->periphery_id));
  EXPECT_TRUE(absl::IsUnauthenticated(bare.status())) << bare.status();
  EXPECT_TRUE(absl::IsUnauthenticated(
      certified_.Resume(web->periphery_id, web->credential, Stranger())
          .status()));
  // ... nor another periphery's certificate with this one's credential.
  auto db = Join("db-1");
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_TRUE(absl::IsUnauthenticated(
      certified_
          .Heartbeat(web->credential, Stranger(), Beat(web->periphery_id),
                     db->certificate)
          .status()));
  // Both together are (after a pause: handshakes are paced at one a second).
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE(certified_
                  .Heartbeat(web->credential, kPeer, Beat(web->periphery_id),
                             web->certificate)
                  .ok());
  EXPECT_TRUE(
      certified_
          .Resume(web->periphery_id, web->credential, kPeer, web->certificate)
          .ok());
}

TEST_F(CertifiedEnrollmentTest, RenewalNeedsCredentialAndCertificate) {
  auto web = Join("web-1");
  ASSERT_TRUE(web.ok()) << web.status();
  const std::string csr = NewRequest();
  auto renewed = certified_.RenewCertificate(web->periphery_id, web->credential,
                                             kPeer, web->certificate, csr);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_NE(*renewed, web->certificate);
  EXPECT_TRUE(ca_.CheckPresented(web->periphery_id, *renewed).ok());

  EXPECT_TRUE(absl::IsUnauthenticated(
      certified_
          .RenewCertificate(web->periphery_id, "wrong", Stranger(),
                            web->certificate, csr)
          .status()));
  EXPECT_TRUE(absl::IsUnauthenticated(certified_
                                          .RenewCertificate(web->periphery_id,
                                                            web->credential,
                                                            Stranger(), "", csr)
                                          .status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      certified_
          .RenewCertificate(web->periphery_id, web->credential, kPeer,
                            web->certificate, "not a csr")
          .status()));
  // Removed: its certificate is good for nothing, at once.
  ASSERT_TRUE(fleet_.Remove(web->periphery_id).ok());
  EXPECT_TRUE(
      absl::IsNotFound(certified_
                           .RenewCertificate(web->periphery_id, web->credential,
                                             Stranger(), web->certificate, csr)
                           .status()));
  EXPECT_TRUE(
      absl::IsNotFound(certified_
                           .Heartbeat(web->credential, Stranger(),
                                      Beat(web->periphery_id), web->certificate)
                           .status()));
  // A core without the CA issues none.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      enrollment_
          .RenewCertificate(web->periphery_id, web->credential, kPeer,
                            web->certificate, csr)
          .status()));
}

// A dial-mode periphery back on another address (a new port or IP) says so
// in its heartbeats: core dials it there from then on, and stores it. A
// malformed one is refused before anything is recorded.
TEST_F(EnrollmentTest, HeartbeatsMoveADialPeripheryToItsNewAddress) {
  const Enrollment::Admitted p = MustJoin("mover");
  varan::v1::Target mover;
  mover.add_names("mover");
  auto address = [&] {
    auto targets = fleet_.Resolve(mover);
    EXPECT_TRUE(targets.ok() && targets->size() == 1u);
    return targets.ok() && targets->size() == 1u ? (*targets)[0].address
                                                 : std::string();
  };
  EXPECT_EQ(address(), "[fd00::5]:7701");
  varan::v1::HeartbeatRequest beat;
  beat.set_periphery_id(p.periphery_id);
  beat.set_advertise_address("[fd00::6]:7702");
  ASSERT_TRUE(enrollment_.Heartbeat(p.credential, kPeer, beat).ok());
  EXPECT_EQ(address(), "[fd00::6]:7702");
  ASSERT_TRUE(store_.Sync().ok());
  auto stored = store_.LoadPeripheries();
  ASSERT_TRUE(stored.ok() && stored->size() == 1u);
  EXPECT_EQ((*stored)[0].info.address(), "[fd00::6]:7702");

  // Not bracketed: refused, naming the field; the address stays.
  beat.set_advertise_address("fd00::7:7702");
  auto bad = enrollment_.Heartbeat(p.credential, kPeer, beat);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("advertise address"));
  EXPECT_EQ(address(), "[fd00::6]:7702");
  // Nor does a wrong credential move it.
  beat.set_advertise_address("[fd00::8]:7702");
  EXPECT_FALSE(enrollment_.Heartbeat("wrong", kPeer, beat).ok());
  EXPECT_EQ(address(), "[fd00::6]:7702");
}

}  // namespace
}  // namespace varan::core
