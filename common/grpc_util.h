// Conversions between absl::Status (used inside Varan) and grpc::Status (used
// at service edges), and bearer-token extraction from call metadata.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"

namespace varan {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// The token of an `authorization: Bearer <token>` header, or "" when there is
// none.
absl::string_view BearerToken(const grpc::ServerContextBase& context);

// Metadata value for an authorization header carrying `token`.
std::string BearerHeader(absl::string_view token);

}  // namespace varan
