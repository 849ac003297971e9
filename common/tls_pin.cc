// Channel credentials for a client that pins core's cluster CA, and the
// probe that shows an unpinned client what to pin (see tls.h).
#include <functional>
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

// Runs `check` on the chain the server presented, after gRPC's handshake,
// which was told not to check it itself (there are no root certificates to
// check it against).
class ChainVerifier final : public ExternalCertificateVerifier {
 public:
  using Check = std::function<absl::Status(const std::string& chain_pem)>;
  explicit ChainVerifier(Check check) : check_(std::move(check)) {}

  bool Verify(TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>,
              grpc::Status* sync_status) override {
    const std::string chain(request->peer_cert_full_chain().data(),
                            request->peer_cert_full_chain().size());
    absl::Status s =
        chain.empty()
            ? absl::UnauthenticatedError("the server sent no certificate")
            : check_(chain);
    // gRPC puts the message into the error of the failed connection.
    *sync_status = s.ok() ? grpc::Status::OK
                          : grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                         std::string(s.message()));
    return true;  // synchronous
  }
  void Cancel(TlsCustomVerificationCheckRequest*) override {}

 private:
  const Check check_;
};

// A server of a CA pinned by one of `pins`, named as core.
std::shared_ptr<grpc::experimental::CertificateVerifier> Pinned(
    std::vector<std::string> pins) {
  return ExternalCertificateVerifier::Create<ChainVerifier>(
      [pins = std::move(pins)](const std::string& chain) {
        return pki::VerifyPinned(chain, pins, pki::kCoreName, absl::Now(),
                                 pki::Usage::kServerAuth);
      });
}

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
  return Unverified(Pinned({pin}), FromFiles(identity));
}

ChannelSecurity MakeLivePinnedSecurity(
    std::function<std::vector<std::string>()> pins, const TlsFiles* identity) {
  return Unverified(ExternalCertificateVerifier::Create<ChainVerifier>(
                        [pins = std::move(pins)](const std::string& chain) {
                          return pki::VerifyPinned(chain, pins(),
                                                   pki::kCoreName, absl::Now(),
                                                   pki::Usage::kServerAuth);
                        }),
                    FromFiles(identity));
}

ChannelSecurity MakePinnedSecurity(const std::vector<std::string>& pins,
                                   const std::string& key_pem,
                                   const std::string& cert_pem) {
  return Unverified(Pinned(pins), FromPem(key_pem, cert_pem));
}

ChannelSecurity MakeIssuedPeerSecurity(const std::string& ca_pem,
                                       const std::string& name,
                                       const std::string& common_name,
                                       const TlsFiles* identity) {
  // Core's check of a periphery it dials: issued by the cluster CA to that
  // periphery.
  return Unverified(ExternalCertificateVerifier::Create<ChainVerifier>(
                        [ca_pem, name, common_name](const std::string& chain) {
                          return pki::VerifyIssued(
                              ca_pem, chain, name, common_name,
                              pki::Usage::kServerAuth, absl::Now());
                        }),
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
