// The Admin service's cluster CA calls (GetClusterCa, RotateClusterCa) as
// an in-process gRPC server on loopback, over FakeClusterCa: only an admin
// token reaches them, the step and `force` are passed on, the state comes
// back, and a core without a built-in CA says so.
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "common/peer_guard.h"
#include "common/server.h"
#include "core/server/admin_service.h"
#include "core/server/auth.h"
#include "core/server/tokens.h"
#include "core/store/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/fakes/core/fake_cluster_ca.h"

namespace varan::core {
namespace {

using ::testing::ElementsAre;

constexpr char kAdmin[] = "admin-secret-for-the-test";
constexpr char kJoin[] = "join-secret-for-the-test";

class AdminClusterCaTest : public ::testing::Test {
 protected:
  // Serves Admin with `control` (null: no built-in CA).
  void Serve(ClusterCaControl* control) {
    tokens_.SetBootstrap({BootstrapToken{"admin", "test", kAdmin}},
                         {BootstrapToken{"join", "test", kJoin}});
    service_ = std::make_unique<AdminService>(&auth_, nullptr, &tokens_,
                                              absl::Now(), nullptr, control);
    auto addr = ParseListenAddress("[::1]:0");
    ASSERT_TRUE(addr.ok());
    auto server = StartServer({*addr}, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = varan::v1::Admin::NewStub(
        grpc::CreateChannel(FormatHostPort(server_.addresses[0]),
                            grpc::InsecureChannelCredentials()));
  }
  void TearDown() override { server_.Shutdown(absl::Now()); }

  grpc::Status Rotate(const std::string& token, varan::v1::CaRotationStep step,
                      bool force, varan::v1::ClusterCa* out) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", BearerHeader(token));
    varan::v1::RotateClusterCaRequest req;
    req.set_step(step);
    req.set_force(force);
    return stub_->RotateClusterCa(&ctx, req, out);
  }
  grpc::Status Get(const std::string& token, varan::v1::ClusterCa* out) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", BearerHeader(token));
    return stub_->GetClusterCa(&ctx, {}, out);
  }

  MemoryStore store_;
  TokenRegistry tokens_{RealClock::Get(), &store_};
  PeerGuard guard_{RealClock::Get(), PeerGuardOptions{}};
  Authenticator auth_{&tokens_, &guard_};
  std::unique_ptr<AdminService> service_;
  RunningServer server_;
  std::unique_ptr<varan::v1::Admin::Stub> stub_;
};

TEST_F(AdminClusterCaTest, AnAdminReadsAndStepsTheRotation) {
  FakeClusterCa ca;
  ASSERT_NO_FATAL_FAILURE(Serve(&ca));
  varan::v1::ClusterCa state;
  ASSERT_TRUE(Get(kAdmin, &state).ok());
  EXPECT_EQ(state.pin(), "sha256:fake");
  grpc::Status s =
      Rotate(kAdmin, varan::v1::CA_ROTATION_STEP_START, false, &state);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(state.phase(), varan::v1::CA_ROTATION_PHASE_STARTED);
  ASSERT_TRUE(
      Rotate(kAdmin, varan::v1::CA_ROTATION_STEP_SWITCH, true, &state).ok());
  EXPECT_THAT(ca.steps(), ElementsAre(varan::v1::CA_ROTATION_STEP_START,
                                      varan::v1::CA_ROTATION_STEP_SWITCH));
  EXPECT_THAT(ca.forced(), ElementsAre(false, true));
  // The control's own refusal reaches the caller as it is.
  EXPECT_EQ(
      Rotate(kAdmin, varan::v1::CA_ROTATION_STEP_UNSPECIFIED, false, &state)
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  // Without a token (or with a wrong one), nothing moves.
  EXPECT_EQ(Get("", &state).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Rotate("wrong", varan::v1::CA_ROTATION_STEP_FINISH, false, &state)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A join token is a periphery's, not an operator's.
  grpc::Status joined =
      Rotate(kJoin, varan::v1::CA_ROTATION_STEP_FINISH, false, &state);
  EXPECT_FALSE(joined.ok());
  EXPECT_NE(joined.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ca.steps().size(), 2u);
}

TEST_F(AdminClusterCaTest, ACoreWithoutABuiltinCaSaysSo) {
  ASSERT_NO_FATAL_FAILURE(Serve(nullptr));
  varan::v1::ClusterCa state;
  grpc::Status s = Get(kAdmin, &state);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(),
              ::testing::HasSubstr("no built-in cluster CA"));
  EXPECT_EQ(Rotate(kAdmin, varan::v1::CA_ROTATION_STEP_START, false, &state)
                .error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace varan::core
