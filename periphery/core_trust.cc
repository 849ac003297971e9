#include "periphery/core_trust.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/pki.h"

namespace varan::periphery {

absl::StatusOr<CoreTrust> DecideCoreTrust(const CoreTrustInputs& in) {
  CoreTrust out;
  if (in.core_tls != nullptr) {
    out.security = MakeChannelSecurity(in.core_tls, in.core_tls_server_name);
    out.description = "TLS, core's certificate checked against --core-tls-ca";
    return out;
  }
  std::string pin;
  if (!in.ca_hash.empty()) {
    auto parsed = pki::ParsePin(in.ca_hash, "--core-ca-hash");
    if (!parsed.ok()) return parsed.status();
    pin = *std::move(parsed);
  }
  if (!in.join_token_pin.empty()) {
    auto parsed = pki::ParsePin(in.join_token_pin, "the join token's CA pin");
    if (!parsed.ok()) return parsed.status();
    if (!pin.empty() && pin != *parsed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--core-ca-hash ", pin, " and the join token's CA pin ", *parsed,
          " differ: give the join token core issued, or drop --core-ca-hash"));
    }
    pin = *std::move(parsed);
  }
  if (in.insecure_plaintext) {
    if (!pin.empty()) {
      return absl::InvalidArgumentError(
          "--insecure-plaintext contradicts the CA pin given (--core-ca-hash "
          "or the join token's): core serves TLS with its cluster CA");
    }
    out.security = MakeChannelSecurity(nullptr, "");
    out.description = "plaintext (--insecure-plaintext)";
    return out;
  }
  auto pins = CorePins::Open(in.state_dir, pin);
  if (!pins.ok()) return pins.status();
  if ((*pins)->empty()) {
    return absl::InvalidArgumentError(
        "no way to verify core: give the join token core wrote "
        "(<data-dir>/join.token, or `varanctl join-tokens create`), which "
        "carries its CA pin, or --core-ca-hash sha256:..., or --core-tls-ca "
        "for an operator's CA; --insecure-plaintext for a core serving "
        "plaintext");
  }
  const std::vector<std::string> trusted = (*pins)->Get();
  if (!pin.empty() && trusted != std::vector<std::string>{pin}) {
    spdlog::info(
        "core's CA pin {} (given) is one core has moved on from or is "
        "moving to; trusting the pins core gave: {}",
        pin, absl::StrJoin(trusted, ", "));
  }
  out.security = MakePinnedSecurity(trusted, "", "");
  out.pins = *std::move(pins);
  out.description = absl::StrCat("TLS, core's cluster CA pinned to ",
                                 absl::StrJoin(trusted, ", "));
  return out;
}

}  // namespace varan::periphery
