// Authentication and authorisation of core's operators (the Fleet, Jobs and
// Admin services), and core's bootstrap token files.
//
// Order of checks:
//  1. the caller's address against --allow (PERMISSION_DENIED), and against
//     its budget of failed authentications (RESOURCE_EXHAUSTED) — PeerGuard;
//  2. its bearer token (`authorization: Bearer ...`), an operator token
//     (UNAUTHENTICATED when missing, unknown, expired or revoked; counted as
//     a failure) — or, with no bearer token, a client certificate of the
//     cluster CA presented in the TLS handshake, which stands for an
//     operator token (core/server/operator_certificates.h) and is refused
//     the same way when that token is no longer valid;
//  3. the role the call needs (PERMISSION_DENIED naming it).
// Tokens are never logged; refusals are, with the caller's address.
// Peripheries (join tokens, credentials) go through the same guard in
// Enrollment (core/fleet/enrollment.h).
//
// Thread-safe; the registry and the guard must outlive it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/peer_guard.h"
#include "core/cluster/cluster.h"
#include "core/server/operator_certificates.h"
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
  // The operator token (empty for another replica passing a call on), and
  // whether it came as a client certificate instead of a bearer token.
  TokenIdentity token;
  bool by_certificate = false;
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
  // The pin of core's built-in cluster CA (empty: none): <data-dir>/
  // join.token is kept as "<secret>.<pin>" (common/secrets.h), what a new
  // periphery needs to verify core, and rewritten when the pin changed.
  std::string ca_pin;
};

// Reads the bootstrap tokens and installs them in `tokens` (replacing the
// previous ones: call again on SIGHUP). Logs each file's path (never its
// content) and warns about files readable by group or others. Errors name
// the file; on error `tokens` is unchanged.
absl::Status LoadBootstrapTokens(const BootstrapTokenFiles& files,
                                 TokenRegistry* tokens);

class Authenticator {
 public:
  // `cluster` (null for a core alone): another replica passing a call on
  // (core/server/job_forward.h) presents the replicas' secret and is served
  // as the operator it names, whom it authenticated already.
  // `certificates` (null without the built-in CA): operators' client
  // certificates are accepted in place of bearer tokens.
  Authenticator(TokenRegistry* tokens, PeerGuard* guard,
                const Cluster* cluster = nullptr,
                const OperatorCertificates* certificates = nullptr);

  // OK and `*caller` filled for a valid operator token with at least the
  // role `needed`. Errors as in the header comment.
  grpc::Status AuthenticateOperator(const grpc::ServerContextBase& context,
                                    varan::v1::Role needed,
                                    Caller* caller) const;

 private:
  TokenRegistry* const tokens_;
  PeerGuard* const guard_;
  const Cluster* const cluster_;
  const OperatorCertificates* const certificates_;
};

}  // namespace varan::core
