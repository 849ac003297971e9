// Core's TLS when the operator gives it no certificate (the default): the
// cluster CA kept in <data-dir>/pki (common/pki.h LoadOrCreateAuthority)
// and a serving certificate it issues to this core.
//
// The serving certificate names kCoreName ("varan-core", what clients
// pinning the CA look for), localhost, the host name, the loopback
// addresses and the names the operator adds (--tls-san). It lives 30 days
// and is re-issued, with a new key, at every start and once two thirds of
// its life have passed; the listeners' TlsFiles pick the new files up on
// their next check (common/tls.h), so connections are never dropped.
//
// Files in <data-dir>/pki: ca.crt (0644) and ca.key (0600) — the cluster's
// most sensitive secret, never logged or sent (but kept in the database
// too when replicas share it, see kClusterCaSetting) — and core.crt (the
// serving certificate followed by the CA's, so clients holding only the pin see
// the CA) with core.key (both 0600).
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/pki.h"
#include "core/cluster/cluster.h"

namespace varan::core {

// The cluster setting (Cluster::Agree) holding the replicas' CA and where
// its rotation stands (core/daemon/shared_ca.h). The database then holds
// the CA's key: whoever can read it can issue certificates every replica
// trusts.
inline constexpr char kClusterCaSetting[] = "cluster_ca";

class BuiltinTls {
 public:
  // Loads or creates the CA and issues a serving certificate naming
  // `names` too (DNS names or IP addresses; wildcard addresses are left
  // out). With `cluster` (replicas on one database), the CA is the one the
  // replicas share, kept in the database (setting kClusterCaSetting):
  // the first replica's, taken by every other one (pki::ShareAuthority),
  // or the one a rotation switched to (a replica away meanwhile takes it
  // over the old one in its data directory).
  // Errors name the file or the name.
  static absl::StatusOr<std::unique_ptr<BuiltinTls>> Create(
      const std::string& data_dir, const std::vector<std::string>& names,
      absl::Time now, Cluster* cluster = nullptr);

  // The pin of the CA core serves and issues with (pki::AuthorityPin), what
  // join tokens carry.
  std::string pin() const;
  // Whether this start created the CA, or took the cluster's.
  bool created() const { return created_; }
  bool adopted() const { return adopted_; }
  const std::string& ca_path() const { return ca_path_; }
  // The CA itself, for issuing peripheries their certificates.
  pki::Authority authority() const;
  const std::string& cert_path() const { return cert_path_; }
  const std::string& key_path() const { return key_path_; }

  // Issues a new serving certificate when two thirds of the current one's
  // life have passed; true when it did. Cheap when it is not due.
  absl::StatusOr<bool> RenewIfDue(absl::Time now);

  // Serves with a certificate issued by `ca` from now on (a rotation of
  // the cluster CA switching to it: core/daemon/ca_rotation.h); the files
  // of <data-dir>/pki are the caller's.
  absl::Status UseAuthority(pki::Authority ca, absl::Time now);

 private:
  BuiltinTls(pki::Authority ca, std::string dir,
             std::vector<std::string> names);
  absl::Status Issue(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::vector<std::string> names_;
  const std::string ca_path_, cert_path_, key_path_;
  bool created_ = false;
  bool adopted_ = false;
  mutable absl::Mutex mu_;
  pki::Authority ca_ ABSL_GUARDED_BY(mu_);
  std::string pin_ ABSL_GUARDED_BY(mu_);
  absl::Time renew_at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::core
