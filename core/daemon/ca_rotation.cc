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

// Writes `ca` as <dir>/ca.key (0600) then <dir>/ca.crt (0644), each
// atomically.
absl::Status WriteCa(const std::string& dir, const pki::Authority& ca) {
  const std::string crt = dir + "/ca.crt";
  if (absl::Status s = WritePrivateFile(dir + "/ca.key", ca.key_pem); !s.ok()) {
    return s;
  }
  if (absl::Status s = WritePrivateFile(crt, ca.cert_pem); !s.ok()) return s;
  if (chmod(crt.c_str(), 0644) != 0) {
    return absl::InternalError(absl::StrCat("cannot chmod ", crt));
  }
  return absl::OkStatus();
}

absl::StatusOr<pki::Authority> ReadCa(const std::string& dir) {
  // Loads and checks them; never creates one (both exist).
  auto stored = pki::LoadOrCreateAuthority(
      dir, pki::kClusterCaName, absl::Now(), pki::kClusterCaValidity);
  if (!stored.ok()) return stored.status();
  return stored->authority;
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
  auto ca = ReadCa(next);
  if (!ca.ok()) return ca.status();
  if (absl::Status s = WriteCa(pki_dir, *ca); !s.ok()) return s;
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
  for (const auto& [sub, phase] :
       {std::pair{"/next", CA_ROTATION_PHASE_STARTED},
        std::pair{"/previous", CA_ROTATION_PHASE_SWITCHED}}) {
    const std::string dir = pki_dir + sub;
    if (!Exists(dir)) continue;
    auto ca = ReadCa(dir);
    if (!ca.ok()) return ca.status();
    r->phase_ = phase;
    r->other_ = *std::move(ca);
    spdlog::info(
        "the rotation of the cluster CA is {}; the other CA's pin "
        "is {}",
        PhaseName(phase), r->StateLocked().other_pin());
  }
  r->TrustLocked();
  return r;
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
    std::vector<std::string> ids;
    auto all = parts_.fleet->List(varan::v1::Target());
    if (all.ok()) {
      for (const varan::v1::Periphery& p : *all) ids.push_back(p.id());
    }
    const std::vector<std::string> pending =
        parts_.peripheries->NotTrusting(ids);
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
  if (parts_.replicas) {
    return absl::FailedPreconditionError(
        "the replicas share their cluster CA through the database, and "
        "rotating it is not supported for replicas yet");
  }
  absl::MutexLock lock(&mu_);
  const auto wrong_phase = [&](const char* step_name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot ", step_name, ": the rotation is ", PhaseName(phase_)));
  };
  switch (step) {
    case varan::v1::CA_ROTATION_STEP_START: {
      if (phase_ != CA_ROTATION_PHASE_STEADY) return wrong_phase("start");
      auto next = pki::LoadOrCreateAuthority(
          dir_ + "/next",
          absl::StrCat(
              pki::kClusterCaName, " ",
              absl::FormatTime("%Y%m%dT%H%M%SZ", now, absl::UTCTimeZone())),
          now, pki::kClusterCaValidity);
      if (!next.ok()) return next.status();
      phase_ = CA_ROTATION_PHASE_STARTED;
      other_ = next->authority;
      spdlog::info(
          "started a rotation of the cluster CA: new CA {} trusted "
          "beside {}",
          pki::AuthorityPin(other_.cert_pem).value_or("?"), parts_.tls->pin());
      break;
    }
    case varan::v1::CA_ROTATION_STEP_SWITCH: {
      if (phase_ != CA_ROTATION_PHASE_STARTED) return wrong_phase("switch");
      varan::v1::ClusterCa state = StateLocked();
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
      if (absl::Status s = SwitchLocked(now); !s.ok()) return s;
      break;
    }
    case varan::v1::CA_ROTATION_STEP_FINISH:
    case varan::v1::CA_ROTATION_STEP_ABORT: {
      const bool finish = step == varan::v1::CA_ROTATION_STEP_FINISH;
      if (phase_ !=
          (finish ? CA_ROTATION_PHASE_SWITCHED : CA_ROTATION_PHASE_STARTED)) {
        return wrong_phase(finish ? "finish" : "abort");
      }
      if (absl::Status s = RemoveAll(dir_ + (finish ? "/previous" : "/next"));
          !s.ok()) {
        return s;
      }
      spdlog::info("{} the rotation of the cluster CA: only {} is trusted",
                   finish ? "finished" : "aborted", parts_.tls->pin());
      phase_ = CA_ROTATION_PHASE_STEADY;
      other_ = pki::Authority();
      break;
    }
    case varan::v1::CA_ROTATION_STEP_UNSPECIFIED:
    case varan::v1::CaRotationStep_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationStep_INT_MAX_SENTINEL_DO_NOT_USE_:
      return absl::InvalidArgumentError(
          "step: give start, switch, finish or abort");
  }
  TrustLocked();
  if (parts_.changed) parts_.changed();
  return StateLocked();
}

absl::Status CaRotation::SwitchLocked(absl::Time now) {
  const pki::Authority old = parts_.tls->authority();
  // 1. The old CA into previous/, whole or not at all.
  const std::string tmp = dir_ + "/previous.tmp";
  if (absl::Status s = RemoveAll(tmp); !s.ok()) return s;
  if (absl::Status s = EnsurePrivateDir(tmp); !s.ok()) return s;
  if (absl::Status s = WriteCa(tmp, old); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::rename(tmp, dir_ + "/previous", ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, ": ", ec.message()));
  }
  // 2. The new one as ca.crt and ca.key (Recover completes it after a
  // crash from here on), 3. next/ gone.
  if (absl::Status s = WriteCa(dir_, other_); !s.ok()) return s;
  if (absl::Status s = RemoveAll(dir_ + "/next"); !s.ok()) return s;
  if (absl::Status s = parts_.tls->UseAuthority(other_, now); !s.ok()) {
    return s;
  }
  spdlog::info(
      "switched to the new cluster CA {}: core serves and issues "
      "with it; {} is still trusted until the rotation finishes",
      parts_.tls->pin(), pki::AuthorityPin(old.cert_pem).value_or("?"));
  phase_ = CA_ROTATION_PHASE_SWITCHED;
  other_ = pki::Authority{old.cert_pem, ""};
  return absl::OkStatus();
}

}  // namespace varan::core
