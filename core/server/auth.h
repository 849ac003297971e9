// Authentication of core's callers by bearer token.
//
// Operators present the admin token (roles and named tokens come later);
// peripheries register with the join token. Comparison is constant-time;
// tokens are never logged. Immutable after construction, so thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace varan::core {

struct Caller {
  // Name recorded as a job's creator.
  std::string name;
};

class Authenticator {
 public:
  Authenticator(std::string admin_token, std::string join_token);

  // Reads <dir>/admin.token and <dir>/join.token, creating either with a
  // fresh random token (mode 0600) if missing, and logs their paths (never
  // their content). Errors name the file.
  static absl::StatusOr<Authenticator> FromDataDir(const std::string& dir);

  // OK and `*caller` filled for a valid operator token; UNAUTHENTICATED
  // otherwise (the failure is logged with the peer address).
  grpc::Status AuthenticateOperator(const grpc::CallbackServerContext& context,
                                    Caller* caller) const;
  // OK for a valid join token; UNAUTHENTICATED otherwise.
  grpc::Status AuthenticateJoin(
      const grpc::CallbackServerContext& context) const;

 private:
  const std::string admin_token_;
  const std::string join_token_;
};

}  // namespace varan::core
