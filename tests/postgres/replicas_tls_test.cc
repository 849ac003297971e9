// Several core replicas on the built-in cluster CA (#20 on top of #19):
// with no TLS flag at all, replicas started together agree on one CA kept
// in the database, so a periphery pinning it is served by any replica, a
// replica forwards to another over TLS it verifies by the same pin, and a
// replica whose data directory holds another CA refuses to start instead of
// splitting the cluster, and the replicas rotate that CA together (steps
// taken through either, peripheries kept). Real binaries on loopback, a
// real PostgreSQL 15.
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "common/tls.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/replica_fleet.h"
#include "tests/postgres/test_postgres.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;

class ReplicasTlsTest : public ReplicasTest {
 protected:
  // `n` replicas on the built-in CA, launched together (they race to
  // create the cluster's CA), then waited for.
  void StartTlsFleet(int n) {
    fleet_ = std::make_unique<ReplicaFleet>(NewTestDatabase("replicas_tls"), n);
    fleet_->UseBuiltinCa();
    fleet_->StartAll();
  }
  std::string CoreFile(int i, const std::string& name) const {
    return fleet_->dir().File(absl::StrCat("core-", i, "/pki/", name));
  }
};

TEST_F(ReplicasTlsTest, ReplicasShareOneCaAndServeEachOthersPeripheries) {
  ASSERT_NO_FATAL_FAILURE(StartTlsFleet(3));
  // One CA, created by exactly one replica and taken by the others; the
  // key is the same too, so any replica can issue certificates.
  const std::string ca = ReadFile(CoreFile(0, "ca.crt"));
  ASSERT_FALSE(ca.empty());
  int created = 0;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ReadFile(CoreFile(i, "ca.crt")), ca) << "replica " << i;
    EXPECT_EQ(ReadFile(CoreFile(i, "ca.key")), ReadFile(CoreFile(0, "ca.key")))
        << "replica " << i;
    const std::string log = fleet_->replica(i)->Log();
    if (absl::StrContains(log, "created the cluster CA")) {
      ++created;
    } else {
      EXPECT_THAT(log, HasSubstr("took the replicas' shared the cluster CA"));
    }
    EXPECT_THAT(log, HasSubstr(fleet_->ca_pin()));
    // Each serves a certificate of its own from that CA, for the address
    // the others reach it at.
    const std::string cert = ReadFile(CoreFile(i, "core.crt"));
    EXPECT_TRUE(
        pki::Verify(ca, cert, absl::Now(), pki::Usage::kServerAuth).ok());
    auto info = pki::Inspect(cert);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_THAT(info->ip_addresses, ::testing::Contains("::1"));
    // Plaintext is not served.
    EXPECT_FALSE(ReadyServing(fleet_->address(i)));
    EXPECT_TRUE(ReadyServing(fleet_->address(i), fleet_->Credentials()));
  }
  EXPECT_EQ(created, 1);

  // A tunnel on replica 0 and a dial periphery on replica 1, both knowing
  // the CA by its pin alone.
  fleet_->StartPeriphery("tls-tun", {.cores = {0, 1}, .tunnel = true});
  fleet_->StartPeriphery("tls-dial", {.cores = {1, 0}});
  ASSERT_TRUE(fleet_->WaitOnline({"tls-tun", "tls-dial"}, {0, 1, 2}));
  EXPECT_EQ(fleet_->Holder("tls-tun"), 0);
  for (const std::string name : {"tls-tun", "tls-dial"}) {
    // Each holds a certificate the shared CA issued to its id.
    const std::string chain =
        ReadFile(fleet_->dir().File("periphery-" + name + "/periphery.crt"));
    auto info = pki::Inspect(chain);
    ASSERT_TRUE(info.ok()) << name << ": " << info.status();
    EXPECT_TRUE(pki::VerifyIssued(ca, chain, pki::kPeripheryName,
                                  info->common_name, pki::Usage::kClientAuth,
                                  absl::Now())
                    .ok())
        << name;
  }

  // Through replica 2, which holds neither: it forwards to replica 0 for
  // the tunnel and dials the other itself, both over verified TLS. (The
  // command waits a second so the watch below is live from its start: a
  // job that ended before its watch attached is served from the store,
  // where output shows as an output_gap.)
  client::CoreClient* c2 = fleet_->client(2);
  ASSERT_NE(c2, nullptr);
  const std::string id = MustDispatch(c2, Names({"tls-tun", "tls-dial"}),
                                      "sleep 1; echo over-tls");
  CallCanceler canceler;
  Followed followed =
      fleet_->Follow(2, id, absl::Now() + absl::Seconds(30), &canceler);
  EXPECT_TRUE(followed.status.ok()) << followed.status.error_message();
  EXPECT_EQ(StreamProblem(followed.events), "");
  std::string other;
  EXPECT_EQ(Succeeded(WaitAllFinal(c2, {id}, absl::Seconds(30)), "over-tls\n",
                      &other),
            1u)
      << other;

  // Replica 0 dies: its tunnel moves to replica 1, which knows the
  // periphery's certificate and is known by the periphery's pin.
  fleet_->Stop(0, SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return fleet_->Holder("tls-tun") == 1; },
                      absl::Seconds(20)));
  ASSERT_TRUE(
      fleet_->WaitOnline({"tls-tun", "tls-dial"}, {1, 2}, absl::Seconds(20)));
  // Replica 2 learns the new holder at its next read of the cluster (once
  // a second); a job dispatched before that goes to the dead replica first
  // and is sent again through replica 1 (docs/API.md, failover).
  const std::string again =
      MustDispatch(c2, Names({"tls-tun", "tls-dial"}), "echo again");
  EXPECT_EQ(Succeeded(WaitAllFinal(c2, {again}, absl::Seconds(30)), "again\n",
                      &other),
            1u)
      << other;
  for (const std::string name : {"tls-tun", "tls-dial"}) {
    EXPECT_THAT(fleet_->periphery(name)->Log(),
                ::testing::Not(HasSubstr("certificate verify failed")))
        << name;
  }
}

TEST_F(ReplicasTlsTest, AReplicaHoldingAnotherCaRefusesToStart) {
  fleet_ = std::make_unique<ReplicaFleet>(NewTestDatabase("replicas_tls"), 2);
  fleet_->UseBuiltinCa();
  fleet_->Launch(0);
  ASSERT_TRUE(fleet_->WaitServing(0));
  // Replica 1's data directory already holds a CA of its own (a core that
  // ran alone before, say).
  const std::string data = fleet_->dir().File("core-1");
  ASSERT_TRUE(EnsurePrivateDir(data).ok());
  auto own = pki::LoadOrCreateAuthority(data + "/pki", "varan cluster CA",
                                        absl::Now(), absl::Hours(24));
  ASSERT_TRUE(own.ok()) << own.status();
  const std::string own_pin = *pki::AuthorityPin(own->authority.cert_pem);

  fleet_->Launch(1);
  const int code = fleet_->replica(1)->Wait(absl::Seconds(30));
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1) << "it kept running";
  fleet_->Stop(1, SIGKILL);  // (already exited: not a crash)
  const std::string log = fleet_->replica(1)->Log();
  EXPECT_THAT(log, HasSubstr("is not the CA the other replicas share"));
  EXPECT_THAT(log, HasSubstr(own_pin));
  EXPECT_THAT(log, HasSubstr(fleet_->ca_pin()));
  // Its CA is left as it was.
  EXPECT_EQ(ReadFile(data + "/pki/ca.crt"), own->authority.cert_pem);

  // Moved aside, as the message says: it takes the cluster's CA.
  std::filesystem::rename(data + "/pki", data + "/pki.old");
  fleet_->Launch(1);
  ASSERT_TRUE(fleet_->WaitServing(1));
  EXPECT_EQ(ReadFile(CoreFile(1, "ca.crt")), ReadFile(CoreFile(0, "ca.crt")));
}

TEST_F(ReplicasTlsTest, ReplicaTlsFlagsAreRefusedOnTheBuiltinCa) {
  // They would be ignored: the replicas verify each other by the pin.
  const std::string db = NewTestDatabase("replicas_tls");
  TempDir dir;
  ASSERT_TRUE(WriteSecretFile(dir.File("ca.pem"), "unused").ok());
  RunResult r = RunProgram({BinPath("varan-core"), "--listen", "[::1]:0",
                            "--replica-address", "[::1]:7799", "--database", db,
                            "--data-dir", dir.File("data"), "--replica-tls-ca",
                            dir.File("ca.pem")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("verify each other by its pin"));
}

// A client of replica `i` trusting `pins` only, for Admin calls.
std::unique_ptr<varan::v1::Admin::Stub> AdminOf(
    const ReplicaFleet& fleet, int i, const std::vector<std::string>& pins) {
  return varan::v1::Admin::NewStub(grpc::CreateChannel(
      fleet.address(i), MakePinnedSecurity(pins, "", "").credentials));
}

absl::StatusOr<varan::v1::ClusterCa> CaOf(
    const ReplicaFleet& fleet, int i, const std::vector<std::string>& pins) {
  grpc::ClientContext context;
  fleet.Authorize(&context);
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  varan::v1::ClusterCa out;
  grpc::Status s =
      AdminOf(fleet, i, pins)
          ->GetClusterCa(&context, varan::v1::GetClusterCaRequest(), &out);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return out;
}

absl::StatusOr<varan::v1::ClusterCa> Rotate(
    const ReplicaFleet& fleet, int i, const std::vector<std::string>& pins,
    varan::v1::CaRotationStep step) {
  grpc::ClientContext context;
  fleet.Authorize(&context);
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  varan::v1::RotateClusterCaRequest request;
  request.set_step(step);
  varan::v1::ClusterCa out;
  grpc::Status s =
      AdminOf(fleet, i, pins)->RotateClusterCa(&context, request, &out);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  }
  return out;
}

TEST_F(ReplicasTlsTest, TheSharedCaIsRotatedWithoutLosingAPeriphery) {
  ASSERT_NO_FATAL_FAILURE(StartTlsFleet(2));
  const std::string old_pin = fleet_->ca_pin();
  // A tunnel held by replica 0, a dial periphery registered with replica 1.
  fleet_->StartPeriphery("rot-tun", {.cores = {0, 1}, .tunnel = true});
  fleet_->StartPeriphery("rot-dial", {.cores = {1, 0}});
  ASSERT_TRUE(fleet_->WaitOnline({"rot-tun", "rot-dial"}, {0, 1}));

  // START on replica 0; replica 1 follows within a few seconds.
  auto started =
      Rotate(*fleet_, 0, {old_pin}, varan::v1::CA_ROTATION_STEP_START);
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string new_pin = started->other_pin();
  const std::vector<std::string> both = {old_pin, new_pin};
  EXPECT_TRUE(WaitFor(
      [&] {
        auto ca = CaOf(*fleet_, 1, both);
        return ca.ok() && ca->phase() == varan::v1::CA_ROTATION_PHASE_STARTED &&
               ca->other_pin() == new_pin;
      },
      absl::Seconds(10)));
  // Each periphery learns the new pin from the replica it heartbeats to;
  // replica 1 knows both did, whichever heard it.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto ca = CaOf(*fleet_, 1, both);
        return ca.ok() && ca->pending() == 0;
      },
      absl::Seconds(20)));

  // SWITCH on replica 1; replica 0 follows and serves the new CA.
  auto switched = Rotate(*fleet_, 1, both, varan::v1::CA_ROTATION_STEP_SWITCH);
  ASSERT_TRUE(switched.ok()) << switched.status();
  EXPECT_EQ(switched->pin(), new_pin);
  const std::shared_ptr<grpc::ChannelCredentials> only_new =
      MakePinnedSecurity(std::vector<std::string>{new_pin}, "", "").credentials;
  for (int i : {0, 1}) {
    EXPECT_TRUE(
        WaitFor([&] { return ReadyServing(fleet_->address(i), only_new); },
                absl::Seconds(10)))
        << "replica " << i << " does not serve the new CA";
  }
  // The peripheries renew their certificates from the new CA.
  const std::string new_ca = ReadFile(CoreFile(1, "ca.crt"));
  ASSERT_EQ(pki::AuthorityPin(new_ca).value_or(""), new_pin);
  for (const std::string name : {"rot-tun", "rot-dial"}) {
    EXPECT_TRUE(WaitFor(
        [&] {
          return pki::Verify(new_ca,
                             ReadFile(fleet_->dir().File("periphery-" + name +
                                                         "/periphery.crt")),
                             absl::Now(), pki::Usage::kClientAuth)
              .ok();
        },
        absl::Seconds(20)))
        << name << " holds no certificate of the new CA";
  }

  // FINISH on replica 0; replica 1 follows; the old CA is refused.
  auto finished =
      Rotate(*fleet_, 0, {new_pin}, varan::v1::CA_ROTATION_STEP_FINISH);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_TRUE(WaitFor(
      [&] {
        auto ca = CaOf(*fleet_, 1, {new_pin});
        return ca.ok() && ca->phase() == varan::v1::CA_ROTATION_PHASE_STEADY;
      },
      absl::Seconds(10)));
  const std::shared_ptr<grpc::ChannelCredentials> only_old =
      MakePinnedSecurity(std::vector<std::string>{old_pin}, "", "").credentials;
  for (int i : {0, 1}) {
    EXPECT_FALSE(ReadyServing(fleet_->address(i), only_old)) << "replica " << i;
  }

  // A job through replica 1 reaches both peripheries: the tunnel through
  // replica 0, the dial one dialed, every hop verified by the new pin.
  const auto run_through = [&](int i, const std::vector<std::string>& names,
                               const std::string& word) {
    client::ClientOptions options;
    options.address = fleet_->address(i);
    options.token = Trimmed(ReadFile(fleet_->dir().File("admin.token")));
    options.tls.ca_pin = new_pin;
    auto c = client::CoreClient::Create(options);
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string id = MustDispatch(c->get(), Names(names), "echo " + word);
    std::string other;
    EXPECT_EQ(Succeeded(WaitAllFinal(c->get(), {id}, absl::Seconds(30)),
                        word + "\n", &other),
              1u)
        << "through replica " << i << ": " << other;
  };
  EXPECT_EQ(fleet_->Holder("rot-tun"), 0);
  run_through(1, {"rot-tun", "rot-dial"}, "rotated");
  // Replica 0 restarts on the new CA. A tunnel held by it is reached from
  // replica 1 over a new connection, which replica 1 (up since before the
  // rotation) verifies by the new pin.
  fleet_->Stop(0, SIGTERM);
  fleet_->Launch(0);
  ASSERT_TRUE(fleet_->WaitServing(0));
  EXPECT_EQ(ReadFile(CoreFile(0, "ca.crt")), new_ca);
  fleet_->StartPeriphery("rot-late", {.cores = {0}, .tunnel = true});
  const std::vector<std::string> all = {"rot-tun", "rot-dial", "rot-late"};
  ASSERT_TRUE(fleet_->WaitOnline(all, {0, 1}, absl::Seconds(20)));
  EXPECT_EQ(fleet_->Holder("rot-late"), 0);
  run_through(1, all, "after-restart");
  run_through(0, all, "restarted");
  for (const std::string& name : all) {
    EXPECT_THAT(fleet_->periphery(name)->Log(),
                ::testing::Not(HasSubstr("certificate verify failed")))
        << name;
  }
}

}  // namespace
}  // namespace varan::testing
