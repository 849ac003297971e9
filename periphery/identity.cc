#include "periphery/identity.h"

#include <stdio.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/secrets.h"

namespace varan::periphery {
namespace {

constexpr char kKeyFile[] = "periphery.key";
constexpr char kCertFile[] = "periphery.crt";

// A PEM file as written (ReadSecretFile trims the last newline).
absl::StatusOr<std::string> ReadPem(const std::string& path) {
  auto text = ReadSecretFile(path);
  if (!text.ok()) return text.status();
  return *text + "\n";
}

// A certificate for `key_pem` that nobody trusts, so that there is always
// one to present and serve before core issued the real one.
absl::StatusOr<std::string> Placeholder(const std::string& key_pem) {
  const absl::Time now = absl::Now();
  auto throwaway =
      pki::CreateAuthority("varan-periphery placeholder", now, absl::Hours(1));
  if (!throwaway.ok()) return throwaway.status();
  pki::CertificateProfile profile;
  profile.common_name = "unregistered";
  profile.client_auth = true;
  profile.server_auth = true;
  profile.not_before = now - absl::Minutes(5);
  profile.not_after = now + absl::Minutes(59);
  return pki::IssueCertificate(*throwaway, key_pem, profile);
}

}  // namespace

PeripheryIdentity::PeripheryIdentity(std::string key_path,
                                     std::string cert_path, std::string key_pem)
    : key_path_(std::move(key_path)),
      cert_path_(std::move(cert_path)),
      key_pem_(std::move(key_pem)) {}

absl::StatusOr<std::unique_ptr<PeripheryIdentity>> PeripheryIdentity::Open(
    const std::string& state_dir) {
  const std::string key_path = absl::StrCat(state_dir, "/", kKeyFile);
  const std::string cert_path = absl::StrCat(state_dir, "/", kCertFile);
  auto key = ReadPem(key_path);
  if (absl::IsNotFound(key.status())) {
    key = pki::NewPrivateKey();
    if (!key.ok()) return key.status();
    if (absl::Status s = WritePrivateFile(key_path, *key); !s.ok()) return s;
    spdlog::info("made this periphery's key ({})", key_path);
  }
  if (!key.ok()) return key.status();
  std::unique_ptr<PeripheryIdentity> id(
      new PeripheryIdentity(key_path, cert_path, *key));
  auto cert = ReadPem(cert_path);
  if (cert.ok() && !CheckKeyMatches(key_path, cert_path, cert_path).ok()) {
    spdlog::warn(
        "{} is not for {}; replacing it with a placeholder until "
        "core issues one",
        cert_path, key_path);
    cert = absl::NotFoundError("");
  }
  if (!cert.ok()) {
    if (!absl::IsNotFound(cert.status())) return cert.status();
    cert = Placeholder(*key);
    if (!cert.ok()) return cert.status();
    if (absl::Status s = WritePrivateFile(cert_path, *cert); !s.ok()) return s;
  }
  {
    absl::MutexLock lock(&id->mu_);
    if (absl::Status s = id->Adopt(*cert); !s.ok()) return s;
  }
  auto files = TlsFiles::Create(cert_path, key_path, "",
                                absl::StrCat(state_dir, "/tls/identity"),
                                "the periphery's certificate");
  if (!files.ok()) return files.status();
  id->files_ = *std::move(files);
  return id;
}

absl::Status PeripheryIdentity::Adopt(const std::string& chain_pem) {
  auto info = pki::Inspect(chain_pem);
  if (!info.ok()) return info.status();
  cert_pem_ = chain_pem;
  issued_ = std::find(info->dns_names.begin(), info->dns_names.end(),
                      pki::kPeripheryName) != info->dns_names.end();
  // Two thirds of what is left from now (core backdates not_before for
  // clocks that lag, so its own dates would make it due at once): a
  // certificate taken at issue renews after two thirds of its life, one
  // loaded at a restart well before it ends.
  const absl::Time from = std::max(info->not_before, absl::Now());
  renew_at_ = issued_ ? from + (info->not_after - from) * 2 / 3
                      : absl::InfiniteFuture();
  return absl::OkStatus();
}

absl::StatusOr<std::string> PeripheryIdentity::Request() {
  absl::MutexLock lock(&mu_);
  if (request_.empty()) {
    auto csr = pki::CreateRequest(key_pem_, "varan-periphery");
    if (!csr.ok()) return csr.status();
    request_ = *std::move(csr);
  }
  return request_;
}

absl::Status PeripheryIdentity::Install(const std::string& chain_pem) {
  const std::string next = cert_path_ + ".new";
  if (absl::Status s = WritePrivateFile(next, chain_pem); !s.ok()) return s;
  if (absl::Status s = CheckKeyMatches(key_path_, next,
                                       "the certificate "
                                       "core issued");
      !s.ok()) {
    ::remove(next.c_str());
    return absl::InvalidArgumentError(s.message());
  }
  {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Adopt(chain_pem); !s.ok()) {
      ::remove(next.c_str());
      return s;
    }
    if (::rename(next.c_str(), cert_path_.c_str()) != 0) {
      return absl::InternalError(
          absl::StrCat("cannot replace ", cert_path_, ": rename failed"));
    }
  }
  // The listener serves it from its next handshake.
  return files_->Reload();
}

bool PeripheryIdentity::RenewalDue(absl::Time now) const {
  absl::MutexLock lock(&mu_);
  return issued_ && now >= renew_at_;
}

std::string PeripheryIdentity::key_pem() const { return key_pem_; }

std::string PeripheryIdentity::cert_pem() const {
  absl::MutexLock lock(&mu_);
  return cert_pem_;
}

}  // namespace varan::periphery
