// Conversions between absl::Status (used inside Varan) and grpc::Status (used
// at service edges), and bearer-token extraction from call metadata.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace varan {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// The token of an `authorization: Bearer <token>` header, or "" when there is
// none.
absl::string_view BearerToken(const grpc::ServerContextBase& context);

// The certificate chain (PEM) the caller presented in its TLS handshake,
// its own certificate first; "" over plaintext or when it presented none.
// Whether it was verified depends on the server's credentials: Varan's
// servers that take certificates from the built-in CA verify them in the
// handler (core/fleet/periphery_ca.h, periphery/server/agent_service.h).
std::string PeerCertificateChain(const grpc::ServerContextBase& context);

// Metadata value for an authorization header carrying `token`.
std::string BearerHeader(absl::string_view token);

// Load shedding. Core answers a registration or tunnel hello it cannot take
// now with RESOURCE_EXHAUSTED and this trailing metadata: the milliseconds
// (decimal) the caller should wait at least before trying again. Inside
// Varan the hint travels as a payload of the absl::Status.
inline constexpr char kRetryAfterMetadata[] = "varan-retry-after-ms";

// RESOURCE_EXHAUSTED with `message` and a retry-after hint of `after`.
absl::Status RetryAfterError(absl::string_view message, absl::Duration after);
// The retry-after hint `status` carries, if any.
std::optional<absl::Duration> RetryAfter(const absl::Status& status);
// Server side: adds the trailing metadata for `status`'s hint, if it has
// one, to `context` (before the call finishes).
void AddRetryAfterTrailer(const absl::Status& status,
                          grpc::ServerContextBase* context);
// Client side, after the call ended: `status` with the hint the server sent
// in its trailing metadata, if any.
absl::Status WithRetryAfter(absl::Status status,
                            const grpc::ClientContext& context);

}  // namespace varan
