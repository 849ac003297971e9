#include "core/daemon/core_tls.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/pki.h"
#include "core/daemon/ca_rotation.h"

namespace varan::core {
namespace {

absl::Status Prefixed(const std::string& context, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BuiltinTls>> StartBuiltinTls(
    const CoreConfig& config, const std::vector<HostPort>& listen,
    Cluster* cluster) {
  std::vector<std::string> names = config.tls_san;
  for (const HostPort& hp : listen) names.push_back(hp.host);
  if (cluster != nullptr) {
    // Where the other replicas reach this one.
    auto replica = ParseDialAddress(cluster->self().address, 0);
    if (replica.ok()) names.push_back(replica->host);
  }
  if (!config.ca_from.empty()) {
    auto seeded = pki::SeedAuthority(config.ca_from, config.data_dir + "/pki");
    if (!seeded.ok()) return Prefixed("--ca-from", seeded.status());
    if (*seeded) {
      spdlog::info("--ca-from: the cluster CA is the one in {}",
                   config.ca_from);
    } else {
      spdlog::info("--ca-from: {} holds no CA; core uses its own",
                   config.ca_from);
    }
  }
  if (cluster == nullptr) {
    if (absl::Status s = CaRotation::Recover(config.data_dir + "/pki");
        !s.ok()) {
      return Prefixed("the built-in cluster CA", s);
    }
  }
  // The wall clock, not `clock`: TLS stacks check certificates against it.
  auto tls = BuiltinTls::Create(config.data_dir, names, absl::Now(), cluster);
  if (!tls.ok()) return Prefixed("the built-in cluster CA", tls.status());
  const BuiltinTls& t = **tls;
  spdlog::info(
      "{} the cluster CA in {}; its pin is {} (join tokens carry it; "
      "operators give it to varanctl --ca-hash)",
      t.created()   ? "created"
      : t.adopted() ? "took the replicas' shared"
                    : "using",
      t.ca_path(), t.pin());
  return tls;
}

ClientCertificates ClientCertificatesAsked(const CoreConfig& config) {
  if (!config.tls.client_ca.empty()) {
    return ClientCertificates::kRequireVerified;
  }
  if (config.insecure_plaintext || config.tls.enabled()) {
    return ClientCertificates::kNone;
  }
  return ClientCertificates::kRequest;
}

}  // namespace varan::core
