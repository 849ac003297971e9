// HandshakeAdmission: how many registration and resume handshakes core
// takes on per second, so that a fleet reconnecting at once (after a core
// restart) is spread out instead of overwhelming core.
//
// A handshake is a Registry.Register call or the hello of a Registry.Connect
// tunnel (a registration or a resume); heartbeats of registered peripheries
// never pass through here, so they are never starved. Admission is a token
// bucket: `rate` handshakes per second with bursts of up to `burst`. Over
// the limit a handshake is shed: RESOURCE_EXHAUSTED with a retry-after hint
// (common/grpc_util.h, RetryAfter). Hints are handed out as consecutive
// slots one token apart, from when the bucket has its next token onwards,
// so the n-th caller shed in a row waits about n / rate: the hint grows
// with the backlog and the callers that honour it come back spread over
// time at the rate core admits.
//
// Shedding is logged at most once per `log_interval` (the count since the
// last line), never per call.
//
// Thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace varan::core {

struct AdmissionOptions {
  // Handshakes admitted per second on average; 0: no limit.
  double rate = 2000;
  // How many may come at once (the bucket's size; it starts full).
  double burst = 10000;
  // Shedding is logged at most this often.
  absl::Duration log_interval = absl::Seconds(10);
};

class HandshakeAdmission {
 public:
  // `clock` must outlive the object.
  HandshakeAdmission(const Clock* clock, AdmissionOptions options);

  // OK when the handshake may go ahead (it used up one token);
  // RESOURCE_EXHAUSTED with a retry-after hint when it is shed. `what`
  // names the handshake in the message ("registration", "tunnel").
  absl::Status Admit(absl::string_view what);

  // Handshakes shed since start.
  uint64_t shed() const;

  // Logs the handshakes shed since the last line if any were and the log
  // interval has passed (Admit does this too; core's ticker calls it so the
  // last ones are logged when shedding stops).
  void MaybeLog();

  const AdmissionOptions& options() const { return options_; }

 private:
  void RefillLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeLogLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const AdmissionOptions options_;
  mutable absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_);
  absl::Time refilled_ ABSL_GUARDED_BY(mu_);
  // The slot after the last one handed out as a hint.
  absl::Time next_slot_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t shed_ ABSL_GUARDED_BY(mu_) = 0;
  // Since the last log line.
  uint64_t unlogged_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration last_hint_ ABSL_GUARDED_BY(mu_);
  absl::Time last_log_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace varan::core
