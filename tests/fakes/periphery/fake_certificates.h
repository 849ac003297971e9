// FakeCertificates: an in-memory CertificateKeeper for the uplink's tests.
// Request() hands out "csr-1", "csr-2", ...; Install records what core
// issued (a chain that is "bad" is refused, as one not for the key would
// be); RenewalDue is true from `due_at` on, once something was installed
// or set_issued() said so.
//
// Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "periphery/uplink/certificate_keeper.h"

namespace varan::periphery {

class FakeCertificates final : public CertificateKeeper {
 public:
  absl::StatusOr<std::string> Request() override {
    absl::MutexLock lock(&mu_);
    return "csr-" + std::to_string(++requests_);
  }
  absl::Status Install(const std::string& chain_pem) override {
    absl::MutexLock lock(&mu_);
    if (chain_pem == "bad") {
      return absl::InvalidArgumentError("not for this periphery's key");
    }
    installed_.push_back(chain_pem);
    issued_ = true;
    due_at_ = absl::InfiniteFuture();
    return absl::OkStatus();
  }
  bool RenewalDue(absl::Time now) const override {
    absl::MutexLock lock(&mu_);
    return issued_ && now >= due_at_;
  }

  // A certificate is held (from an earlier run), due at `due_at`.
  void set_issued(absl::Time due_at) {
    absl::MutexLock lock(&mu_);
    issued_ = true;
    due_at_ = due_at;
  }
  std::vector<std::string> installed() const {
    absl::MutexLock lock(&mu_);
    return installed_;
  }

 private:
  mutable absl::Mutex mu_;
  int requests_ ABSL_GUARDED_BY(mu_) = 0;
  bool issued_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time due_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::vector<std::string> installed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::periphery
