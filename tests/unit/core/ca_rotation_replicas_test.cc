// Tests for rotating the cluster CA that several core replicas share
// (core/daemon/ca_rotation.h, "Replicas"; core/daemon/shared_ca.h): two
// replicas, each with its own data directory, on one MemoryCluster and one
// store. A step taken on one is followed by the other; SWITCH waits for
// peripheries whichever replica heard them; steps taken at once on two
// replicas do not both pass; a replica away during a rotation starts again
// on the current CA.
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/pki.h"
#include "core/cluster/memory_cluster.h"
#include "core/daemon/ca_rotation.h"
#include "core/daemon/shared_ca.h"
#include "core/fleet/registry.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/ca_files.h"
#include "tests/unit/temp_dir.h"

namespace varan::core {
namespace {

using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using varan::v1::CA_ROTATION_PHASE_STARTED;
using varan::v1::CA_ROTATION_PHASE_STEADY;
using varan::v1::CA_ROTATION_PHASE_SWITCHED;
using varan::v1::CA_ROTATION_STEP_ABORT;
using varan::v1::CA_ROTATION_STEP_FINISH;
using varan::v1::CA_ROTATION_STEP_START;
using varan::v1::CA_ROTATION_STEP_SWITCH;

using testing::PinOf;
using testing::Slurp;

// One core replica: its data directory, cluster view, fleet and CA.
struct Replica {
  varan::testing::UnitTempDir dir;
  std::unique_ptr<MemoryCluster> cluster;
  std::unique_ptr<FleetRegistry> fleet;
  std::unique_ptr<BuiltinTls> tls;
  std::unique_ptr<PeripheryCa> peripheries;
  std::unique_ptr<CaRotation> rotation;
  int changed = 0;

  std::string pki() const { return dir.path() + "/pki"; }
  absl::StatusOr<varan::v1::ClusterCa> Step(varan::v1::CaRotationStep step,
                                            bool force = false) {
    return rotation->Step(step, force, absl::Now());
  }
};

class SharedCaRotationTest : public ::testing::Test {
 protected:
  SharedCaRotationTest()
      : state_(std::make_shared<MemoryClusterState>(&clock_)) {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(Start(a_, "r-a"));
    ASSERT_NO_FATAL_FAILURE(Start(b_, "r-b"));
  }

  // Starts (or restarts) replica `r` on its data directory.
  void Start(Replica& r, const std::string& id) {
    r.rotation.reset();
    r.peripheries.reset();
    r.tls.reset();
    r.fleet.reset();
    r.cluster.reset();
    ClusterOptions options;
    options.replica_id = id;
    options.address = id + ":7700";
    r.cluster = std::make_unique<MemoryCluster>(state_, options);
    r.fleet = std::make_unique<FleetRegistry>(
        &clock_, FleetOptions{absl::Seconds(10), 3}, &store_, r.cluster.get());
    ASSERT_TRUE(r.fleet->Load().ok());
    auto tls =
        BuiltinTls::Create(r.dir.path(), {}, absl::Now(), r.cluster.get());
    ASSERT_TRUE(tls.ok()) << tls.status();
    r.tls = *std::move(tls);
    r.peripheries =
        std::make_unique<PeripheryCa>(r.tls->authority(), absl::Hours(1));
    CaRotation::Parts parts;
    parts.tls = r.tls.get();
    parts.peripheries = r.peripheries.get();
    parts.fleet = r.fleet.get();
    parts.cluster = r.cluster.get();
    parts.changed = [&r] { ++r.changed; };
    auto rotation = CaRotation::Open(r.pki(), std::move(parts));
    ASSERT_TRUE(rotation.ok()) << rotation.status();
    r.rotation = *std::move(rotation);
  }

  // A periphery registered and heard through `r`, trusting `pins`.
  std::string Join(Replica& r, const std::string& name,
                   const std::vector<std::string>& pins) {
    varan::v1::RegisterRequest req;
    req.set_name(name);
    auto reg = r.fleet->Register(req, "10.0.0.9", varan::v1::CONNECTION_TUNNEL);
    EXPECT_TRUE(reg.ok()) << reg.status();
    if (!reg.ok()) return "";
    EXPECT_TRUE(r.fleet
                    ->Heartbeat(reg->id, reg->credential,
                                varan::v1::HostStats(), "10.0.0.9")
                    .ok());
    r.fleet->Trusts(reg->id, pins);
    return reg->id;
  }

  FakeClock clock_;
  MemoryStore store_;
  std::shared_ptr<MemoryClusterState> state_;
  Replica a_, b_;
};

TEST_F(SharedCaRotationTest, AStepOnOneReplicaIsFollowedByTheOther) {
  const std::string old_pin = a_.tls->pin();
  ASSERT_EQ(b_.tls->pin(), old_pin);  // b took a's CA

  auto started = a_.Step(CA_ROTATION_STEP_START);
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string new_pin = started->other_pin();
  EXPECT_EQ(b_.rotation->State().phase(), CA_ROTATION_PHASE_STEADY);
  // b, behind, is asked to start too: it finds the rotation started (and
  // takes it on at once, even though its own step is refused).
  auto again = b_.Step(CA_ROTATION_STEP_START);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(again.status().message()),
              HasSubstr("cannot start: the rotation is started"));
  ASSERT_TRUE(b_.rotation->Follow(absl::Now()).ok());
  EXPECT_EQ(b_.rotation->State().phase(), CA_ROTATION_PHASE_STARTED);
  EXPECT_EQ(b_.rotation->State().other_pin(), new_pin);
  EXPECT_THAT(b_.peripheries->pins(), ElementsAre(old_pin, new_pin));
  EXPECT_EQ(b_.changed, 1);
  // Nothing new: nothing changes.
  ASSERT_TRUE(b_.rotation->Follow(absl::Now()).ok());
  EXPECT_EQ(b_.changed, 1);

  // b switches (it reads where the cluster stands first); a follows and
  // serves the new CA.
  auto switched = b_.Step(CA_ROTATION_STEP_SWITCH);
  ASSERT_TRUE(switched.ok()) << switched.status();
  EXPECT_EQ(switched->pin(), new_pin);
  EXPECT_EQ(b_.tls->pin(), new_pin);
  EXPECT_EQ(PinOf(b_.pki() + "/ca.crt"), new_pin);
  ASSERT_TRUE(a_.rotation->Follow(absl::Now()).ok());
  EXPECT_EQ(a_.rotation->State().phase(), CA_ROTATION_PHASE_SWITCHED);
  EXPECT_EQ(a_.tls->pin(), new_pin);
  EXPECT_EQ(PinOf(a_.pki() + "/ca.crt"), new_pin);
  // Its serving certificate is the new CA's.
  EXPECT_TRUE(pki::Verify(a_.tls->authority().cert_pem,
                          Slurp(a_.tls->cert_path()), absl::Now(),
                          pki::Usage::kServerAuth)
                  .ok());
  EXPECT_THAT(a_.peripheries->pins(), ElementsAre(new_pin, old_pin));
  // a still issues and accepts what either CA signs until FINISH.
  EXPECT_THAT(a_.peripheries->trusted_pem(),
              HasSubstr(b_.tls->authority().cert_pem));

  // A replica restarted now finds the rotation switched.
  ASSERT_NO_FATAL_FAILURE(Start(a_, "r-a2"));
  EXPECT_EQ(a_.rotation->State().phase(), CA_ROTATION_PHASE_SWITCHED);
  EXPECT_EQ(a_.tls->pin(), new_pin);

  auto finished = a_.Step(CA_ROTATION_STEP_FINISH);
  ASSERT_TRUE(finished.ok()) << finished.status();
  ASSERT_TRUE(b_.rotation->Follow(absl::Now()).ok());
  EXPECT_EQ(b_.rotation->State().phase(), CA_ROTATION_PHASE_STEADY);
  EXPECT_THAT(b_.peripheries->pins(), ElementsAre(new_pin));
  EXPECT_EQ(b_.changed, 3);
  // The cluster's setting remembers the old pin as retired.
  auto shared = DecodeSharedCa(*a_.cluster->Setting(kClusterCaSetting));
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_THAT(shared->retired, ElementsAre(old_pin));
}

TEST_F(SharedCaRotationTest, SwitchWaitsForPeripheriesHeardByAnyReplica) {
  const std::string old_pin = a_.tls->pin();
  const std::string p1 = Join(a_, "p1", {old_pin});
  const std::string p2 = Join(b_, "p2", {old_pin});
  auto started = a_.Step(CA_ROTATION_STEP_START);
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string new_pin = started->other_pin();
  ASSERT_TRUE(b_.rotation->Follow(absl::Now()).ok());
  // p2 learns the new pin from b; p1 has not said it trusts it yet.
  b_.fleet->Trusts(p2, {old_pin, new_pin});
  ASSERT_TRUE(a_.fleet->Refresh().ok());
  ASSERT_TRUE(b_.fleet->Refresh().ok());
  auto refused = a_.Step(CA_ROTATION_STEP_SWITCH);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("1 peripheries have not said they trust the new CA "
                        "yet (p1)"));
  EXPECT_EQ(b_.rotation->State().pending(), 1u);
  // p1 says so to a; b, asked to switch, knows it after its refresh.
  a_.fleet->Trusts(p1, {old_pin, new_pin});
  ASSERT_TRUE(a_.fleet->Refresh().ok());
  ASSERT_TRUE(b_.fleet->Refresh().ok());
  EXPECT_EQ(b_.rotation->State().pending(), 0u);
  auto switched = b_.Step(CA_ROTATION_STEP_SWITCH);
  ASSERT_TRUE(switched.ok()) << switched.status();
  EXPECT_EQ(switched->pin(), new_pin);
}

TEST_F(SharedCaRotationTest, StepsTakenAtOnceOnTwoReplicasDoNotBothPass) {
  for (int round = 0; round < 5; ++round) {
    absl::StatusOr<varan::v1::ClusterCa> on_a, on_b;
    std::thread ta([&] { on_a = a_.Step(CA_ROTATION_STEP_START); });
    std::thread tb([&] { on_b = b_.Step(CA_ROTATION_STEP_START); });
    ta.join();
    tb.join();
    ASSERT_NE(on_a.ok(), on_b.ok()) << on_a.status() << " / " << on_b.status();
    const absl::Status& lost = on_a.ok() ? on_b.status() : on_a.status();
    EXPECT_THAT(lost.code(), AnyOf(absl::StatusCode::kAborted,
                                   absl::StatusCode::kFailedPrecondition))
        << lost;
    const std::string new_pin =
        on_a.ok() ? on_a->other_pin() : on_b->other_pin();
    // Both now agree on the one new CA that was started.
    ASSERT_TRUE(a_.rotation->Follow(absl::Now()).ok());
    ASSERT_TRUE(b_.rotation->Follow(absl::Now()).ok());
    EXPECT_EQ(a_.rotation->State().other_pin(), new_pin);
    EXPECT_EQ(b_.rotation->State().other_pin(), new_pin);
    ASSERT_TRUE(b_.Step(CA_ROTATION_STEP_ABORT).ok());
    ASSERT_TRUE(a_.rotation->Follow(absl::Now()).ok());
    EXPECT_EQ(a_.rotation->State().phase(), CA_ROTATION_PHASE_STEADY);
  }
}

TEST_F(SharedCaRotationTest, AReplicaAwayDuringARotationTakesTheCurrentCa) {
  const std::string old_pin = a_.tls->pin();
  // b stops; a rotates all the way; b comes back with the old CA on disk.
  b_.rotation.reset();
  ASSERT_TRUE(a_.Step(CA_ROTATION_STEP_START).ok());
  auto switched = a_.Step(CA_ROTATION_STEP_SWITCH);
  ASSERT_TRUE(switched.ok()) << switched.status();
  ASSERT_TRUE(a_.Step(CA_ROTATION_STEP_FINISH).ok());
  ASSERT_EQ(PinOf(b_.pki() + "/ca.crt"), old_pin);
  ASSERT_NO_FATAL_FAILURE(Start(b_, "r-b2"));
  EXPECT_EQ(b_.tls->pin(), switched->pin());
  EXPECT_EQ(PinOf(b_.pki() + "/ca.crt"), switched->pin());
  EXPECT_EQ(b_.rotation->State().phase(), CA_ROTATION_PHASE_STEADY);

  // A data directory holding a CA the cluster never had is still refused.
  Replica c;
  auto foreign = pki::LoadOrCreateAuthority(
      c.pki(), pki::kClusterCaName, absl::Now(), pki::kClusterCaValidity);
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  ClusterOptions c_options;
  c_options.replica_id = "r-c";
  MemoryCluster c_cluster(state_, c_options);
  auto refused = BuiltinTls::Create(c.dir.path(), {}, absl::Now(), &c_cluster);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("is not the CA the other replicas share"));
}

TEST(SharedCaTest, EncodingRoundTripsAndReadsTheFormOfOlderReplicas) {
  auto one = pki::CreateAuthority("one", absl::Now(), absl::Hours(1));
  auto two = pki::CreateAuthority("two", absl::Now(), absl::Hours(1));
  ASSERT_TRUE(one.ok() && two.ok());
  // Steady, nothing retired: the certificate and key alone, as replicas
  // wrote before rotations were shared.
  SharedCa steady;
  steady.current = *one;
  EXPECT_EQ(EncodeSharedCa(steady), one->cert_pem + one->key_pem);
  auto back = DecodeSharedCa(one->cert_pem + one->key_pem);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->phase, CA_ROTATION_PHASE_STEADY);
  EXPECT_EQ(back->current.key_pem, one->key_pem);

  SharedCa switched;
  switched.phase = CA_ROTATION_PHASE_SWITCHED;
  switched.current = *two;
  switched.other = *one;
  switched.retired = {"sha256:aa", "sha256:bb"};
  back = DecodeSharedCa(EncodeSharedCa(switched));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->phase, CA_ROTATION_PHASE_SWITCHED);
  EXPECT_EQ(back->current.cert_pem, two->cert_pem);
  EXPECT_EQ(back->current.key_pem, two->key_pem);
  EXPECT_EQ(back->other.cert_pem, one->cert_pem);
  EXPECT_EQ(back->other.key_pem, one->key_pem);
  EXPECT_THAT(back->retired, ElementsAre("sha256:aa", "sha256:bb"));

  for (const std::string& bad :
       {std::string("nothing"), "varan-cluster-ca later\n" + one->cert_pem,
        "varan-cluster-ca started\n" + one->cert_pem + one->key_pem,
        "what is this\n" + one->cert_pem + one->key_pem}) {
    auto decoded = DecodeSharedCa(bad);
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kDataLoss) << bad;
    EXPECT_THAT(std::string(decoded.status().message()),
                HasSubstr("setting cluster_ca"));
  }
}

}  // namespace
}  // namespace varan::core
