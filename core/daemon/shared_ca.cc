#include "core/daemon/shared_ca.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/secrets.h"

namespace varan::core {
namespace {

using varan::v1::CA_ROTATION_PHASE_STARTED;
using varan::v1::CA_ROTATION_PHASE_STEADY;
using varan::v1::CA_ROTATION_PHASE_SWITCHED;

constexpr char kHeader[] = "varan-cluster-ca ";
constexpr char kRetired[] = "retired ";

absl::Status Malformed(absl::string_view what) {
  return absl::DataLossError(absl::StrCat(
      "the cluster's CA in the database (setting cluster_ca) is malformed: ",
      what));
}

// The PEM blocks of `text`, each with its trailing newline.
std::vector<std::string> PemBlocks(absl::string_view text) {
  std::vector<std::string> out;
  while (true) {
    const size_t begin = text.find("-----BEGIN ");
    if (begin == absl::string_view::npos) break;
    const size_t end = text.find("-----END ", begin);
    if (end == absl::string_view::npos) break;
    size_t stop = text.find("-----", end + 9);
    if (stop == absl::string_view::npos) break;
    stop += 5;
    if (stop < text.size() && text[stop] == '\n') ++stop;
    out.emplace_back(text.substr(begin, stop - begin));
    text.remove_prefix(stop);
  }
  return out;
}

}  // namespace

std::string EncodeSharedCa(const SharedCa& ca) {
  if (ca.phase == CA_ROTATION_PHASE_STEADY && ca.retired.empty()) {
    return ca.current.cert_pem + ca.current.key_pem;
  }
  std::string out = kHeader;
  switch (ca.phase) {
    case CA_ROTATION_PHASE_STARTED:
      out += "started\n";
      break;
    case CA_ROTATION_PHASE_SWITCHED:
      out += "switched\n";
      break;
    case CA_ROTATION_PHASE_STEADY:
    case varan::v1::CA_ROTATION_PHASE_UNSPECIFIED:
    case varan::v1::CaRotationPhase_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::CaRotationPhase_INT_MAX_SENTINEL_DO_NOT_USE_:
      out += "steady\n";
      break;
  }
  for (const std::string& pin : ca.retired) {
    absl::StrAppend(&out, kRetired, pin, "\n");
  }
  out += ca.current.cert_pem + ca.current.key_pem;
  if (ca.phase != CA_ROTATION_PHASE_STEADY) {
    out += ca.other.cert_pem + ca.other.key_pem;
  }
  return out;
}

absl::StatusOr<SharedCa> DecodeSharedCa(const std::string& value) {
  SharedCa out;
  const size_t pem = value.find("-----BEGIN ");
  if (pem == std::string::npos) return Malformed("it holds no certificate");
  if (pem > 0) {
    bool phase_seen = false;
    for (absl::string_view line :
         absl::StrSplit(absl::string_view(value).substr(0, pem), '\n',
                        absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&line, kHeader)) {
        phase_seen = true;
        if (line == "steady") {
          out.phase = CA_ROTATION_PHASE_STEADY;
        } else if (line == "started") {
          out.phase = CA_ROTATION_PHASE_STARTED;
        } else if (line == "switched") {
          out.phase = CA_ROTATION_PHASE_SWITCHED;
        } else {
          return Malformed(absl::StrCat("unknown phase \"", line, "\""));
        }
      } else if (absl::ConsumePrefix(&line, kRetired)) {
        out.retired.emplace_back(line);
      } else {
        return Malformed(absl::StrCat("unknown line \"", line, "\""));
      }
    }
    if (!phase_seen) return Malformed("no phase");
  }
  std::vector<std::string> blocks =
      PemBlocks(absl::string_view(value).substr(pem));
  const size_t want = out.phase == CA_ROTATION_PHASE_STEADY ? 2 : 4;
  if (blocks.size() != want) {
    return Malformed(absl::StrCat(blocks.size(), " PEM blocks where ", want,
                                  " belong (certificate and key of each CA)"));
  }
  for (size_t i = 0; i < want; i += 2) {
    if (!absl::StartsWith(blocks[i], "-----BEGIN CERTIFICATE-----")) {
      return Malformed("a CA's certificate is missing");
    }
  }
  out.current = {std::move(blocks[0]), std::move(blocks[1])};
  if (want == 4) out.other = {std::move(blocks[2]), std::move(blocks[3])};
  return out;
}

absl::Status WriteCaFiles(const std::string& dir, const pki::Authority& ca) {
  if (absl::Status s = EnsurePrivateDir(dir); !s.ok()) return s;
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

absl::StatusOr<pki::Authority> ReadCaFiles(const std::string& dir) {
  // Loads and checks them; never creates one (both exist).
  auto stored = pki::LoadOrCreateAuthority(
      dir, pki::kClusterCaName, absl::Now(), pki::kClusterCaValidity);
  if (!stored.ok()) return stored.status();
  return stored->authority;
}

}  // namespace varan::core
