// A client that knows core's CA only by its pin (common/tls.h
// MakePinnedSecurity, pki::VerifyPinned) in real TLS handshakes: it accepts
// a core certificate from the pinned CA whatever host it dialed, and
// refuses another CA, a certificate from the pinned CA that is not core's,
// and a server without TLS. The probe records what an unpinned client
// shows its user.
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/pki.h"
#include "common/tls.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/unit/common/answer_all.h"

namespace varan {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

pki::Authority NewCa() {
  absl::StatusOr<pki::Authority> ca =
      pki::CreateAuthority("varan cluster CA", absl::Now(), absl::Hours(24));
  EXPECT_TRUE(ca.ok()) << ca.status();
  return ca.value_or(pki::Authority{});
}

// A server's key and chain (its certificate, then the CA's) issued by `ca`
// and carrying `dns` (valid around now: gRPC uses the wall clock).
struct Served {
  std::string key;
  std::string chain;
};
Served Issue(const pki::Authority& ca, const std::string& dns) {
  Served s;
  s.key = pki::NewPrivateKey().value_or("");
  pki::CertificateProfile p;
  p.common_name = "server";
  p.dns_names = {dns};
  p.server_auth = true;
  p.not_before = absl::Now() - absl::Minutes(5);
  p.not_after = absl::Now() + absl::Hours(1);
  absl::StatusOr<std::string> cert = pki::IssueCertificate(ca, s.key, p);
  EXPECT_TRUE(cert.ok()) << cert.status();
  s.chain = cert.value_or("") + ca.cert_pem;
  return s;
}

using ::varan::testing::AnswerAll;

class TlsPinTest : public ::testing::Test {
 protected:
  void SetUp() override { ca_ = NewCa(); }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  // Serves TLS with `served` (plaintext when null) on 127.0.0.1.
  void Serve(const Served* served) {
    std::shared_ptr<grpc::ServerCredentials> creds =
        grpc::InsecureServerCredentials();
    if (served != nullptr) {
      grpc::SslServerCredentialsOptions options;
      options.pem_key_cert_pairs.push_back({served->key, served->chain});
      creds = grpc::SslServerCredentials(options);
    }
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&service_);
    builder.AddListeningPort("127.0.0.1:0", creds, &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  // One call over a new channel with `security`; OK only when the client
  // accepted the server.
  grpc::Status Call(const ChannelSecurity& security) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    security.Apply(&args);
    auto channel = grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(port_), security.credentials, args);
    return varan::testing::CallAnswerAll(std::move(channel));
  }

  std::string Pin(const pki::Authority& ca) {
    return pki::AuthorityPin(ca.cert_pem).value_or("");
  }

  pki::Authority ca_;
  AnswerAll service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(TlsPinTest, PinnedClientAcceptsCoreOfThePinnedCaWhateverHostItDialed) {
  const Served core = Issue(ca_, pki::kCoreName);
  Serve(&core);
  // 127.0.0.1 is not in the certificate: the pinned CA's name for core is.
  const grpc::Status s = Call(MakePinnedSecurity(Pin(ca_)));
  EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
}

TEST_F(TlsPinTest, PinnedClientRefusesAnotherCa) {
  const Served core = Issue(NewCa(), pki::kCoreName);
  Serve(&core);
  const grpc::Status s = Call(MakePinnedSecurity(Pin(ca_)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsPinTest,
       PinnedClientRefusesACertificateOfThePinnedCaNotIssuedToCore) {
  // What a periphery holding a certificate from the same CA would present.
  const Served periphery = Issue(ca_, "periphery-1");
  Serve(&periphery);
  const grpc::Status s = Call(MakePinnedSecurity(Pin(ca_)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsPinTest, PinnedClientRefusesAPlaintextServer) {
  Serve(nullptr);
  const grpc::Status s = Call(MakePinnedSecurity(Pin(ca_)));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsPinTest, ProbeRecordsTheChainAndRefusesTheServer) {
  const Served core = Issue(ca_, pki::kCoreName);
  Serve(&core);
  auto probed = std::make_shared<ProbedChain>();
  const grpc::Status s = Call(MakeProbeSecurity(probed));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  absl::MutexLock lock(&probed->mu);
  absl::StatusOr<std::vector<std::string>> pins =
      pki::ChainAuthorityPins(probed->chain_pem);
  ASSERT_TRUE(pins.ok()) << pins.status();
  EXPECT_THAT(*pins, ElementsAre(Pin(ca_)));
}

TEST(VerifyPinnedTest, SaysWhichCheckFailed) {
  const pki::Authority ca = NewCa();
  const pki::Authority other = NewCa();
  const std::string pin = pki::AuthorityPin(ca.cert_pem).value_or("");
  const absl::Time now = absl::Now();
  EXPECT_TRUE(pki::VerifyPinned(Issue(ca, pki::kCoreName).chain, pin,
                                pki::kCoreName, now)
                  .ok());
  const std::string other_pin = pki::AuthorityPin(other.cert_pem).value_or("");
  absl::Status wrong_ca = pki::VerifyPinned(Issue(other, pki::kCoreName).chain,
                                            pin, pki::kCoreName, now);
  EXPECT_TRUE(absl::IsUnauthenticated(wrong_ca));
  EXPECT_THAT(std::string(wrong_ca.message()), HasSubstr(other_pin));
  absl::Status not_core = pki::VerifyPinned(Issue(ca, "periphery-1").chain, pin,
                                            pki::kCoreName, now);
  EXPECT_THAT(std::string(not_core.message()),
              HasSubstr("not to \"varan-core\""));
  absl::Status expired =
      pki::VerifyPinned(Issue(ca, pki::kCoreName).chain, pin, pki::kCoreName,
                        now + absl::Hours(2));
  EXPECT_THAT(std::string(expired.message()), HasSubstr("expired"));
  // Only the leaf, no CA: nothing to compare the pin with.
  const std::string chain = Issue(ca, pki::kCoreName).chain;
  const std::string leaf_only = chain.substr(0, chain.find(ca.cert_pem));
  EXPECT_THAT(
      std::string(
          pki::VerifyPinned(leaf_only, pin, pki::kCoreName, now).message()),
      HasSubstr("no CA certificate"));
}

TEST(ParsePinTest, AcceptsEitherCaseAndNamesTheFlagOtherwise) {
  const std::string hex(64, 'A');
  absl::StatusOr<std::string> pin = pki::ParsePin("SHA256:" + hex, "--ca-hash");
  ASSERT_TRUE(pin.ok()) << pin.status();
  EXPECT_EQ(*pin, "sha256:" + std::string(64, 'a'));
  for (const std::string& bad :
       {hex, "sha256:" + hex.substr(1), "sha256:" + hex + "0",
        "sha256:" + std::string(63, 'a') + "g", std::string()}) {
    absl::StatusOr<std::string> p = pki::ParsePin(bad, "--ca-hash");
    EXPECT_TRUE(absl::IsInvalidArgument(p.status())) << bad;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("--ca-hash"));
  }
}

}  // namespace
}  // namespace varan
