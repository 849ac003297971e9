// Authentication and authorisation of core's callers: the edge check every
// call that needs a token goes through.
//
// Order of checks, for every kind of caller:
//  1. the caller's address against --allow (PERMISSION_DENIED), and against
//     its budget of failed authentications (RESOURCE_EXHAUSTED) — PeerGuard;
//  2. its bearer token (`authorization: Bearer ...`): an operator token, a
//     join token or a periphery's credential (UNAUTHENTICATED when missing,
//     unknown, expired, revoked or used up; counted as a failure);
//  3. for operators, the role the call needs (PERMISSION_DENIED naming it).
// Tokens are never logged; refusals are, with the caller's address.
//
// Thread-safe; the registries and the guard must outlive it. The tunnel
// (Registry.Connect) and any other service authenticate through the same
// functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/peer_guard.h"
#include "core/fleet/registry.h"
#include "core/server/tokens.h"
#include "grpcpp/grpcpp.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

struct Caller {
  // The operator token's name: recorded as a job's creator or canceler.
  std::string name;
  varan::v1::Role role = varan::v1::ROLE_UNSPECIFIED;
  // The caller's address as NormalizePeerAddress gives it.
  std::string peer;
};

// Where core's bootstrap tokens come from.
struct BootstrapTokenFiles {
  // <data-dir>: admin.token and join.token are read from it, created with
  // fresh random tokens (mode 0600) when missing.
  std::string data_dir;
  // --admin-token-file / --join-token-file: pre-provisioned tokens (e.g. a
  // Kubernetes Secret), accepted in addition; empty when not given. They
  // must exist.
  std::string admin_token_file;
  std::string join_token_file;
};

// Reads the bootstrap tokens and installs them in `tokens` (replacing the
// previous ones: call again on SIGHUP). Logs each file's path (never its
// content) and warns about files readable by group or others. Errors name
// the file; on error `tokens` is unchanged.
absl::Status LoadBootstrapTokens(const BootstrapTokenFiles& files,
                                 TokenRegistry* tokens);

class Authenticator {
 public:
  // `fleet` may be null (then no periphery credential is valid).
  Authenticator(TokenRegistry* tokens, const FleetRegistry* fleet,
                PeerGuard* guard);

  // OK and `*caller` filled for a valid operator token with at least the
  // role `needed`. Errors as in the header comment.
  grpc::Status AuthenticateOperator(const grpc::ServerContextBase& context,
                                    varan::v1::Role needed,
                                    Caller* caller) const;

  // OK for a valid join token, one of whose uses is then taken: its id is
  // put in `*join_token_id`; give it back with ReleaseJoin when the
  // registration fails after all.
  grpc::Status AuthenticateJoin(const grpc::ServerContextBase& context,
                                std::string* join_token_id) const;
  void ReleaseJoin(const std::string& join_token_id) const;
  // The name of a join token (for logs).
  std::string JoinTokenName(const std::string& join_token_id) const;

  // OK when the call carries the credential core issued to periphery
  // `periphery_id`. NOT_FOUND for an unknown or removed periphery,
  // UNAUTHENTICATED for a wrong credential: a periphery cannot act as
  // another.
  grpc::Status AuthenticatePeriphery(const grpc::ServerContextBase& context,
                                     const std::string& periphery_id) const;

  // Step 1 alone, for calls that check their token elsewhere (Heartbeat
  // checks the credential together with its update): OK, PERMISSION_DENIED
  // or RESOURCE_EXHAUSTED.
  grpc::Status Admit(const grpc::ServerContextBase& context) const;
  // Counts a failed authentication by the caller of `context`.
  void RecordFailure(const grpc::ServerContextBase& context) const;

 private:
  TokenRegistry* const tokens_;
  const FleetRegistry* const fleet_;
  PeerGuard* const guard_;
};

}  // namespace varan::core
