// PeripheryIdentity: the periphery's own key and certificate, kept in its
// state directory (issue #20).
//
// periphery.key (mode 0600) is made on the first start and never leaves the
// host; core signs a request for it at registration and the answer goes to
// periphery.crt (the certificate, then the cluster CA's). Until core issued
// one, periphery.crt holds a placeholder (self-signed by a throwaway CA,
// named "unregistered"), so the listener and the channels always have an
// identity to serve; core accepts nothing on it but a registration.
//
// The periphery presents the certificate to core (channels are made with
// key_pem()/cert_pem() of the moment, so a new certificate is used by the
// next connection) and serves its Agent port with it (files(): staged for
// gRPC, re-staged by Install).
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tls.h"
#include "periphery/uplink/certificate_keeper.h"

namespace varan::periphery {

class PeripheryIdentity final : public CertificateKeeper {
 public:
  // Loads <state_dir>/periphery.key and periphery.crt, making the key (and
  // the placeholder certificate) when missing, or the placeholder when the
  // certificate does not belong to the key. Errors name the file.
  static absl::StatusOr<std::unique_ptr<PeripheryIdentity>> Open(
      const std::string& state_dir);

  absl::StatusOr<std::string> Request() override;
  absl::Status Install(const std::string& chain_pem) override;
  bool RenewalDue(absl::Time now) const override;

  std::string key_pem() const;
  std::string cert_pem() const;
  // Staged for a gRPC server.
  const TlsFiles* files() const { return files_.get(); }

 private:
  PeripheryIdentity(std::string key_path, std::string cert_path,
                    std::string key_pem);
  // Takes `chain_pem` as the certificate held. Caller holds mu_.
  absl::Status Adopt(const std::string& chain_pem)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string key_path_, cert_path_, key_pem_;
  std::unique_ptr<TlsFiles> files_;
  mutable absl::Mutex mu_;
  std::string cert_pem_ ABSL_GUARDED_BY(mu_);
  bool issued_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time renew_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::string request_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::periphery
