// Two CoreServers started in this process (core/daemon/core_server.h), each
// on a port 0 of loopback with its own data directory, served over real
// gRPC: CoreClient calls (GetInfo, ListPeripheries, a Dispatch that finds no
// targets), a fake periphery registering through Registry.Register, and a
// clean shutdown of both. Nothing of one core is visible in the other.
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/core_client.h"
#include "common/clock.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "core/daemon/core_server.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"

namespace varan::testing {
namespace {

// A token file's secret (without its newline).
std::string Secret(const std::string& path) {
  return std::string(absl::StripAsciiWhitespace(ReadFile(path)));
}

// Registers a periphery called `name` with the core at `address` as
// varan-periphery would, with the join token `secret`, over TLS pinning the
// CA whose pin `pinned` carries (a join token of the core at `address`).
absl::StatusOr<varan::v1::RegisterResponse> Register(
    const std::string& address, const std::string& secret,
    const std::string& name, const std::string& pinned) {
  ClientTlsFiles tls;
  tls.ca_pin = SplitJoinToken(pinned).pin;
  auto channel = SecureChannel(address, tls);
  auto stub = varan::v1::Registry::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", BearerHeader(secret));
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(10));
  varan::v1::RegisterRequest request;
  request.set_name(name);
  request.set_advertise_address("[::1]:1");
  request.set_csr(*pki::CreateRequest(*pki::NewPrivateKey(), name));
  varan::v1::RegisterResponse response;
  grpc::Status s = stub->Register(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

// One in-process core in a temporary data directory.
struct InProcessCore {
  InProcessCore() {
    core::CoreConfig config;
    config.listen = {"[::1]:0"};
    config.data_dir = dir.File("data");
    auto started = core::CoreServer::Start(config, RealClock::Get());
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return;
    server = *std::move(started);
    EXPECT_EQ(server->addresses().size(), 1u);
    address = absl::StrCat("[::1]:", server->addresses().at(0).port);
    client::ClientOptions options;
    options.address = address;
    options.token = Secret(server->admin_token_path());
    options.tls = PinnedCore(config.data_dir);
    auto c = client::CoreClient::Create(std::move(options));
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) client = *std::move(c);
  }

  TempDir dir;
  std::unique_ptr<core::CoreServer> server;
  std::string address;
  std::unique_ptr<client::CoreClient> client;
};

TEST(InProcessCoreTest, TwoCoresInOneProcessServeOnLoopbackAndStopCleanly) {
  InProcessCore a;
  InProcessCore b;
  ASSERT_NE(a.client, nullptr);
  ASSERT_NE(b.client, nullptr);
  EXPECT_NE(a.address, b.address);
  // Each core has its own tokens: one's admin token is not the other's.
  EXPECT_NE(Secret(a.server->admin_token_path()),
            Secret(b.server->admin_token_path()));

  for (InProcessCore* core : {&a, &b}) {
    auto info = core->client->GetInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->peripheries(), 0u);
    EXPECT_EQ(info->heartbeat_interval().seconds(), 10);
  }

  const std::string a_join = Secret(a.server->join_token_path());
  auto registered = Register(a.address, a_join, "web-1", a_join);
  ASSERT_TRUE(registered.ok()) << registered.status();
  EXPECT_FALSE(registered->periphery_id().empty());
  EXPECT_FALSE(registered->credential().empty());
  // b's join token does not register with a.
  EXPECT_EQ(
      Register(a.address, Secret(b.server->join_token_path()), "web-2", a_join)
          .status()
          .code(),
      absl::StatusCode::kUnauthenticated);

  auto in_a = a.client->ListPeripheries({});
  ASSERT_TRUE(in_a.ok()) << in_a.status();
  ASSERT_EQ(in_a->size(), 1u);
  EXPECT_EQ((*in_a)[0].name(), "web-1");
  EXPECT_EQ((*in_a)[0].id(), registered->periphery_id());
  auto in_b = b.client->ListPeripheries({});
  ASSERT_TRUE(in_b.ok()) << in_b.status();
  EXPECT_TRUE(in_b->empty());

  // A dispatch that matches nothing: refused unless allowed, then a job
  // with no targets.
  varan::v1::DispatchRequest dispatch;
  dispatch.mutable_target()->set_selector("role=none");
  dispatch.mutable_spec()->add_argv("true");
  auto refused = b.client->Dispatch(dispatch);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  dispatch.mutable_options()->set_allow_no_targets(true);
  auto dispatched = b.client->Dispatch(dispatch);
  ASSERT_TRUE(dispatched.ok()) << dispatched.status();
  EXPECT_TRUE(dispatched->targets().empty());
  auto job = b.client->GetJob(dispatched->job_id());
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), varan::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(a.client->GetJob(dispatched->job_id()).status().code(),
            absl::StatusCode::kNotFound);

  // Shutting one down leaves the other serving.
  a.server->Shutdown(absl::Seconds(1));
  EXPECT_FALSE(a.client->GetInfo().ok());
  EXPECT_TRUE(b.client->GetInfo().ok());
  b.server->Shutdown(absl::Seconds(1));
  EXPECT_FALSE(b.client->GetInfo().ok());
}

TEST(InProcessCoreTest, StartRefusesAPortInUseAndTheCoreServedStaysUp) {
  InProcessCore a;
  ASSERT_NE(a.server, nullptr);
  TempDir other;
  core::CoreConfig config;
  config.listen = {a.address};
  config.data_dir = other.File("data");
  auto second = core::CoreServer::Start(config, RealClock::Get());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(a.address), std::string::npos)
      << second.status();
  EXPECT_TRUE(a.client->GetInfo().ok());
}

}  // namespace
}  // namespace varan::testing
