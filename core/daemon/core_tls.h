// How core's listeners are secured when the operator gives no certificate
// (the built-in cluster CA) and which client certificates they ask for:
// the TLS part of assembling core (core_server.cc).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/address.h"
#include "common/tls.h"
#include "core/cluster/cluster.h"
#include "core/daemon/builtin_tls.h"
#include "core/daemon/core_server.h"

namespace varan::core {

// The cluster CA and core's certificate, naming --tls-san's names, the
// listeners' specific hosts (`listen`) and, with `cluster`, the address the
// other replicas reach this one at; takes --ca-from's CA first, and
// completes a rotation a crash interrupted (one core). Logs the CA's pin.
// Errors name what failed.
absl::StatusOr<std::unique_ptr<BuiltinTls>> StartBuiltinTls(
    const CoreConfig& config, const std::vector<HostPort>& listen,
    Cluster* cluster);

// Peripheries of the built-in CA present their certificates (checked by
// Enrollment); operators may present none. An operator's --tls-client-ca
// makes every client present one that chains to it.
ClientCertificates ClientCertificatesAsked(const CoreConfig& config);

}  // namespace varan::core
