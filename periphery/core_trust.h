// How a periphery knows it talks to its real core (issue #20).
//
// In order: an operator's CA (--core-tls-ca, with --core-tls-cert/-key for
// mutual TLS) as before; --insecure-plaintext for a core that serves
// plaintext; otherwise core's cluster CA pinned by its pin, taken from
// --core-ca-hash, else from the join token ("<secret>.<pin>"), else from
// <state-dir>/core-ca.pin, where it is kept after the first start so the
// join token may be deleted once the periphery is registered, and where
// the pins core sends later are kept (CorePins: a rotation of core's CA). With
// none of these the periphery refuses to start: it never trusts the first core
// that answers.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls.h"
#include "periphery/core_pins.h"

namespace varan::periphery {

// What decides it (the flags' values and the join token file's pin).
struct CoreTrustInputs {
  const TlsFiles* core_tls = nullptr;  // staged --core-tls-* (null: none)
  std::string core_tls_server_name;
  std::string ca_hash;         // --core-ca-hash
  std::string join_token_pin;  // the join token's pin, "" when none
  bool insecure_plaintext = false;
  std::string state_dir;
};

// The security of the channels to core, and how it was chosen (for the
// start-up log). Saves a pin it was given to <state-dir>/core-ca.pin.
// INVALID_ARGUMENT naming the flags when nothing (or something
// contradictory) is given.
struct CoreTrust {
  ChannelSecurity security;
  std::string description;
  // The pins of core's cluster CA when that is how core is checked (null
  // with an operator's CA or plaintext): core then issues this periphery
  // its certificate, and calls it with its own.
  std::unique_ptr<CorePins> pins;
};
absl::StatusOr<CoreTrust> DecideCoreTrust(const CoreTrustInputs& in);

}  // namespace varan::periphery
