// A real mutual-TLS handshake with certificates from common/pki.h: gRPC
// (BoringSSL/OpenSSL underneath) accepts what the library issues, and
// refuses a client certificate from another CA and a server whose CA is
// not the one the client pinned.
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/pki.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "tests/unit/common/answer_all.h"

namespace varan::pki {
namespace {

struct Identity {
  std::string key;
  std::string cert;
};

// gRPC checks validity against the wall clock, so these certificates are
// valid around now.
Identity Issue(const Authority& ca, const std::string& cn, bool server) {
  Identity id;
  absl::StatusOr<std::string> key = NewPrivateKey();
  EXPECT_TRUE(key.ok()) << key.status();
  id.key = key.value_or("");
  CertificateProfile p;
  p.common_name = cn;
  p.server_auth = server;
  p.client_auth = !server;
  if (server) {
    p.dns_names = {"localhost"};
    p.ip_addresses = {"127.0.0.1"};
  }
  p.not_before = absl::Now() - absl::Minutes(5);
  p.not_after = absl::Now() + absl::Hours(1);
  absl::StatusOr<std::string> cert = IssueCertificate(ca, id.key, p);
  EXPECT_TRUE(cert.ok()) << cert.status();
  id.cert = cert.value_or("");
  return id;
}

using ::varan::testing::AnswerAll;

Authority Ca() {
  absl::StatusOr<Authority> ca =
      CreateAuthority("varan cluster CA", absl::Now(), absl::Hours(24));
  EXPECT_TRUE(ca.ok()) << ca.status();
  return ca.value_or(Authority{});
}

class PkiTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = Ca();
    other_ca_ = Ca();
    const Identity server = Issue(ca_, "core", /*server=*/true);
    grpc::SslServerCredentialsOptions options(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    options.pem_root_certs = ca_.cert_pem;
    options.pem_key_cert_pairs.push_back({server.key, server.cert});
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&service_);
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(options),
                             &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  // A call over a new TLS channel that trusts `root_pem` and
  // presents `client`. OK only when both sides accepted the handshake.
  grpc::Status Probe(const std::string& root_pem, const Identity& client) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = root_pem;
    options.pem_private_key = client.key;
    options.pem_cert_chain = client.cert;
    grpc::ChannelArguments args;
    // Its own connection: never one another probe's credentials made.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel =
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_),
                                  grpc::SslCredentials(options), args);
    return varan::testing::CallAnswerAll(std::move(channel));
  }

  Authority ca_, other_ca_;
  AnswerAll service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(PkiTlsTest, ClientWithCertificateFromTheCaConnects) {
  const grpc::Status s =
      Probe(ca_.cert_pem, Issue(ca_, "periphery-1", /*server=*/false));
  EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
}

TEST_F(PkiTlsTest, ClientTrustingBothCasDuringRotationConnects) {
  const grpc::Status s = Probe(other_ca_.cert_pem + ca_.cert_pem,
                               Issue(ca_, "periphery-1", /*server=*/false));
  EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
}

TEST_F(PkiTlsTest, ServerRefusesClientCertificateFromAnotherCa) {
  const grpc::Status s =
      Probe(ca_.cert_pem, Issue(other_ca_, "intruder", /*server=*/false));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(PkiTlsTest, ClientPinningAnotherCaRefusesTheServer) {
  // The client's certificate is good; the server's CA is not the one the
  // client trusts, so the client hangs up.
  const grpc::Status s =
      Probe(other_ca_.cert_pem, Issue(ca_, "periphery-1", /*server=*/false));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

}  // namespace
}  // namespace varan::pki
