// The pins of core's cluster CAs a periphery trusts (issue #20): usually
// one; two while core rotates its CA (the current one and the next, then
// the new one and the retired). Core sends the set with every heartbeat
// answer, over a connection the periphery verified with the set it held,
// so trust moves from one CA to the next without the periphery being told
// anything by hand.
//
// Kept in <state-dir>/core-ca.pin (one pin per line), and the pins core
// stopped sending in core-ca.retired, so that a join token or
// --core-ca-hash still naming a retired CA (a file left in place, a unit
// not updated) does not undo a rotation when the periphery restarts.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace varan::periphery {

class CorePins {
 public:
  // The pins kept in `state_dir` (none when it holds none), combined with
  // `given` (the pin of --core-ca-hash or the join token, "" for none): a
  // given pin that is kept, or that a rotation retired, leaves the kept set
  // as it is; another one replaces it (and is kept). Errors name the file.
  // `state_dir` "" keeps nothing (tests).
  static absl::StatusOr<std::unique_ptr<CorePins>> Open(
      const std::string& state_dir, const std::string& given);

  std::vector<std::string> Get() const;
  bool empty() const;

  // Replaces the set with `pins` (what core sent), keeping the pins it
  // drops as retired; true when the set changed. An empty set, or a pin
  // that does not parse, is refused (INVALID_ARGUMENT) and changes nothing.
  absl::StatusOr<bool> Replace(const std::vector<std::string>& pins);

 private:
  CorePins(std::string state_dir, std::vector<std::string> pins,
           std::vector<std::string> retired);
  absl::Status SaveLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const std::string state_dir_;
  mutable absl::Mutex mu_;
  std::vector<std::string> pins_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace varan::periphery
