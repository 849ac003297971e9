#include "core/daemon/builtin_tls.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/secrets.h"
#include "core/daemon/shared_ca.h"

namespace varan::core {
namespace {

constexpr absl::Duration kServingValidity = absl::Hours(24 * 30);

bool IsIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool IsWildcard(const std::string& s) {
  return s.empty() || s == "::" || s == "0.0.0.0" || s == "[::]";
}

// Wildcards and duplicates out, the names every core certificate carries
// in.
std::vector<std::string> AllNames(const std::vector<std::string>& extra) {
  std::vector<std::string> names = {pki::kCoreName, "localhost", "127.0.0.1",
                                    "::1"};
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0 && host[0] != '\0') {
    names.emplace_back(host);
  }
  for (std::string n : extra) {
    if (n.size() > 2 && n.front() == '[' && n.back() == ']') {
      n = n.substr(1, n.size() - 2);
    }
    if (!IsWildcard(n)) names.push_back(std::move(n));
  }
  std::vector<std::string> out;
  for (std::string& n : names) {
    if (std::find(out.begin(), out.end(), n) == out.end()) {
      out.push_back(std::move(n));
    }
  }
  return out;
}

// The CA every replica of `cluster` shares now, given this one's.
pki::ShareAuthority ShareThrough(Cluster* cluster) {
  if (cluster == nullptr) return nullptr;
  return [cluster](
             const pki::Authority& mine) -> absl::StatusOr<pki::Authority> {
    SharedCa proposal;
    proposal.current = mine;
    auto agreed = cluster->Agree(kClusterCaSetting, EncodeSharedCa(proposal));
    if (!agreed.ok()) return agreed.status();
    auto shared = DecodeSharedCa(*agreed);
    if (!shared.ok()) return shared.status();
    return shared->current;
  };
}

// A replica that was away while the cluster's CA was rotated holds the
// old one in `dir`: it takes the current one instead (the cluster still
// trusts the old one, or retired it).
absl::Status TakeRotated(const std::string& dir, Cluster* cluster) {
  if (cluster == nullptr) return absl::OkStatus();
  std::error_code ec;
  if (!std::filesystem::exists(dir + "/ca.crt", ec) ||
      !std::filesystem::exists(dir + "/ca.key", ec)) {
    return absl::OkStatus();
  }
  auto value = cluster->Setting(kClusterCaSetting);
  if (absl::IsNotFound(value.status())) return absl::OkStatus();
  if (!value.ok()) return value.status();
  auto shared = DecodeSharedCa(*value);
  if (!shared.ok()) return shared.status();
  auto mine = ReadCaFiles(dir);
  if (!mine.ok()) return mine.status();
  const std::string pin = pki::AuthorityPin(mine->cert_pem).value_or("");
  const bool rotated =
      mine->cert_pem != shared->current.cert_pem &&
      (mine->cert_pem == shared->other.cert_pem ||
       std::find(shared->retired.begin(), shared->retired.end(), pin) !=
           shared->retired.end());
  if (!rotated) return absl::OkStatus();
  spdlog::warn(
      "the cluster CA was rotated while this replica was away: it takes the "
      "current one, {}, instead of {} ({}/ca.crt)",
      pki::AuthorityPin(shared->current.cert_pem).value_or("?"), pin, dir);
  return WriteCaFiles(dir, shared->current);
}

}  // namespace

BuiltinTls::BuiltinTls(pki::Authority ca, std::string dir,
                       std::vector<std::string> names)
    : names_(std::move(names)),
      ca_path_(dir + "/ca.crt"),
      cert_path_(dir + "/core.crt"),
      key_path_(dir + "/core.key"),
      ca_(std::move(ca)) {}

absl::StatusOr<std::unique_ptr<BuiltinTls>> BuiltinTls::Create(
    const std::string& data_dir, const std::vector<std::string>& names,
    absl::Time now, Cluster* cluster) {
  const std::string dir = data_dir + "/pki";
  if (absl::Status s = TakeRotated(dir, cluster); !s.ok()) return s;
  auto stored = pki::LoadOrCreateAuthority(dir, pki::kClusterCaName, now,
                                           pki::kClusterCaValidity,
                                           ShareThrough(cluster));
  if (!stored.ok()) return stored.status();
  auto pin = pki::AuthorityPin(stored->authority.cert_pem);
  if (!pin.ok()) return pin.status();
  auto tls = std::unique_ptr<BuiltinTls>(
      new BuiltinTls(stored->authority, dir, AllNames(names)));
  tls->created_ = stored->created;
  tls->adopted_ = stored->adopted;
  absl::MutexLock lock(&tls->mu_);
  tls->pin_ = *std::move(pin);
  if (absl::Status s = tls->Issue(now); !s.ok()) return s;
  return tls;
}

absl::Status BuiltinTls::Issue(absl::Time now) {
  pki::CertificateProfile profile;
  profile.common_name = pki::kCoreName;
  for (const std::string& n : names_) {
    (IsIpAddress(n) ? profile.ip_addresses : profile.dns_names).push_back(n);
  }
  profile.server_auth = true;
  // Core also presents it when it calls peripheries and other replicas.
  profile.client_auth = true;
  // For clients whose clocks lag a little.
  profile.not_before = now - absl::Minutes(5);
  profile.not_after = now + kServingValidity;
  auto key = pki::NewPrivateKey();
  if (!key.ok()) return key.status();
  auto cert = pki::IssueCertificate(ca_, *key, profile);
  if (!cert.ok()) {
    return absl::Status(cert.status().code(),
                        absl::StrCat("issuing core's serving certificate: ",
                                     cert.status().message()));
  }
  // The key first: a certificate never names a key that is not on disk.
  if (absl::Status s = WritePrivateFile(key_path_, *key); !s.ok()) return s;
  if (absl::Status s = WritePrivateFile(cert_path_, *cert + ca_.cert_pem);
      !s.ok()) {
    return s;
  }
  renew_at_ = now + kServingValidity * 2 / 3;
  return absl::OkStatus();
}

std::string BuiltinTls::pin() const {
  absl::MutexLock lock(&mu_);
  return pin_;
}

pki::Authority BuiltinTls::authority() const {
  absl::MutexLock lock(&mu_);
  return ca_;
}

absl::Status BuiltinTls::UseAuthority(pki::Authority ca, absl::Time now) {
  auto pin = pki::AuthorityPin(ca.cert_pem);
  if (!pin.ok()) return pin.status();
  absl::MutexLock lock(&mu_);
  pki::Authority before = std::exchange(ca_, std::move(ca));
  if (absl::Status s = Issue(now); !s.ok()) {
    ca_ = std::move(before);
    return s;
  }
  pin_ = *std::move(pin);
  return absl::OkStatus();
}

absl::StatusOr<bool> BuiltinTls::RenewIfDue(absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (now < renew_at_) return false;
  if (absl::Status s = Issue(now); !s.ok()) {
    // Try again in an hour; the current certificate has a third of its
    // life left.
    renew_at_ = now + absl::Hours(1);
    return s;
  }
  spdlog::info("issued core a new serving certificate ({})", cert_path_);
  return true;
}

}  // namespace varan::core
