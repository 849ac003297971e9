#include "core/server/admission.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/log.h"

namespace varan::core {

HandshakeAdmission::HandshakeAdmission(const Clock* clock,
                                       AdmissionOptions options)
    : clock_(clock), options_(options) {
  absl::MutexLock lock(&mu_);
  tokens_ = std::max(1.0, options_.burst);
  refilled_ = clock_->Now();
}

void HandshakeAdmission::RefillLocked(absl::Time now) {
  if (now > refilled_) {
    tokens_ = std::min(
        std::max(1.0, options_.burst),
        tokens_ + options_.rate * absl::ToDoubleSeconds(now - refilled_));
    refilled_ = now;
  }
}

absl::Status HandshakeAdmission::Admit(absl::string_view what) {
  if (options_.rate <= 0) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  RefillLocked(now);
  // (A caller coming back exactly at its slot finds the token there despite
  // rounding.)
  if (tokens_ >= 1 - 1e-9) {
    tokens_ -= 1;
    return absl::OkStatus();
  }
  // The next free slot: when the bucket has a token again, or after the
  // slots already handed out, whichever is later.
  const absl::Duration per_token = absl::Seconds(1.0 / options_.rate);
  const absl::Time next_token =
      now + absl::Seconds((1.0 - tokens_) / options_.rate);
  const absl::Time slot = std::max(next_slot_, next_token);
  next_slot_ = slot + per_token;
  const absl::Duration hint = slot - now;
  ++shed_;
  ++unlogged_;
  last_hint_ = hint;
  MaybeLogLocked(now);
  return RetryAfterError(
      absl::StrCat("core is busy with other peripheries' handshakes (over ",
                   options_.rate, " a second); ", what, " refused for now, ",
                   "retry after ", absl::FormatDuration(hint)),
      hint);
}

uint64_t HandshakeAdmission::shed() const {
  absl::MutexLock lock(&mu_);
  return shed_;
}

void HandshakeAdmission::MaybeLog() {
  if (options_.rate <= 0) return;
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  MaybeLogLocked(now);
}

void HandshakeAdmission::MaybeLogLocked(absl::Time now) {
  if (unlogged_ == 0 || now - last_log_ < options_.log_interval) return;
  spdlog::warn(
      "shedding load: refused {} registration/tunnel handshake(s) {} "
      "(limit {}/s, burst {}); latest retry-after hint {}; {} in total",
      unlogged_,
      last_log_ == absl::InfinitePast()
          ? std::string("so far")
          : absl::StrCat("in the last ", absl::FormatDuration(now - last_log_)),
      options_.rate, options_.burst, absl::FormatDuration(last_hint_), shed_);
  unlogged_ = 0;
  last_log_ = now;
}

}  // namespace varan::core
