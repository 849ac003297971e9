// Tests for core/link/replica_peers.h: which replica a periphery's
// heartbeat reports are forwarded to, and what a replica learns about
// peripheries whose heartbeats reach another one (Heard, Held, AskHeld) —
// against in-process Replica services on loopback and one MemoryCluster.
#include "core/link/replica_peers.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "core/cluster/memory_cluster.h"
#include "core/jobs/job_owner.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "varan/v1/replica.grpc.pb.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// Another replica's Replica service: records the reports forwarded to it
// (acknowledging them all) and answers Held from `held`.
class FakeReplica final : public varan::v1::Replica::CallbackService {
 public:
  grpc::ServerUnaryReactor* Report(
      grpc::CallbackServerContext* context,
      const varan::v1::ReplicaReportRequest* request,
      varan::v1::ReplicaReportResponse* response) override {
    absl::MutexLock lock(&mu_);
    authorization_ = std::string(BearerToken(*context));
    for (const auto& e : request->executions()) {
      reported_.push_back(
          absl::StrCat(request->periphery_id(), " ", e.execution_id()));
      response->add_acknowledged(e.execution_id());
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Held(
      grpc::CallbackServerContext* context,
      const varan::v1::ReplicaHeldRequest* request,
      varan::v1::ReplicaHeldResponse* response) override {
    absl::MutexLock lock(&mu_);
    for (const auto& id : request->periphery_ids()) {
      auto it = held_.find(id);
      if (it != held_.end()) *response->add_peripheries() = it->second;
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  // The periphery `id` heartbeated here (once more), holding `executions`.
  void Beat(const std::string& id, std::vector<std::string> executions) {
    absl::MutexLock lock(&mu_);
    varan::v1::PeripheryHeld& h = held_[id];
    h.set_periphery_id(id);
    h.set_heartbeats(h.heartbeats() + 1);
    h.clear_execution_ids();
    for (auto& e : executions) h.add_execution_ids(std::move(e));
  }

  // Waits (up to 5 s) for `n` forwarded reports; returns them.
  std::vector<std::string> Reported(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return reported_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(5));
    return reported_;
  }

  std::string authorization() {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> reported_ ABSL_GUARDED_BY(mu_);
  std::string authorization_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, varan::v1::PeripheryHeld> held_
      ABSL_GUARDED_BY(mu_);
};

// A replica of the test: its cluster membership and, for the others, a
// served FakeReplica.
struct Member {
  FakeReplica service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<MemoryCluster> cluster;
};

class ReplicaPeersTest : public ::testing::Test {
 protected:
  ReplicaPeersTest() {
    // "a" is the replica under test; "b" and "c" serve fake services.
    for (const char* id :
         {"r-aaaaaaaa00000001", "r-bbbbbbbb00000002", "r-cccccccc00000003"}) {
      auto m = std::make_unique<Member>();
      grpc::ServerBuilder builder;
      int port = 0;
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                               &port);
      builder.RegisterService(&m->service);
      m->server = builder.BuildAndStart();
      EXPECT_NE(m->server, nullptr);
      ClusterOptions o;
      o.replica_id = id;
      o.address = absl::StrCat("127.0.0.1:", port);
      o.ttl = absl::Seconds(10);
      // b takes over the jobs of replicas that leave.
      if (members_.size() == 1) o.leases = {kJobsLease};
      m->cluster = std::make_unique<MemoryCluster>(state_, o);
      members_.push_back(std::move(m));
    }
    peers_ =
        std::make_unique<ReplicaPeers>(members_[0]->cluster.get(), Keepalive{});
  }
  ~ReplicaPeersTest() override {
    peers_.reset();
    for (auto& m : members_) m->server->Shutdown();
  }

  Member& b() { return *members_[1]; }
  Member& c() { return *members_[2]; }

  // An execution id of a job created by replica `m` (a tagged job id).
  static std::string ExecutionOf(const Member& m, const std::string& target) {
    return absl::StrCat("1a24d10fdbc000", ReplicaTag(m.cluster->self().id), "/",
                        target);
  }

  static google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> Reports(
      const std::vector<std::string>& ids) {
    google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> out;
    for (const auto& id : ids) out.Add()->set_execution_id(id);
    return out;
  }

  FakeClock clock_;
  std::shared_ptr<MemoryClusterState> state_ =
      std::make_shared<MemoryClusterState>(&clock_);
  std::vector<std::unique_ptr<Member>> members_;
  std::unique_ptr<ReplicaPeers> peers_;
};

TEST_F(ReplicaPeersTest, EachReportGoesToTheReplicaAnsweringForItsJob) {
  const Member& a = *members_[0];
  const std::string of_a = ExecutionOf(a, "p1");
  const std::string of_b = ExecutionOf(b(), "p1");
  const std::string of_c = ExecutionOf(c(), "p1");
  peers_->Forward("p1", Reports({of_a, of_b, of_c, "not-a-core-id"}));
  // Only each replica's own part; none of this replica's (it has it), and
  // nothing for an id core did not make.
  EXPECT_THAT(b().service.Reported(1), ElementsAre("p1 " + of_b));
  EXPECT_THAT(c().service.Reported(1), ElementsAre("p1 " + of_c));
  EXPECT_EQ(b().service.authorization(), members_[0]->cluster->secret());
  // The answers wait for the periphery's next heartbeat.
  varan::v1::HeartbeatResponse answer;
  for (int i = 0; i < 500 && answer.acknowledged_size() < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    peers_->TakeAnswers("p1", &answer);
  }
  EXPECT_THAT(answer.acknowledged(), UnorderedElementsAre(of_b, of_c));
}

TEST_F(ReplicaPeersTest, AReportOfADeadReplicasJobGoesToTheJobsLeaseHolder) {
  const std::string of_c = ExecutionOf(c(), "p1");
  const std::string untagged = "1a24d10fdbc000a1b2c3/p1";  // a core alone's
  // c leaves: its jobs are the jobs lease holder's (b's), like those of a
  // core alone.
  c().cluster.reset();
  ASSERT_TRUE(b().cluster->Holds(kJobsLease));
  peers_->Forward("p1", Reports({of_c, untagged}));
  EXPECT_THAT(b().service.Reported(2),
              UnorderedElementsAre("p1 " + of_c, "p1 " + untagged));
}

TEST_F(ReplicaPeersTest, HeardHeartbeatsAreAnsweredWithTheLatest) {
  peers_->Heard("p1", Reports({"j/p1", "k/p1"}));
  peers_->Heard("p1", Reports({"k/p1"}));
  varan::v1::ReplicaHeldRequest request;
  request.add_periphery_ids("p1");
  request.add_periphery_ids("unknown");
  varan::v1::ReplicaHeldResponse response;
  peers_->Held(request, &response);
  ASSERT_EQ(response.peripheries_size(), 1);
  EXPECT_EQ(response.peripheries(0).periphery_id(), "p1");
  EXPECT_EQ(response.peripheries(0).heartbeats(), 2u);
  EXPECT_THAT(response.peripheries(0).execution_ids(), ElementsAre("k/p1"));
}

TEST_F(ReplicaPeersTest, AskHeldReturnsEachNewHeartbeatOnceFromItsHolder) {
  b().cluster->Connected("p1");
  c().cluster->Connected("p2");
  members_[0]->cluster->Connected("p3");  // held here: not asked
  b().service.Beat("p1", {"j/p1"});
  c().service.Beat("p2", {});
  auto first = peers_->AskHeld({"p1", "p2", "p3", "nowhere"});
  ASSERT_EQ(first.size(), 2u);
  std::vector<std::string> seen;
  for (const auto& h : first) {
    seen.push_back(absl::StrCat(h.periphery_id(), ":", h.execution_ids_size()));
  }
  EXPECT_THAT(seen, UnorderedElementsAre("p1:1", "p2:0"));
  // No heartbeat since: nothing new.
  EXPECT_THAT(peers_->AskHeld({"p1", "p2"}), IsEmpty());
  // p1 heartbeats again, without the execution.
  b().service.Beat("p1", {});
  auto next = peers_->AskHeld({"p1", "p2"});
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].periphery_id(), "p1");
  EXPECT_THAT(next[0].execution_ids(), IsEmpty());
  // p1 moves to c, whose count starts anew: that is a new heartbeat too.
  c().cluster->Connected("p1");
  c().service.Beat("p1", {});
  auto moved = peers_->AskHeld({"p1"});
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].heartbeats(), 1u);
}

}  // namespace
}  // namespace varan::core
