#include "periphery/core_trust.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/pki.h"
#include "common/secrets.h"

namespace varan::periphery {
namespace {

constexpr char kPinFile[] = "core-ca.pin";

}  // namespace

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
  const std::string pin_path = absl::StrCat(in.state_dir, "/", kPinFile);
  if (pin.empty()) {
    auto saved = ReadSecretFile(pin_path);
    if (!saved.ok() && !absl::IsNotFound(saved.status())) {
      return saved.status();
    }
    if (saved.ok()) {
      auto parsed = pki::ParsePin(*saved, pin_path);
      if (!parsed.ok()) return parsed.status();
      pin = *std::move(parsed);
    }
  } else if (absl::Status s = WriteSecretFile(pin_path, pin); !s.ok()) {
    return s;
  }
  if (pin.empty()) {
    return absl::InvalidArgumentError(
        "no way to verify core: give the join token core wrote "
        "(<data-dir>/join.token, or `varanctl join-tokens create`), which "
        "carries its CA pin, or --core-ca-hash sha256:..., or --core-tls-ca "
        "for an operator's CA; --insecure-plaintext for a core serving "
        "plaintext");
  }
  out.security = MakePinnedSecurity(pin);
  out.pin = pin;
  out.description = absl::StrCat("TLS, core's cluster CA pinned to ", pin);
  return out;
}

}  // namespace varan::periphery
