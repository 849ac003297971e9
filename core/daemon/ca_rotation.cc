#include "core/daemon/ca_rotation.h"

#include <sys/stat.h>

#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/secrets.h"

namespace varan::core {
namespace {

using varan::v1::CA_ROTATION_PHASE_STARTED;
using varan::v1::CA_ROTATION_PHASE_STEADY;
using varan::v1::CA_ROTATION_PHASE_SWITCHED;
using varan::v1::CaRotationPhase;
using varan::v1::CaRotationStep;

// Names of peripheries a refused SWITCH, or the state, lists at most.
constexpr size_t kMaxNames = 100;

const char* PhaseName(CaRotationPhase phase) {
  switch (phase) {
    case CA_ROTATION_PHASE_STEADY:
      return "steady (one CA)";
    case CA_ROTATION_PHASE_STARTED:
      return "started (a new CA trusted beside the current one)";
    case CA_ROTATION_PHASE_SWITCHED:
      return "switched (core serves the new CA; the old one still trusted)";
    case varan::v1::CA_ROTATION_PHASE_UNSPECIFIED:
    case varan::v1::CaRotationPhase_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationPhase_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return "unknown";
}

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

absl::Status RemoveAll(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot remove ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

// The name of a CA a rotation makes at `now`.
std::string NewCaName(absl::Time now) {
  return absl::StrCat(
      pki::kClusterCaName, " ",
      absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone()));
}

}  // namespace

absl::Status CaRotation::Recover(const std::string& pki_dir) {
  const std::string next = pki_dir + "/next";
  const std::string previous = pki_dir + "/previous";
  // A copy of the old CA that was never completed: the switch had not
  // started.
  if (absl::Status s = RemoveAll(pki_dir + "/previous.tmp"); !s.ok()) {
    return s;
  }
  if (!Exists(next + "/ca.crt") || !Exists(previous + "/ca.crt")) {
    return absl::OkStatus();
  }
  // The old CA was kept: the new one replaces it in ca.crt and ca.key.
  auto ca = ReadCaFiles(next);
  if (!ca.ok()) return ca.status();
  if (absl::Status s = WriteCaFiles(pki_dir, *ca); !s.ok()) return s;
  spdlog::warn(
      "completed the switch to the new cluster CA that was "
      "interrupted ({}/ca.crt)",
      pki_dir);
  return RemoveAll(next);
}

CaRotation::CaRotation(std::string pki_dir, Parts parts)
    : dir_(std::move(pki_dir)), parts_(std::move(parts)) {}

absl::StatusOr<std::unique_ptr<CaRotation>> CaRotation::Open(
    const std::string& pki_dir, Parts parts) {
  std::unique_ptr<CaRotation> r(new CaRotation(pki_dir, std::move(parts)));
  absl::MutexLock lock(&r->mu_);
  if (r->parts_.cluster != nullptr) {
    // The cluster's rotation, not this replica's files.
    auto followed = r->FollowLocked(absl::Now());
    if (!followed.ok()) return followed.status();
  } else {
    for (const auto& [sub, phase] :
         {std::pair{"/next", CA_ROTATION_PHASE_STARTED},
          std::pair{"/previous", CA_ROTATION_PHASE_SWITCHED}}) {
      const std::string dir = pki_dir + sub;
      if (!Exists(dir)) continue;
      auto ca = ReadCaFiles(dir);
      if (!ca.ok()) return ca.status();
      r->phase_ = phase;
      r->other_ = *std::move(ca);
    }
  }
  if (r->phase_ != CA_ROTATION_PHASE_STEADY) {
    spdlog::info(
        "the rotation of the cluster CA is {}; the other CA's pin is {}",
        PhaseName(r->phase_), r->StateLocked().other_pin());
  }
  r->TrustLocked();
  return r;
}

absl::Status CaRotation::Follow(absl::Time now) {
  if (parts_.cluster == nullptr) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return FollowLocked(now).status();
}

absl::StatusOr<bool> CaRotation::FollowLocked(absl::Time now) {
  auto value = parts_.cluster->Setting(kClusterCaSetting);
  if (!value.ok()) return value.status();
  if (*value == shared_value_) return false;
  auto shared = DecodeSharedCa(*value);
  if (!shared.ok()) return shared.status();
  if (absl::Status s = ApplyLocked(*shared, now); !s.ok()) return s;
  const bool first = shared_value_.empty();
  shared_value_ = *std::move(value);
  // Open tells the peripheries' CA itself, and nothing was served before.
  if (!first) {
    spdlog::info(
        "the rotation of the cluster CA is now {} (a step another replica "
        "took); core serves {}",
        PhaseName(phase_), parts_.tls->pin());
    TrustLocked();
    if (parts_.changed) parts_.changed();
  }
  return true;
}

absl::Status CaRotation::ApplyLocked(const SharedCa& shared, absl::Time now) {
  if (shared.current.cert_pem != parts_.tls->authority().cert_pem) {
    if (absl::Status s = WriteCaFiles(dir_, shared.current); !s.ok()) {
      return s;
    }
    if (absl::Status s = parts_.tls->UseAuthority(shared.current, now);
        !s.ok()) {
      return s;
    }
  }
  phase_ = shared.phase;
  other_ = shared.other;
  retired_ = shared.retired;
  return absl::OkStatus();
}

void CaRotation::TrustLocked() {
  parts_.peripheries->Trust(
      parts_.tls->authority(),
      phase_ == CA_ROTATION_PHASE_STEADY ? "" : other_.cert_pem);
}

varan::v1::ClusterCa CaRotation::State() const {
  absl::MutexLock lock(&mu_);
  return StateLocked();
}

varan::v1::ClusterCa CaRotation::StateLocked() const {
  varan::v1::ClusterCa out;
  out.set_pin(parts_.tls->pin());
  out.set_phase(phase_);
  if (phase_ != CA_ROTATION_PHASE_STEADY) {
    out.set_other_pin(pki::AuthorityPin(other_.cert_pem).value_or(""));
  }
  for (std::string& pin : parts_.peripheries->pins()) {
    out.add_trusted_pins(std::move(pin));
  }
  if (phase_ == CA_ROTATION_PHASE_STARTED && parts_.fleet != nullptr) {
    const std::vector<std::string> pending =
        parts_.fleet->NotTrusting(parts_.peripheries->pins());
    out.set_pending(static_cast<uint32_t>(pending.size()));
    for (size_t i = 0; i < pending.size() && i < kMaxNames; ++i) {
      out.add_pending_names(parts_.fleet->NameOf(pending[i]));
    }
  }
  return out;
}

absl::StatusOr<varan::v1::ClusterCa> CaRotation::Step(CaRotationStep step,
                                                      bool force,
                                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  // Replicas: from where the cluster stands now.
  if (parts_.cluster != nullptr) {
    if (absl::Status s = FollowLocked(now).status(); !s.ok()) return s;
  }
  if (absl::Status s = CheckStepLocked(step, force); !s.ok()) return s;
  if (absl::Status s = parts_.cluster != nullptr ? StepSharedLocked(step, now)
                                                 : StepFilesLocked(step, now);
      !s.ok()) {
    return s;
  }
  const std::string other_pin =
      pki::AuthorityPin(other_.cert_pem).value_or("?");
  switch (step) {
    case varan::v1::CA_ROTATION_STEP_START:
      spdlog::info(
          "started a rotation of the cluster CA: new CA {} trusted beside {}",
          other_pin, parts_.tls->pin());
      break;
    case varan::v1::CA_ROTATION_STEP_SWITCH:
      spdlog::info(
          "switched to the new cluster CA {}: core serves and issues with "
          "it; {} is still trusted until the rotation finishes",
          parts_.tls->pin(), other_pin);
      break;
    case varan::v1::CA_ROTATION_STEP_FINISH:
    case varan::v1::CA_ROTATION_STEP_ABORT:
      spdlog::info(
          "{} the rotation of the cluster CA: only {} is trusted",
          step == varan::v1::CA_ROTATION_STEP_FINISH ? "finished" : "aborted",
          parts_.tls->pin());
      break;
    case varan::v1::CA_ROTATION_STEP_UNSPECIFIED:
    case varan::v1::CaRotationStep_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationStep_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  TrustLocked();
  if (parts_.changed) parts_.changed();
  return StateLocked();
}

absl::Status CaRotation::CheckStepLocked(CaRotationStep step,
                                         bool force) const {
  const auto wrong_phase = [&](const char* step_name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot ", step_name, ": the rotation is ", PhaseName(phase_)));
  };
  switch (step) {
    case varan::v1::CA_ROTATION_STEP_START:
      if (phase_ != CA_ROTATION_PHASE_STEADY) return wrong_phase("start");
      return absl::OkStatus();
    case varan::v1::CA_ROTATION_STEP_SWITCH: {
      if (phase_ != CA_ROTATION_PHASE_STARTED) return wrong_phase("switch");
      const varan::v1::ClusterCa state = StateLocked();
      if (state.pending() > 0 && !force) {
        return absl::FailedPreconditionError(absl::StrCat(
            state.pending(),
            " peripheries have not said they trust the new CA yet (",
            absl::StrJoin(state.pending_names(), ", "),
            state.pending() > static_cast<uint32_t>(state.pending_names_size())
                ? ", ..."
                : "",
            "): switching would cut them off. They learn its pin with their "
            "next heartbeat once online; or force it and give them the new "
            "pin by hand"));
      }
      return absl::OkStatus();
    }
    case varan::v1::CA_ROTATION_STEP_FINISH:
      if (phase_ != CA_ROTATION_PHASE_SWITCHED) return wrong_phase("finish");
      return absl::OkStatus();
    case varan::v1::CA_ROTATION_STEP_ABORT:
      if (phase_ != CA_ROTATION_PHASE_STARTED) return wrong_phase("abort");
      return absl::OkStatus();
    case varan::v1::CA_ROTATION_STEP_UNSPECIFIED:
    case varan::v1::CaRotationStep_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationStep_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return absl::InvalidArgumentError(
      "step: give start, switch, finish or abort");
}

absl::Status CaRotation::StepFilesLocked(CaRotationStep step, absl::Time now) {
  switch (step) {
    case varan::v1::CA_ROTATION_STEP_START: {
      auto next = pki::LoadOrCreateAuthority(dir_ + "/next", NewCaName(now),
                                             now, pki::kClusterCaValidity);
      if (!next.ok()) return next.status();
      phase_ = CA_ROTATION_PHASE_STARTED;
      other_ = next->authority;
      return absl::OkStatus();
    }
    case varan::v1::CA_ROTATION_STEP_SWITCH:
      return SwitchLocked(now);
    case varan::v1::CA_ROTATION_STEP_FINISH:
    case varan::v1::CA_ROTATION_STEP_ABORT: {
      const bool finish = step == varan::v1::CA_ROTATION_STEP_FINISH;
      if (absl::Status s = RemoveAll(dir_ + (finish ? "/previous" : "/next"));
          !s.ok()) {
        return s;
      }
      phase_ = CA_ROTATION_PHASE_STEADY;
      other_ = pki::Authority();
      return absl::OkStatus();
    }
    case varan::v1::CA_ROTATION_STEP_UNSPECIFIED:
    case varan::v1::CaRotationStep_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationStep_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return absl::InvalidArgumentError("step: none");
}

absl::Status CaRotation::StepSharedLocked(CaRotationStep step, absl::Time now) {
  SharedCa next;
  next.current = parts_.tls->authority();
  next.retired = retired_;
  switch (step) {
    case varan::v1::CA_ROTATION_STEP_START: {
      auto made =
          pki::CreateAuthority(NewCaName(now), now, pki::kClusterCaValidity);
      if (!made.ok()) return made.status();
      next.phase = CA_ROTATION_PHASE_STARTED;
      next.other = *std::move(made);
      break;
    }
    case varan::v1::CA_ROTATION_STEP_SWITCH:
      next.phase = CA_ROTATION_PHASE_SWITCHED;
      next.other = std::exchange(next.current, other_);
      break;
    case varan::v1::CA_ROTATION_STEP_FINISH:
      next.retired.push_back(pki::AuthorityPin(other_.cert_pem).value_or(""));
      if (next.retired.size() > SharedCa::kMaxRetired) {
        next.retired.erase(next.retired.begin());
      }
      break;
    case varan::v1::CA_ROTATION_STEP_ABORT:
      break;
    case varan::v1::CA_ROTATION_STEP_UNSPECIFIED:
    case varan::v1::CaRotationStep_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationStep_INT_MAX_SENTINEL_DO_NOT_USE_:
      return absl::InvalidArgumentError("step: none");
  }
  std::string value = EncodeSharedCa(next);
  if (absl::Status s =
          parts_.cluster->Replace(kClusterCaSetting, shared_value_, value);
      !s.ok()) {
    if (s.code() != absl::StatusCode::kAborted) return s;
    return absl::AbortedError(
        "another replica took a step of the rotation of the cluster CA at "
        "the same time; see where it stands (varanctl ca status) and try "
        "again");
  }
  if (absl::Status s = ApplyLocked(next, now); !s.ok()) return s;
  shared_value_ = std::move(value);
  return absl::OkStatus();
}

absl::Status CaRotation::SwitchLocked(absl::Time now) {
  const pki::Authority old = parts_.tls->authority();
  // 1. The old CA into previous/, whole or not at all.
  const std::string tmp = dir_ + "/previous.tmp";
  if (absl::Status s = RemoveAll(tmp); !s.ok()) return s;
  if (absl::Status s = EnsurePrivateDir(tmp); !s.ok()) return s;
  if (absl::Status s = WriteCaFiles(tmp, old); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::rename(tmp, dir_ + "/previous", ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, ": ", ec.message()));
  }
  // 2. The new one as ca.crt and ca.key (Recover completes it after a
  // crash from here on), 3. next/ gone.
  if (absl::Status s = WriteCaFiles(dir_, other_); !s.ok()) return s;
  if (absl::Status s = RemoveAll(dir_ + "/next"); !s.ok()) return s;
  if (absl::Status s = parts_.tls->UseAuthority(other_, now); !s.ok()) {
    return s;
  }
  phase_ = CA_ROTATION_PHASE_SWITCHED;
  other_ = pki::Authority{old.cert_pem, ""};
  return absl::OkStatus();
}

}  // namespace varan::core
