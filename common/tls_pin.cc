// Channel credentials for a client that pins core's cluster CA, and the
// probe that shows an unpinned client what to pin (see tls.h).
#include <memory>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "common/pki.h"
#include "common/tls.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace varan {
namespace {

using grpc::experimental::ExternalCertificateVerifier;
using grpc::experimental::TlsCustomVerificationCheckRequest;

// Runs after gRPC's handshake, which was told not to check the server's
// chain itself (there are no root certificates to check it against).
class PinnedVerifier final : public ExternalCertificateVerifier {
 public:
  explicit PinnedVerifier(std::string pin) : pin_(std::move(pin)) {}

  bool Verify(TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    const std::string chain(request->peer_cert_full_chain().data(),
                            request->peer_cert_full_chain().size());
    absl::Status s =
        chain.empty()
            ? absl::UnauthenticatedError("the server sent no certificate")
            : pki::VerifyPinned(chain, pin_, pki::kCoreName, absl::Now());
    // gRPC puts the message into the error of the failed connection.
    *sync_status = s.ok() ? grpc::Status::OK
                          : grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                         std::string(s.message()));
    return true;  // synchronous
  }
  void Cancel(TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::string pin_;
};

// Core's check of a periphery it dials: issued by the cluster CA to that
// periphery.
class IssuedVerifier final : public ExternalCertificateVerifier {
 public:
  IssuedVerifier(std::string ca_pem, std::string name, std::string common_name)
      : ca_pem_(std::move(ca_pem)),
        name_(std::move(name)),
        common_name_(std::move(common_name)) {}

  bool Verify(TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    const std::string chain(request->peer_cert_full_chain().data(),
                            request->peer_cert_full_chain().size());
    absl::Status s =
        chain.empty()
            ? absl::UnauthenticatedError("the server sent no certificate")
            : pki::VerifyIssued(ca_pem_, chain, name_, common_name_,
                                pki::Usage::kServerAuth, absl::Now());
    *sync_status = s.ok() ? grpc::Status::OK
                          : grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                         std::string(s.message()));
    return true;
  }
  void Cancel(TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::string ca_pem_, name_, common_name_;
};

class ProbeVerifier final : public ExternalCertificateVerifier {
 public:
  explicit ProbeVerifier(std::shared_ptr<ProbedChain> out)
      : out_(std::move(out)) {}

  bool Verify(TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    {
      absl::MutexLock lock(&out_->mu);
      out_->chain_pem.assign(request->peer_cert_full_chain().data(),
                             request->peer_cert_full_chain().size());
    }
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                "probe only: the server is not trusted yet");
    return true;
  }
  void Cancel(TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<ProbedChain> out_;
};

using Provider =
    std::shared_ptr<grpc::experimental::CertificateProviderInterface>;

Provider FromFiles(const TlsFiles* identity) {
  if (identity == nullptr || identity->identity_path().empty()) return nullptr;
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      identity->identity_path(), identity->identity_path(), 1);
}

Provider FromPem(const std::string& key_pem, const std::string& cert_pem) {
  if (key_pem.empty() && cert_pem.empty()) return nullptr;
  return std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      std::vector<grpc::experimental::IdentityKeyCertPair>{
          {key_pem, cert_pem}});
}

// Accepts every server: --insecure-skip-verify.
class AcceptAll final : public ExternalCertificateVerifier {
  bool Verify(TlsCustomVerificationCheckRequest*,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    *sync_status = grpc::Status::OK;
    return true;
  }
  void Cancel(TlsCustomVerificationCheckRequest*) override {}
};

ChannelSecurity Unverified(
    std::shared_ptr<grpc::experimental::CertificateVerifier> verifier,
    Provider identity) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (identity != nullptr) {
    options.set_certificate_provider(std::move(identity));
    options.watch_identity_key_cert_pairs();
  }
  // The verifier checks the chain (against the pin) and the name instead.
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(std::move(verifier));
  ChannelSecurity out;
  out.tls = true;
  out.credentials = grpc::experimental::TlsCredentials(options);
  return out;
}

}  // namespace

ChannelSecurity MakePinnedSecurity(const std::string& pin,
                                   const TlsFiles* identity) {
  return Unverified(ExternalCertificateVerifier::Create<PinnedVerifier>(pin),
                    FromFiles(identity));
}

ChannelSecurity MakePinnedSecurity(const std::string& pin,
                                   const std::string& key_pem,
                                   const std::string& cert_pem) {
  return Unverified(ExternalCertificateVerifier::Create<PinnedVerifier>(pin),
                    FromPem(key_pem, cert_pem));
}

ChannelSecurity MakeIssuedPeerSecurity(const std::string& ca_pem,
                                       const std::string& name,
                                       const std::string& common_name,
                                       const TlsFiles* identity) {
  return Unverified(ExternalCertificateVerifier::Create<IssuedVerifier>(
                        ca_pem, name, common_name),
                    FromFiles(identity));
}

ChannelSecurity MakeUnverifiedSecurity(const std::string& key_pem,
                                       const std::string& cert_pem) {
  return Unverified(ExternalCertificateVerifier::Create<AcceptAll>(),
                    FromPem(key_pem, cert_pem));
}

ChannelSecurity MakeProbeSecurity(std::shared_ptr<ProbedChain> out) {
  return Unverified(
      ExternalCertificateVerifier::Create<ProbeVerifier>(std::move(out)),
      nullptr);
}

}  // namespace varan
