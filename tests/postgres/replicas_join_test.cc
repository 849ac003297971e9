// Join tokens with several core replicas (#19), on the real binaries and a
// real PostgreSQL 15: a token's use limit holds for the whole fleet, not for
// each replica, however the registrations are spread over the replicas.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "tests/postgres/replica_fleet.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

// The uses every replica lists for join token `name` (-1: not listed).
std::vector<int> ListedUses(ReplicaFleet& fleet, const std::string& name) {
  std::vector<int> out;
  for (int i = 0; i < fleet.size(); ++i) {
    int uses = -1;
    auto list = fleet.client(i)->ListJoinTokens(false);
    if (list.ok()) {
      for (const varan::v1::JoinToken& t : *list) {
        if (t.name() == name) uses = static_cast<int>(t.uses());
      }
    }
    out.push_back(uses);
  }
  return out;
}

// Peripheries registering at once through every replica with a token good
// for two registrations: two join, every other is told it is used up. (Each
// replica's own copy of the token says it has uses left: before, each
// replica counted for itself and let up to two through.)
TEST_F(ReplicasTest, AJoinTokensUseLimitHoldsAcrossReplicas) {
  ASSERT_NO_FATAL_FAILURE(StartFleet());
  varan::v1::CreateJoinTokenRequest request;
  request.set_name("twice");
  request.set_max_uses(2);
  auto created = fleet_->client(0)->CreateJoinToken(request);
  ASSERT_TRUE(created.ok()) << created.status();
  // Every replica knows the token (its periodic re-read), none used it.
  ASSERT_TRUE(WaitFor(
      [&] { return ListedUses(*fleet_, "twice") == std::vector<int>(3, 0); },
      absl::Seconds(15)));

  constexpr int kPerReplica = 3;
  std::vector<grpc::Status> results(3 * kPerReplica);
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3 * kPerReplica; ++i) {
    threads.emplace_back([&, i] {
      auto stub = varan::v1::Registry::NewStub(
          grpc::CreateChannel(fleet_->address(i % 3), fleet_->Credentials()));
      varan::v1::RegisterRequest req;
      req.set_name(absl::StrCat("joiner-", i));
      req.set_advertise_address(absl::StrCat("[::1]:", 9000 + i));
      req.set_version("test");
      varan::v1::RegisterResponse response;
      grpc::ClientContext context;
      context.AddMetadata("authorization",
                          absl::StrCat("Bearer ", created->token()));
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(30));
      go.WaitForNotification();
      results[i] = stub->Register(&context, req, &response);
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();

  int joined = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const grpc::Status& s = results[i];
    if (s.ok()) {
      ++joined;
      continue;
    }
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << "joiner-" << i << ": " << s.error_message();
    EXPECT_TRUE(absl::StrContains(s.error_message(), "is used up (2"))
        << "joiner-" << i << ": " << s.error_message();
  }
  EXPECT_EQ(joined, 2);
  // And every replica comes to list it used twice.
  EXPECT_TRUE(WaitFor(
      [&] { return ListedUses(*fleet_, "twice") == std::vector<int>(3, 2); },
      absl::Seconds(15)));
}

}  // namespace
}  // namespace varan::testing
