#include "common/tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/openssl_ptr.h"
#include "common/pki.h"
#include "common/secrets.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "openssl/err.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace varan {
namespace {

// gRPC checks the staged files this often.
constexpr unsigned kGrpcRefreshSeconds = 1;

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    std::string msg =
        absl::StrCat(what, ": cannot read ", path, ": ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::InvalidArgumentError(msg);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "not valid PEM";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// The certificates in `pem` (at least one), or an error naming `path`.
absl::StatusOr<std::vector<X509Ptr>> ParseCerts(const std::string& pem,
                                                const std::string& path,
                                                const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<X509Ptr> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(x);
  }
  ERR_clear_error();  // the end of the input reads as an error
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", path,
                     " holds no PEM certificate (\"-----BEGIN "
                     "CERTIFICATE-----\")"));
  }
  return out;
}

absl::StatusOr<PkeyPtr> ParseKey(const std::string& pem,
                                 const std::string& path,
                                 const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", path, " holds no usable PEM private key (",
                     OpenSslError(), "; encrypted keys are not supported)"));
  }
  return PkeyPtr(key);
}

}  // namespace

absl::Status CheckCertificateFile(const std::string& path,
                                  const std::string& what) {
  auto pem = ReadFile(path, what);
  if (!pem.ok()) return pem.status();
  return ParseCerts(*pem, path, what).status();
}

absl::Status CheckKeyMatches(const std::string& key_path,
                             const std::string& cert_path,
                             const std::string& what) {
  auto key_pem = ReadFile(key_path, what);
  if (!key_pem.ok()) return key_pem.status();
  auto cert_pem = ReadFile(cert_path, what);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key = ParseKey(*key_pem, key_path, what);
  if (!key.ok()) return key.status();
  auto certs = ParseCerts(*cert_pem, cert_path, what);
  if (!certs.ok()) return certs.status();
  if (X509_check_private_key(certs->front().get(), key->get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the private key in ", key_path,
                     " does not belong to the certificate in ", cert_path));
  }
  return absl::OkStatus();
}

TlsFiles::TlsFiles(std::string cert, std::string key, std::string ca,
                   std::string staging_dir, std::string what)
    : cert_(std::move(cert)),
      key_(std::move(key)),
      ca_(std::move(ca)),
      dir_(std::move(staging_dir)),
      what_(std::move(what)) {
  if (!cert_.empty()) identity_path_ = dir_ + "/identity.pem";
  if (!ca_.empty() && ca_ != "system") ca_path_ = dir_ + "/ca.pem";
}

TlsFiles::~TlsFiles() {
  stop_.Notify();
  if (watcher_.joinable()) watcher_.join();
}

absl::StatusOr<std::unique_ptr<TlsFiles>> TlsFiles::Create(
    std::string cert, std::string key, std::string ca, std::string staging_dir,
    std::string what) {
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     ": a certificate needs its key and the key its "
                     "certificate (give both files)"));
  }
  if (absl::Status s = EnsurePrivateDir(staging_dir); !s.ok()) return s;
  std::unique_ptr<TlsFiles> files(
      new TlsFiles(std::move(cert), std::move(key), std::move(ca),
                   std::move(staging_dir), std::move(what)));
  if (!files->key_.empty()) {
    if (std::string w = LoosePermissionsWarning(files->key_); !w.empty()) {
      spdlog::warn("{}", w);
    }
  }
  if (absl::Status s = files->Reload(); !s.ok()) return s;
  return files;
}

absl::Status TlsFiles::ReadSources(std::string* identity,
                                   std::string* ca_pem) const {
  if (!cert_.empty()) {
    if (absl::Status s = CheckKeyMatches(key_, cert_, what_); !s.ok()) {
      return s;
    }
    auto key = ReadFile(key_, what_);
    if (!key.ok()) return key.status();
    auto cert = ReadFile(cert_, what_);
    if (!cert.ok()) return cert.status();
    // One file, so gRPC never sees a key without its certificate.
    *identity = absl::StrCat(*key, "\n", *cert);
  }
  if (!ca_path_.empty()) {
    auto ca = ReadFile(ca_, what_);
    if (!ca.ok()) return ca.status();
    if (absl::Status s = ParseCerts(*ca, ca_, what_).status(); !s.ok()) {
      return s;
    }
    *ca_pem = *std::move(ca);
  }
  return absl::OkStatus();
}

absl::Status TlsFiles::Reload() {
  std::string identity, ca;
  absl::Status read = ReadSources(&identity, &ca);
  absl::MutexLock lock(&mu_);
  const bool first = staged_identity_.empty() && staged_ca_.empty();
  if (!read.ok()) {
    if (!first) {
      spdlog::error("{}; still using the certificates loaded before",
                    read.message());
    }
    return read;
  }
  if (identity == staged_identity_ && ca == staged_ca_) {
    return absl::OkStatus();
  }
  if (!identity_path_.empty() && identity != staged_identity_) {
    if (absl::Status s = WritePrivateFile(identity_path_, identity); !s.ok()) {
      return s;
    }
    staged_identity_ = identity;
  }
  if (!ca_path_.empty() && ca != staged_ca_) {
    if (absl::Status s = WritePrivateFile(ca_path_, ca); !s.ok()) return s;
    staged_ca_ = ca;
  }
  if (!first) {
    spdlog::info("{}: new certificate files loaded; new connections use them",
                 what_);
  }
  return absl::OkStatus();
}

void TlsFiles::Watch(absl::Duration period) {
  watcher_ = std::thread([this, period] {
    while (!stop_.WaitForNotificationWithTimeout(period)) {
      (void)Reload();  // errors are logged
    }
  });
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFiles* files, ClientCertificates client_certificates) {
  if (files == nullptr) return grpc::InsecureServerCredentials();
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files->identity_path(), files->identity_path(), files->ca_path(),
          kGrpcRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  switch (client_certificates) {
    case ClientCertificates::kNone:
      options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
      break;
    case ClientCertificates::kRequireVerified:
      options.watch_root_certs();
      options.set_cert_request_type(
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      break;
    case ClientCertificates::kRequest:
      // The TLS handshake still proves the client holds the key of what it
      // presents; the chain is the handler's to check.
      options.set_cert_request_type(
          GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
      break;
    case ClientCertificates::kRequire:
      options.set_cert_request_type(
          GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
      break;
  }
  return grpc::experimental::TlsServerCredentials(options);
}

void ChannelSecurity::Apply(grpc::ChannelArguments* args) const {
  if (!server_name.empty()) args->SetSslTargetNameOverride(server_name);
}

ChannelSecurity MakeChannelSecurity(const TlsFiles* files,
                                    const std::string& server_name) {
  ChannelSecurity out;
  out.server_name = server_name;
  if (files == nullptr) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  out.tls = true;
  if (files->identity_path().empty() && files->ca_path().empty()) {
    // The system's roots, no client certificate.
    out.credentials = grpc::SslCredentials(grpc::SslCredentialsOptions());
    return out;
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files->identity_path(), files->identity_path(), files->ca_path(),
          kGrpcRefreshSeconds));
  if (!files->ca_path().empty()) options.watch_root_certs();
  if (!files->identity_path().empty()) options.watch_identity_key_cert_pairs();
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  out.credentials = grpc::experimental::TlsCredentials(options);
  return out;
}

namespace {

// The client certificate and key of `tls` (both empty when not given).
absl::Status ReadClientIdentity(const ClientTlsFiles& tls, std::string* key,
                                std::string* cert) {
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together (the client certificate and "
        "its key)");
  }
  if (tls.cert.empty()) return absl::OkStatus();
  if (absl::Status s = CheckKeyMatches(tls.key, tls.cert, "--tls-key");
      !s.ok()) {
    return s;
  }
  auto key_pem = ReadFile(tls.key, "--tls-key");
  if (!key_pem.ok()) return key_pem.status();
  auto cert_pem = ReadFile(tls.cert, "--tls-cert");
  if (!cert_pem.ok()) return cert_pem.status();
  *key = *std::move(key_pem);
  *cert = *std::move(cert_pem);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChannelSecurity> MakeClientSecurity(const ClientTlsFiles& tls) {
  ChannelSecurity out;
  out.server_name = tls.server_name;
  if (!tls.enabled()) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  std::string key, cert;
  if (absl::Status s = ReadClientIdentity(tls, &key, &cert); !s.ok()) return s;
  if (!tls.ca_pin.empty() || tls.skip_verify) {
    if (!tls.ca.empty() || (!tls.ca_pin.empty() && tls.skip_verify)) {
      return absl::InvalidArgumentError(
          "--tls-ca, --ca-hash and --insecure-skip-verify each say how to "
          "check core: give one");
    }
    if (tls.skip_verify) return MakeUnverifiedSecurity(key, cert);
    auto pins = pki::ParsePins(tls.ca_pin, "--ca-hash");
    if (!pins.ok()) return pins.status();
    return MakePinnedSecurity(*pins, key, cert);
  }
  out.tls = true;
  grpc::SslCredentialsOptions options;
  if (!tls.ca.empty() && tls.ca != "system") {
    auto ca = ReadFile(tls.ca, "--tls-ca");
    if (!ca.ok()) return ca.status();
    if (absl::Status s = ParseCerts(*ca, tls.ca, "--tls-ca").status();
        !s.ok()) {
      return s;
    }
    options.pem_root_certs = *std::move(ca);
  }
  options.pem_private_key = std::move(key);
  options.pem_cert_chain = std::move(cert);
  out.credentials = grpc::SslCredentials(options);
  return out;
}

}  // namespace varan
