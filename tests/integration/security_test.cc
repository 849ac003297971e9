// Security through the real binaries (issue #7): every RPC of every service
// against every kind of caller (the matrix), the periphery's Agent refusing
// all but core, roles naming what they need, credential replay after
// removal, the failed-authentication limit, pre-provisioned token files
// rotated with SIGHUP, and join tokens with a use count.
#include <signal.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/grpc_util.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/daemons.h"
#include "varan/v1/core.grpc.pb.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::testing {
namespace {

using ::testing::HasSubstr;
using Code = grpc::StatusCode;

constexpr Code OK = Code::OK;
constexpr Code UNAUTH = Code::UNAUTHENTICATED;
constexpr Code DENIED = Code::PERMISSION_DENIED;
constexpr Code NOTFOUND = Code::NOT_FOUND;

std::string Trimmed(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

// One call with `token` as its bearer token ("" sends none); returns the
// status code.
using Call = std::function<Code(const std::string& token)>;

void Authorize(grpc::ClientContext* ctx, const std::string& token) {
  if (!token.empty()) ctx->AddMetadata("authorization", BearerHeader(token));
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
}

template <typename Stub, typename Request, typename Response>
Call Unary(Stub* stub,
           grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                        Response*),
           std::function<Request()> make_request) {
  return [stub, method, make_request](const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    Response response;
    return (stub->*method)(&ctx, make_request(), &response).error_code();
  };
}

template <typename Stub, typename Request, typename Event>
Call Streaming(Stub* stub,
               std::unique_ptr<grpc::ClientReader<Event>> (Stub::*method)(
                   grpc::ClientContext*, const Request&),
               std::function<Request()> make_request) {
  return [stub, method, make_request](const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    auto reader = (stub->*method)(&ctx, make_request());
    Event event;
    while (reader->Read(&event)) {
    }
    return reader->Finish().error_code();
  };
}

class SecurityTest : public ::testing::Test {
 protected:
  std::string AdminToken() {
    return Trimmed(ReadFile(fleet_->admin_token_file()));
  }

  // Creates a token through the API; `ttl` zero: none.
  std::string CreateToken(const std::string& name, varan::v1::Role role,
                          absl::Duration ttl = absl::ZeroDuration()) {
    varan::v1::CreateTokenRequest req;
    req.set_name(name);
    req.set_role(role);
    if (ttl > absl::ZeroDuration()) SetDuration(ttl, req.mutable_ttl());
    auto resp = fleet_->client()->CreateToken(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->secret() : "";
  }

  // To core as the fixture's own calls go (its built-in CA pinned); to a
  // periphery's Agent in plaintext.
  std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
    return fleet_->Channel(address);
  }
  // To core presenting periphery `name`'s key and certificate (what a thief
  // of its state directory holds).
  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& name) {
    ClientTlsFiles tls = fleet_->client_tls();
    tls.cert = fleet_->dir().File("periphery-" + name + "/periphery.crt");
    tls.key = fleet_->dir().File("periphery-" + name + "/periphery.key");
    return SecureChannel(fleet_->core_address(), tls);
  }
  // To a periphery's Agent over TLS (its certificate not checked),
  // presenting `cert`/`key` ("": none).
  std::shared_ptr<grpc::Channel> PeripheryChannel(const std::string& address,
                                                  const std::string& cert = "",
                                                  const std::string& key = "") {
    ClientTlsFiles tls;
    tls.skip_verify = true;
    tls.cert = cert;
    tls.key = key;
    return SecureChannel(address, tls);
  }

  std::unique_ptr<TestFleet> fleet_;
};

// Every RPC of Registry, Fleet, Jobs and Admin × {no token, wrong token,
// expired, revoked, viewer, operator, admin, a join token, a periphery's
// credential} → exactly the expected status code.
TEST_F(SecurityTest, EveryRpcAgainstEveryKindOfCaller) {
  fleet_ = std::make_unique<TestFleet>(
      std::vector<std::string>{"--auth-failure-limit", "0"});
  fleet_->StartCore();
  ASSERT_NE(fleet_->StartPeriphery("p1"), nullptr);
  const std::string p1_id =
      Trimmed(ReadFile(fleet_->dir().File("periphery-p1/periphery_id")));
  const std::string p1_credential =
      Trimmed(ReadFile(fleet_->dir().File("periphery-p1/credential")));
  ASSERT_FALSE(p1_credential.empty());

  const std::string expired =
      CreateToken("expired", varan::v1::ROLE_ADMIN, absl::Seconds(1));
  const std::string revoked = CreateToken("revoked", varan::v1::ROLE_ADMIN);
  ASSERT_TRUE(fleet_->client()->RevokeToken("revoked").ok());
  const std::string viewer = CreateToken("viewer", varan::v1::ROLE_VIEWER);
  const std::string op = CreateToken("operator", varan::v1::ROLE_OPERATOR);
  const std::string admin = CreateToken("admin2", varan::v1::ROLE_ADMIN);
  const std::string join = Trimmed(ReadFile(fleet_->join_token_file()));

  // A finished job for the job RPCs to look at.
  varan::v1::DispatchRequest true_on_p1;
  true_on_p1.mutable_target()->add_names("p1");
  true_on_p1.mutable_spec()->add_argv("true");
  auto dispatched = fleet_->client()->Dispatch(true_on_p1);
  ASSERT_TRUE(dispatched.ok()) << dispatched.status();
  const std::string job_id = dispatched->job_id();
  ASSERT_TRUE(WaitFor([&] {
    auto job = fleet_->client()->GetJob(job_id);
    return job.ok() && job->state() == varan::v1::JOB_STATE_SUCCEEDED;
  }));
  ASSERT_TRUE(WaitFor(
      [&] {
        grpc::ClientContext ctx;
        Authorize(&ctx, expired);
        varan::v1::CoreInfo info;
        return varan::v1::Admin::NewStub(Channel(fleet_->core_address()))
                   ->GetInfo(&ctx, {}, &info)
                   .error_code() == UNAUTH;
      },
      absl::Seconds(5)));

  auto channel = Channel(fleet_->core_address());
  // Peripheries' calls present their certificate: p1's, for all callers
  // (the credential column is p1's own call).
  auto registry = varan::v1::Registry::NewStub(ChannelAs("p1"));
  const std::string csr = *pki::CreateRequest(*pki::NewPrivateKey(), "matrix");
  auto fleet = varan::v1::Fleet::NewStub(channel);
  auto jobs = varan::v1::Jobs::NewStub(channel);
  auto admin_stub = varan::v1::Admin::NewStub(channel);
  int token_serial = 0;

  using varan::v1::Admin;
  using varan::v1::Fleet;
  using varan::v1::Jobs;
  using varan::v1::Registry;
  struct Row {
    std::string rpc;
    Call call;
    // none, wrong, expired, revoked, viewer, operator, admin, join token,
    // periphery credential
    std::vector<Code> expected;
  };
  const std::vector<Code> viewer_ok = {UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK,
                                       OK,     OK,     UNAUTH, UNAUTH};
  const std::vector<Code> operator_ok = {UNAUTH, UNAUTH, UNAUTH, UNAUTH, DENIED,
                                         OK,     OK,     UNAUTH, UNAUTH};
  const std::vector<Code> admin_ok = {UNAUTH, UNAUTH, UNAUTH, UNAUTH, DENIED,
                                      DENIED, OK,     UNAUTH, UNAUTH};
  const std::vector<Code> admin_not_found = {
      UNAUTH, UNAUTH, UNAUTH, UNAUTH, DENIED, DENIED, NOTFOUND, UNAUTH, UNAUTH};
  // Registry.Connect: the tunnel's hello, answered with TunnelOpened when
  // the token fits (the test then closes the stream), or the error that ends
  // the stream.
  auto connect = [&](varan::v1::TunnelHello hello) -> Call {
    return [&registry, hello](const std::string& token) {
      grpc::ClientContext ctx;
      Authorize(&ctx, token);
      auto stream = registry->Connect(&ctx);
      varan::v1::TunnelUp up;
      *up.mutable_hello() = hello;
      stream->Write(up);
      varan::v1::TunnelDown down;
      if (stream->Read(&down) && down.has_opened()) {
        ctx.TryCancel();
        stream->Finish();
        return OK;
      }
      return stream->Finish().error_code();
    };
  };
  varan::v1::TunnelHello register_hello;
  register_hello.mutable_register_()->set_name("matrix-tunnel");
  register_hello.mutable_register_()->set_csr(csr);
  varan::v1::TunnelHello resume_hello;
  resume_hello.set_periphery_id(p1_id);
  const std::vector<Row> rows =
      {
          {"Registry.Connect (hello registering)",
           connect(register_hello),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK,
            UNAUTH}},
          {"Registry.Connect (hello resuming)",
           connect(resume_hello),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH,
            OK}},
          {"Registry.Register",
           Unary<Registry::Stub, varan::v1::RegisterRequest,
                 varan::v1::RegisterResponse>(
               registry.get(), &Registry::Stub::Register,
               [&] {
                 varan::v1::RegisterRequest r;
                 r.set_name("matrix-joined");
                 r.set_advertise_address("[::1]:1");
                 r.set_csr(csr);
                 return r;
               }),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK,
            UNAUTH}},
          {"Registry.RenewCertificate",
           Unary<Registry::Stub, varan::v1::RenewCertificateRequest,
                 varan::v1::RenewCertificateResponse>(
               registry.get(), &Registry::Stub::RenewCertificate,
               [&] {
                 varan::v1::RenewCertificateRequest r;
                 r.set_periphery_id(p1_id);
                 r.set_csr(csr);
                 return r;
               }),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH,
            OK}},
          {"Registry.Heartbeat",
           Unary<Registry::Stub, varan::v1::HeartbeatRequest,
                 varan::v1::HeartbeatResponse>(registry.get(),
                                               &Registry::Stub::Heartbeat,
                                               [&] {
                                                 varan::v1::HeartbeatRequest r;
                                                 r.set_periphery_id(p1_id);
                                                 return r;
                                               }),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH,
            OK}},
          {"Fleet.ListPeripheries",
           Unary<Fleet::Stub, varan::v1::ListPeripheriesRequest,
                 varan::v1::ListPeripheriesResponse>(
               fleet.get(), &Fleet::Stub::ListPeripheries,
               [] { return varan::v1::ListPeripheriesRequest(); }),
           viewer_ok},
          {"Fleet.GetPeriphery",
           Unary<Fleet::Stub, varan::v1::GetPeripheryRequest,
                 varan::v1::Periphery>(fleet.get(), &Fleet::Stub::GetPeriphery,
                                       [] {
                                         varan::v1::GetPeripheryRequest r;
                                         r.set_name_or_id("p1");
                                         return r;
                                       }),
           viewer_ok},
          {"Fleet.RemovePeriphery",
           Unary<Fleet::Stub, varan::v1::RemovePeripheryRequest,
                 varan::v1::Periphery>(fleet.get(),
                                       &Fleet::Stub::RemovePeriphery,
                                       [] {
                                         varan::v1::RemovePeripheryRequest r;
                                         r.set_name_or_id("nope");
                                         return r;
                                       }),
           admin_not_found},
          {"Fleet.UpdateLabels",
           Unary<Fleet::Stub, varan::v1::UpdateLabelsRequest,
                 varan::v1::Periphery>(fleet.get(), &Fleet::Stub::UpdateLabels,
                                       [] {
                                         varan::v1::UpdateLabelsRequest r;
                                         r.set_name_or_id("p1");
                                         (*r.mutable_set())["matrix"] = "1";
                                         return r;
                                       }),
           operator_ok},
          {"Jobs.Dispatch",
           Unary<Jobs::Stub, varan::v1::DispatchRequest,
                 varan::v1::DispatchResponse>(jobs.get(), &Jobs::Stub::Dispatch,
                                              [&] { return true_on_p1; }),
           operator_ok},
          {"Jobs.Exec",
           Streaming<Jobs::Stub, varan::v1::DispatchRequest,
                     varan::v1::JobEvent>(jobs.get(), &Jobs::Stub::Exec,
                                          [&] { return true_on_p1; }),
           operator_ok},
          {"Jobs.WatchJob",
           Streaming<Jobs::Stub, varan::v1::WatchJobRequest,
                     varan::v1::JobEvent>(jobs.get(), &Jobs::Stub::WatchJob,
                                          [&] {
                                            varan::v1::WatchJobRequest r;
                                            r.set_job_id(job_id);
                                            return r;
                                          }),
           viewer_ok},
          {"Jobs.GetJob",
           Unary<Jobs::Stub, varan::v1::GetJobRequest, varan::v1::Job>(
               jobs.get(), &Jobs::Stub::GetJob,
               [&] {
                 varan::v1::GetJobRequest r;
                 r.set_job_id(job_id);
                 return r;
               }),
           viewer_ok},
          {"Jobs.ReadOutput",
           Streaming<Jobs::Stub, varan::v1::ReadOutputRequest,
                     varan::v1::OutputPiece>(
               jobs.get(), &Jobs::Stub::ReadOutput,
               [&] {
                 varan::v1::ReadOutputRequest r;
                 r.set_job_id(job_id);
                 r.set_target("p1");
                 r.set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
                 return r;
               }),
           viewer_ok},
          {"Jobs.ListJobs",
           Unary<Jobs::Stub, varan::v1::ListJobsRequest,
                 varan::v1::ListJobsResponse>(
               jobs.get(), &Jobs::Stub::ListJobs,
               [] { return varan::v1::ListJobsRequest(); }),
           viewer_ok},
          {"Jobs.CancelJob",
           Unary<Jobs::Stub, varan::v1::CancelJobRequest, varan::v1::Job>(
               jobs.get(), &Jobs::Stub::CancelJob,
               [&] {
                 varan::v1::CancelJobRequest r;
                 r.set_job_id(job_id);  // finished: canceling is a no-op
                 return r;
               }),
           operator_ok},
          {"Admin.GetInfo",
           Unary<Admin::Stub, varan::v1::GetInfoRequest, varan::v1::CoreInfo>(
               admin_stub.get(), &Admin::Stub::GetInfo,
               [] { return varan::v1::GetInfoRequest(); }),
           viewer_ok},
          {"Admin.CreateToken",
           Unary<Admin::Stub, varan::v1::CreateTokenRequest,
                 varan::v1::CreateTokenResponse>(
               admin_stub.get(),
               &Admin::Stub::CreateToken,
               [&] {
                 varan::v1::CreateTokenRequest r;
                 r.set_name(absl::StrCat("made-", ++token_serial));
                 r.set_role(varan::v1::ROLE_VIEWER);
                 return r;
               }),
           admin_ok},
          {"Admin.ListTokens",
           Unary<Admin::Stub, varan::v1::ListTokensRequest,
                 varan::v1::ListTokensResponse>(
               admin_stub.get(), &Admin::Stub::ListTokens,
               [] { return varan::v1::ListTokensRequest(); }),
           admin_ok},
          {"Admin.RevokeToken",
           Unary<Admin::Stub, varan::v1::RevokeTokenRequest,
                 varan::v1::Token>(admin_stub.get(), &Admin::Stub::RevokeToken,
                                   [] {
                                     varan::v1::RevokeTokenRequest r;
                                     r.set_name_or_id("nope");
                                     return r;
                                   }),
           admin_not_found},
          {"Admin.CreateJoinToken",
           Unary<Admin::Stub, varan::v1::CreateJoinTokenRequest,
                 varan::
                     v1::CreateJoinTokenResponse>(admin_stub.get(),
                                                  &Admin::Stub::CreateJoinToken,
                                                  [] {
                                                    varan::v1::
                                                        CreateJoinTokenRequest
                                                            r;
                                                    r.set_max_uses(1);
                                                    return r;
                                                  }),
           admin_ok},
          {"Admin.ListJoinTokens",
           Unary<Admin::Stub, varan::v1::ListJoinTokensRequest,
                 varan::v1::ListJoinTokensResponse>(
               admin_stub.get(), &Admin::Stub::ListJoinTokens,
               [] { return varan::v1::ListJoinTokensRequest(); }),
           admin_ok},
          {"Admin.RevokeJoinToken",
           Unary<Admin::Stub, varan::v1::RevokeJoinTokenRequest,
                 varan::v1::
                     JoinToken>(admin_stub.get(), &Admin::Stub::RevokeJoinToken,
                                [] {
                                  varan::v1::RevokeJoinTokenRequest r;
                                  r.set_name_or_id("nope");
                                  return r;
                                }),
           admin_not_found},
          {"Admin.GetClusterCa",
           Unary<Admin::Stub, varan::v1::GetClusterCaRequest,
                 varan::v1::ClusterCa>(
               admin_stub.get(), &Admin::Stub::GetClusterCa,
               [] { return varan::v1::GetClusterCaRequest(); }),
           admin_ok},
          // No step: an admin is told so, and nothing rotates.
          {"Admin.RotateClusterCa",
           Unary<Admin::Stub, varan::v1::RotateClusterCaRequest,
                 varan::v1::ClusterCa>(
               admin_stub.get(), &Admin::Stub::RotateClusterCa,
               [] { return varan::v1::RotateClusterCaRequest(); }),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, DENIED, DENIED,
            Code::INVALID_ARGUMENT, UNAUTH, UNAUTH}},
          // No request: every operator is told so, and nothing is issued.
          {"Admin.IssueClientCertificate",
           Unary<Admin::Stub, varan::v1::IssueClientCertificateRequest,
                 varan::v1::IssueClientCertificateResponse>(
               admin_stub.get(), &Admin::Stub::IssueClientCertificate,
               [] { return varan::v1::IssueClientCertificateRequest(); }),
           {UNAUTH, UNAUTH, UNAUTH, UNAUTH, Code::INVALID_ARGUMENT,
            Code::INVALID_ARGUMENT, Code::INVALID_ARGUMENT, UNAUTH, UNAUTH}},
      };
  const std::vector<std::pair<std::string, std::string>> callers = {
      {"no token", ""},
      {"wrong token", GenerateSecret()},
      {"expired", expired},
      {"revoked", revoked},
      {"viewer", viewer},
      {"operator", op},
      {"admin", admin},
      {"join token", join},
      {"periphery credential", p1_credential},
  };
  // Every method of every service is in the table.
  std::map<std::string, std::set<std::string>> methods_per_service;
  for (const Row& row : rows) {
    const std::string method = row.rpc.substr(0, row.rpc.find(' '));
    methods_per_service[method.substr(0, method.find('.'))].insert(method);
  }
  const google::protobuf::FileDescriptor* core_proto =
      varan::v1::Job::descriptor()->file();
  for (const char* name : {"Registry", "Fleet", "Jobs", "Admin"}) {
    const auto* service = core_proto->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    EXPECT_EQ(static_cast<int>(methods_per_service[service->name()].size()),
              service->method_count())
        << service->full_name() << " has RPCs the matrix does not cover";
  }
  for (const Row& row : rows) {
    ASSERT_EQ(row.expected.size(), callers.size()) << row.rpc;
    for (size_t i = 0; i < callers.size(); ++i) {
      EXPECT_EQ(row.call(callers[i].second), row.expected[i])
          << row.rpc << " called with " << callers[i].first;
    }
  }
  // Health stays open for probes.
  EXPECT_TRUE(Healthy(fleet_->core_address(), fleet_->client_tls()));
  // No secret reached core's log.
  const std::string log = fleet_->core()->Log();
  for (const auto& [who, secret] : callers) {
    if (!secret.empty()) {
      EXPECT_THAT(log, ::testing::Not(HasSubstr(secret))) << who;
    }
  }
  EXPECT_THAT(log, HasSubstr("audit: operator from "));
  EXPECT_THAT(log, HasSubstr("argv [true]"));
}

// The periphery's Agent service accepts core's call, presenting core's
// certificate from the pinned CA, and nothing else: no certificate or
// another periphery's, whatever token comes with it.
TEST_F(SecurityTest, PeripheryRefusesEveryoneButCore) {
  fleet_ = std::make_unique<TestFleet>(
      std::vector<std::string>{"--auth-failure-limit", "0"});
  fleet_->StartCore();
  // Without the failed-authentication limit, which the strangers below
  // would reach (RepeatedFailedAuthenticationIsRateLimited tests it).
  ASSERT_NE(fleet_->StartPeriphery("p1", {}, {"--auth-failure-limit", "0"}),
            nullptr);
  ASSERT_NE(fleet_->StartPeriphery("p2"), nullptr);
  auto p1 = fleet_->client()->GetPeriphery("p1");
  ASSERT_TRUE(p1.ok());
  const std::string own =
      Trimmed(ReadFile(fleet_->dir().File("periphery-p1/credential")));
  const std::string other =
      Trimmed(ReadFile(fleet_->dir().File("periphery-p2/credential")));
  ASSERT_NE(own, other);
  using varan::v1::Agent;
  struct Row {
    std::string rpc;
    Call call;
    Code authorized;
  };
  // Core presents its own certificate ("varan-core", from the pinned CA).
  auto core_agent = Agent::NewStub(
      PeripheryChannel(p1->address(), fleet_->dir().File("core/pki/core.crt"),
                       fleet_->dir().File("core/pki/core.key")));
  // Strangers present none, or p2's (same CA, not core's).
  auto bare_agent = Agent::NewStub(PeripheryChannel(p1->address()));
  auto p2_agent = Agent::NewStub(PeripheryChannel(
      p1->address(), fleet_->dir().File("periphery-p2/periphery.crt"),
      fleet_->dir().File("periphery-p2/periphery.key")));
  auto rows_for = [](Agent::Stub* agent) -> std::vector<Row> {
    return {
        {"Agent.Execute",
         Streaming<Agent::Stub, varan::v1::ExecuteRequest,
                   varan::v1::ExecuteEvent>(agent, &Agent::Stub::Execute,
                                            [] {
                                              varan::v1::ExecuteRequest r;
                                              r.mutable_spec()->add_argv(
                                                  "true");
                                              return r;
                                            }),
         OK},
        {"Agent.Cancel",
         Unary<Agent::Stub, varan::v1::CancelRequest,
               varan::v1::CancelResponse>(agent, &Agent::Stub::Cancel,
                                          [] {
                                            varan::v1::CancelRequest r;
                                            r.set_execution_id("nope");
                                            return r;
                                          }),
         NOTFOUND},
        {"Agent.GetFacts",
         Unary<Agent::Stub, varan::v1::GetFactsRequest, varan::v1::HostFacts>(
             agent, &Agent::Stub::GetFacts,
             [] { return varan::v1::GetFactsRequest(); }),
         OK},
        {"Agent.GetStats",
         Unary<Agent::Stub, varan::v1::GetStatsRequest, varan::v1::HostStats>(
             agent, &Agent::Stub::GetStats,
             [] { return varan::v1::GetStatsRequest(); }),
         OK},
    };
  };
  const std::vector<Row> rows = rows_for(core_agent.get());
  EXPECT_EQ(static_cast<int>(rows.size()),
            varan::v1::ExecuteRequest::descriptor()
                ->file()
                ->FindServiceByName("Agent")
                ->method_count());
  const std::vector<std::pair<std::string, std::string>> tokens = {
      {"no token", ""},
      {"wrong token", GenerateSecret()},
      {"core's admin token", AdminToken()},
      {"join token", Trimmed(ReadFile(fleet_->join_token_file()))},
      {"p2's credential", other},
      {"p1's own credential", own},
  };
  // Core's certificate is the authentication (core keeps only a hash of
  // p1's credential, and sends none): without it no token helps, not even
  // p1's own credential; with it the call is served.
  for (const auto& [channel, agent] :
       {std::pair{"no certificate", bare_agent.get()},
        std::pair{"p2's certificate", p2_agent.get()}}) {
    for (const Row& row : rows_for(agent)) {
      for (const auto& [who, token] : tokens) {
        EXPECT_EQ(row.call(token), UNAUTH)
            << row.rpc << " with " << channel << " and " << who;
      }
    }
  }
  for (const Row& row : rows) {
    EXPECT_EQ(row.call(""), row.authorized) << row.rpc;
  }
  // Plaintext is not served at all; health stays open over TLS.
  EXPECT_FALSE(Healthy(p1->address()));
  ClientTlsFiles any_server;
  any_server.skip_verify = true;
  EXPECT_TRUE(Healthy(p1->address(), any_server));
}

TEST_F(SecurityTest, RolesAreEnforcedAndVaranctlNamesTheRoleNeeded) {
  fleet_ = std::make_unique<TestFleet>();
  fleet_->StartCore();
  ASSERT_NE(fleet_->StartPeriphery("p1"), nullptr);
  // varanctl tokens create prints the token alone on stdout.
  RunResult created = fleet_->Ctl(
      {"tokens", "create", "--name", "ci", "--role", "viewer", "--ttl", "30d"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string token = Trimmed(created.out);
  EXPECT_EQ(token.size(), 64u) << created.out;
  EXPECT_THAT(created.err, HasSubstr("shown only this once"));
  const std::string token_file = fleet_->dir().File("ci.token");
  ASSERT_TRUE(WriteSecretFile(token_file, token).ok());

  auto as_viewer = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {BinPath("varanctl"),
                                     "--core",
                                     fleet_->core_address(),
                                     "--ca-hash",
                                     fleet_->client_tls().ca_pin,
                                     "--token-file",
                                     token_file};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, {{"VARAN_TOKEN", ""}, {"VARAN_TOKEN_FILE", ""}});
  };
  RunResult list = as_viewer({"peripheries", "list", "-o", "json"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("\"p1\""));
  RunResult exec = as_viewer({"exec", "-n", "p1", "--", "true"});
  EXPECT_EQ(exec.exit_code, 2);
  EXPECT_EQ(exec.err,
            absl::StrCat("varanctl: error: permission denied by core at ",
                         fleet_->core_address(),
                         ": this call needs the operator role; token \"ci\" "
                         "has the viewer role\n"));
  RunResult tokens = as_viewer({"tokens", "list"});
  EXPECT_EQ(tokens.exit_code, 2);
  EXPECT_THAT(tokens.err, HasSubstr("needs the admin role"));

  // The admin sees the token, without its secret, and revokes it.
  RunResult listed = fleet_->Ctl({"tokens", "list", "-o", "json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("\"ci\""));
  EXPECT_THAT(listed.out, HasSubstr("ROLE_VIEWER"));
  EXPECT_THAT(listed.out, ::testing::Not(HasSubstr(token)));
  RunResult revoked = fleet_->Ctl({"tokens", "revoke", "ci"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  RunResult after = as_viewer({"peripheries", "list"});
  EXPECT_EQ(after.exit_code, 2);
  EXPECT_THAT(after.err, HasSubstr("operator token \"ci\" was revoked"));

  // Dispatch and cancel are recorded with the token name.
  RunResult op = fleet_->Ctl(
      {"tokens", "create", "--name", "deployer", "--role", "operator"});
  ASSERT_EQ(op.exit_code, 0) << op.err;
  ASSERT_TRUE(WriteSecretFile(token_file, Trimmed(op.out)).ok());
  RunResult async =
      as_viewer({"exec", "-n", "p1", "--async", "--", "sleep", "30"});
  ASSERT_EQ(async.exit_code, 0) << async.err;
  const std::string job_id = Trimmed(async.out);
  RunResult cancel = as_viewer({"jobs", "cancel", job_id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.err;
  RunResult get = as_viewer({"jobs", "get", job_id, "-o", "json"});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_THAT(get.out, HasSubstr("\"created_by\": \"deployer\""));
  EXPECT_THAT(get.out, HasSubstr("\"canceled_by\": \"deployer\""));
  RunResult table = as_viewer({"jobs", "get", job_id});
  EXPECT_THAT(table.out, HasSubstr("deployer"));
  EXPECT_THAT(table.out, HasSubstr("sleep 30"));
  EXPECT_THAT(fleet_->core()->Log(),
              HasSubstr(absl::StrCat("audit: deployer from ")));
  EXPECT_THAT(fleet_->core()->Log(),
              HasSubstr(absl::StrCat("canceled job ", job_id)));
}

TEST_F(SecurityTest, RemovedPeripheryCredentialCannotBeReplayed) {
  fleet_ = std::make_unique<TestFleet>(
      std::vector<std::string>{"--auth-failure-limit", "0"});
  fleet_->StartCore();
  Daemon* p1 = fleet_->StartPeriphery("p1");
  ASSERT_NE(p1, nullptr);
  const std::string id =
      Trimmed(ReadFile(fleet_->dir().File("periphery-p1/periphery_id")));
  const std::string credential =
      Trimmed(ReadFile(fleet_->dir().File("periphery-p1/credential")));
  // Stopped first: a running periphery would register again with its join
  // token.
  p1->Stop();
  ASSERT_TRUE(fleet_->client()->RemovePeriphery("p1").ok());

  // With everything p1 had: its credential, key and certificate.
  auto registry = varan::v1::Registry::NewStub(ChannelAs("p1"));
  grpc::ClientContext hb_ctx;
  Authorize(&hb_ctx, credential);
  varan::v1::HeartbeatRequest hb;
  hb.set_periphery_id(id);
  varan::v1::HeartbeatResponse hb_resp;
  EXPECT_EQ(registry->Heartbeat(&hb_ctx, hb, &hb_resp).error_code(), NOTFOUND);
  // Nor does the credential work as a join token.
  grpc::ClientContext reg_ctx;
  Authorize(&reg_ctx, credential);
  varan::v1::RegisterRequest reg;
  reg.set_name("p1");
  reg.set_advertise_address("[::1]:1");
  varan::v1::RegisterResponse reg_resp;
  EXPECT_EQ(registry->Register(&reg_ctx, reg, &reg_resp).error_code(), UNAUTH);
  auto list = fleet_->client()->ListPeripheries({});
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(SecurityTest, RepeatedFailedAuthenticationIsRateLimited) {
  fleet_ = std::make_unique<TestFleet>(
      std::vector<std::string>{"--auth-failure-limit", "5"});
  fleet_->StartCore();
  const std::string port = std::to_string(fleet_->core_port());
  auto call = [&](const std::string& address, const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    varan::v1::CoreInfo info;
    return varan::v1::Admin::NewStub(Channel(address))
        ->GetInfo(&ctx, {}, &info);
  };
  const std::string v6 = "[::1]:" + port;
  const std::string v4 = "127.0.0.1:" + port;
  // One failure comes back every 12 s: these 5 use the budget up even on a
  // slow machine (its refilling is tested with a fake clock in
  // allowlist_test.cc).
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(call(v6, GenerateSecret()).error_code(), UNAUTH) << i;
  }
  // Over budget: even the right token is refused, before it is checked.
  grpc::Status limited = call(v6, AdminToken());
  EXPECT_EQ(limited.error_code(), Code::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(), HasSubstr("too many failed"));
  // Another client (127.0.0.1, arriving as ::ffff:127.0.0.1) is not.
  EXPECT_TRUE(call(v4, AdminToken()).ok());
  EXPECT_THAT(fleet_->core()->Log(), HasSubstr("used up its budget"));
}

// Starts a core with `args` and returns it once it logged its listener's
// port (in `*port`).
std::unique_ptr<Daemon> StartCoreWith(const TempDir& dir,
                                      std::vector<std::string> args,
                                      const std::string& listen_prefix,
                                      std::string* port) {
  std::vector<std::string> argv = {BinPath("varan-core"), "--data-dir",
                                   dir.File("core")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto core = std::make_unique<Daemon>(argv, dir.File("core.log"));
  core->Start();
  const std::string marker = "listening on " + listen_prefix;
  EXPECT_TRUE(WaitFor([&] {
    const std::string log = core->Log();
    const size_t at = log.find(marker);
    if (at == std::string::npos) return !core->Running();
    const size_t end = log.find_first_not_of("0123456789", at + marker.size());
    if (end == std::string::npos) return false;
    *port = log.substr(at + marker.size(), end - at - marker.size());
    return true;
  })) << core->Log();
  return core;
}

// --allow on core: IPv4 rules match IPv4 clients whether they reach an IPv4
// listener or arrive IPv4-mapped on a [::] listener; IPv6 rules match IPv6
// clients; others are refused with PERMISSION_DENIED before their token is
// looked at. Health stays open.
TEST_F(SecurityTest, AllowlistOverIpv4Ipv6AndMappedClients) {
  auto info = [](const std::string& address, const std::string& token,
                 const ClientTlsFiles& tls) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    varan::v1::CoreInfo out;
    return varan::v1::Admin::NewStub(SecureChannel(address, tls))
        ->GetInfo(&ctx, {}, &out);
  };
  struct Case {
    std::string listen;  // listen address; its port is replaced
    std::string listen_prefix;
    std::vector<std::string> allow;
    // Client address host -> allowed?
    std::vector<std::pair<std::string, bool>> clients;
  } cases[] = {
      {"[::]:0",
       "[::]:",
       {"127.0.0.1/32"},
       {{"127.0.0.1", true}, {"[::1]", false}}},
      {"[::]:0", "[::]:", {"::1"}, {{"127.0.0.1", false}, {"[::1]", true}}},
      {"[::]:0",
       "[::]:",
       {"::ffff:127.0.0.0/104"},
       {{"127.0.0.1", true}, {"[::1]", false}}},
      {"[::]:0",
       "[::]:",
       {"10.0.0.0/8", "fd00::/8"},
       {{"127.0.0.1", false}, {"[::1]", false}}},
      {"127.0.0.1:0", "127.0.0.1:", {"127.0.0.0/8"}, {{"127.0.0.1", true}}},
      {"127.0.0.1:0", "127.0.0.1:", {"::1"}, {{"127.0.0.1", false}}},
  };
  for (const Case& c : cases) {
    TempDir dir;
    std::vector<std::string> args = {"--listen", c.listen};
    for (const auto& a : c.allow) {
      args.push_back("--allow");
      args.push_back(a);
    }
    std::string port;
    auto core = StartCoreWith(dir, args, c.listen_prefix, &port);
    ASSERT_FALSE(port.empty()) << core->Log();
    const std::string token = Trimmed(ReadFile(dir.File("core/admin.token")));
    for (const auto& [host, allowed] : c.clients) {
      const std::string address = absl::StrCat(host, ":", port);
      grpc::Status s = info(address, token, PinnedCore(dir.File("core")));
      EXPECT_EQ(s.error_code(), allowed ? OK : DENIED)
          << "client " << host << ", --allow " << c.allow[0] << ": "
          << s.error_message();
      if (!allowed) {
        EXPECT_THAT(s.error_message(), HasSubstr("are not allowed (--allow)"));
      }
      EXPECT_TRUE(Healthy(address, PinnedCore(dir.File("core")))) << address;
    }
    core->Stop();
  }
}

// --allow on a periphery: core's calls come from core's address; a
// periphery that does not allow it refuses them (registration, outbound,
// still works).
TEST_F(SecurityTest, PeripheryAllowlistRefusesCoreOutsideIt) {
  fleet_ = std::make_unique<TestFleet>();
  fleet_->StartCore();
  ASSERT_NE(fleet_->StartPeriphery("open", {}, {"--allow", "::1"}), nullptr);
  ASSERT_NE(fleet_->StartPeriphery("closed", {}, {"--allow", "192.0.2.0/24"}),
            nullptr);
  RunResult ok = fleet_->Ctl({"exec", "-n", "open", "--", "true"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  RunResult refused = fleet_->Ctl({"exec", "-n", "closed", "--", "true"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("not allowed (--allow)"));
}

TEST_F(SecurityTest, PreProvisionedTokenFilesWorkAndRotateOnSighup) {
  TempDir secrets;
  const std::string admin_file = secrets.File("admin");
  const std::string join_file = secrets.File("join");
  const std::string admin1 = GenerateSecret();
  ASSERT_TRUE(WriteSecretFile(admin_file, admin1).ok());
  ASSERT_TRUE(WriteSecretFile(join_file, GenerateSecret()).ok());
  fleet_ = std::make_unique<TestFleet>(std::vector<std::string>{
      "--admin-token-file", admin_file, "--join-token-file", join_file});
  fleet_->StartCore();
  auto info = [&](const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(&ctx, token);
    varan::v1::CoreInfo out;
    return varan::v1::Admin::NewStub(Channel(fleet_->core_address()))
        ->GetInfo(&ctx, {}, &out)
        .error_code();
  };
  EXPECT_EQ(info(admin1), OK);
  EXPECT_EQ(info(AdminToken()), OK);  // <data-dir>/admin.token still works

  // A periphery joins with the pre-provisioned join token; it carries no
  // CA pin, so the periphery is given core's.
  Daemon* p =
      fleet_->StartPeriphery("pj", {},
                             {"--join-token-file", join_file, "--core-ca-hash",
                              fleet_->client_tls().ca_pin});
  ASSERT_NE(p, nullptr);
  EXPECT_THAT(fleet_->core()->Log(), HasSubstr("with join token join-file"));

  const std::string admin2 = GenerateSecret();
  ASSERT_TRUE(WriteSecretFile(admin_file, admin2).ok());
  kill(fleet_->core()->pid(), SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return info(admin1) == UNAUTH; }));
  EXPECT_EQ(info(admin2), OK);
  auto tokens = fleet_->client()->ListTokens();
  ASSERT_TRUE(tokens.ok());
  std::vector<std::string> names;
  for (const auto& t : *tokens) names.push_back(t.name());
  EXPECT_THAT(names, ::testing::ElementsAre("admin", "admin-file"));
  // A file that cannot be read at start is an error naming it.
  TempDir other;
  RunResult bad = RunProgram({BinPath("varan-core"), "--listen", "[::1]:0",
                              "--data-dir", other.File("data"),
                              "--admin-token-file", other.File("missing")});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr(other.File("missing")));
}

TEST_F(SecurityTest, JoinTokenUsesRunOutAndThePeripheryKeepsItsCredential) {
  fleet_ = std::make_unique<TestFleet>(
      std::vector<std::string>{"--auth-failure-limit", "0"});
  fleet_->StartCore();
  RunResult created = fleet_->Ctl({"join-tokens", "create", "--name", "once",
                                   "--uses", "1", "--ttl", "1h"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string join_file = fleet_->dir().File("once.join");
  ASSERT_TRUE(WriteSecretFile(join_file, Trimmed(created.out)).ok());
  // A fixed port, so that the restarted periphery is where core dials.
  const std::string first_listen = absl::StrCat("[::1]:", FreePort());
  auto first_args = [&](bool with_join_token) {
    std::vector<std::string> argv = {BinPath("varan-periphery"),
                                     "--core",
                                     fleet_->core_address(),
                                     "--name",
                                     "first",
                                     "--listen",
                                     first_listen,
                                     "--state-dir",
                                     fleet_->dir().File("first")};
    if (with_join_token) {
      argv.push_back("--join-token-file");
      argv.push_back(join_file);
    }
    return argv;
  };
  auto first = std::make_unique<Daemon>(first_args(true),
                                        fleet_->dir().File("first.log"));
  first->Start();
  ASSERT_TRUE(WaitFor([&] {
    auto p = fleet_->client()->GetPeriphery("first");
    return p.ok() && p->state() == varan::v1::PERIPHERY_STATE_ONLINE;
  })) << first->Log();

  // The second periphery is refused: the token is used up.
  std::vector<std::string> argv = {BinPath("varan-periphery"),
                                   "--core",
                                   fleet_->core_address(),
                                   "--join-token-file",
                                   join_file,
                                   "--name",
                                   "second",
                                   "--listen",
                                   "[::1]:0",
                                   "--state-dir",
                                   fleet_->dir().File("periphery-second")};
  Daemon second(argv, fleet_->dir().File("second.log"));
  second.Start();
  EXPECT_TRUE(
      WaitFor([&] { return absl::StrContains(second.Log(), "is used up"); }));
  RunResult list = fleet_->Ctl({"join-tokens", "list"});
  EXPECT_THAT(list.out, HasSubstr("used up"));
  EXPECT_THAT(list.out, HasSubstr("1/1"));

  // The first restarts without any join token: its credential is enough.
  first->Stop();
  ASSERT_EQ(unlink(join_file.c_str()), 0);
  Daemon restarted(first_args(false), fleet_->dir().File("first-again.log"));
  restarted.Start();
  EXPECT_TRUE(WaitFor([&] {
    varan::v1::DispatchRequest req;
    req.mutable_target()->add_names("first");
    req.mutable_spec()->add_argv("true");
    auto job = fleet_->client()->Dispatch(req);
    if (!job.ok()) return false;
    bool done = WaitFor([&] {
      auto j = fleet_->client()->GetJob(job->job_id());
      return j.ok() && j->state() != varan::v1::JOB_STATE_RUNNING;
    });
    auto j = fleet_->client()->GetJob(job->job_id());
    return done && j.ok() && j->state() == varan::v1::JOB_STATE_SUCCEEDED;
  })) << restarted.Log();
  // Without a join token and without saved state, start-up says what is
  // missing.
  RunResult bare = RunProgram({BinPath("varan-periphery"), "--core",
                               fleet_->core_address(), "--listen", "[::1]:0",
                               "--state-dir", fleet_->dir().File("empty")});
  EXPECT_EQ(bare.exit_code, 1);
  EXPECT_THAT(bare.err, HasSubstr("--join-token-file is required"));
}

}  // namespace
}  // namespace varan::testing
