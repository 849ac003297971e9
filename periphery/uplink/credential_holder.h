// CredentialHolder: the credential core issued to this periphery at
// registration, shared between the uplink (which obtains it, and sends it
// with heartbeats) and the Agent service (which checks that core's calls
// carry it).
//
// The uplink owns filling it; the holder itself is owned by whoever
// assembles the periphery (PeripheryAgent) and must outlive both. Empty
// until the periphery registered or resumed a saved registration.
//
// Thread-safe.
#pragma once

#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace varan::periphery {

class CredentialHolder {
 public:
  void Set(std::string credential) {
    absl::MutexLock lock(&mu_);
    credential_ = std::move(credential);
  }
  std::string Get() const {
    absl::MutexLock lock(&mu_);
    return credential_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string credential_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::periphery
