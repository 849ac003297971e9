#include "core/server/auth.h"

#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/secrets.h"

namespace varan::core {
namespace {

grpc::Status Unauthenticated(const std::string& peer, const absl::Status& why) {
  spdlog::warn("refused a call from {}: {}", peer, why.message());
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      std::string(why.message()));
}

}  // namespace

absl::Status LoadBootstrapTokens(const BootstrapTokenFiles& files,
                                 TokenRegistry* tokens) {
  std::vector<BootstrapToken> admin, join;
  struct Source {
    std::string path;
    const char* name;
    bool create;
    std::vector<BootstrapToken>* into;
  };
  const Source sources[] = {
      {absl::StrCat(files.data_dir, "/admin.token"), "admin", true, &admin},
      {absl::StrCat(files.data_dir, "/join.token"), "join", true, &join},
      {files.admin_token_file, "admin-file", false, &admin},
      {files.join_token_file, "join-file", false, &join},
  };
  for (const Source& s : sources) {
    if (s.path.empty()) continue;
    absl::StatusOr<std::string> secret;
    bool created = false;
    if (s.create) {
      secret = EnsureSecretFile(s.path, &created);
    } else {
      secret = ReadSecretFile(s.path);
    }
    if (!secret.ok()) return secret.status();
    if (s.into == &join) {
      // A join token may carry core's CA pin after its secret; the one core
      // keeps in its data directory carries the current one.
      JoinTokenText text = SplitJoinToken(*secret);
      if (s.create && text.pin != files.ca_pin) {
        if (absl::Status w = WriteSecretFile(
                s.path, JoinTokenWithPin(text.secret, files.ca_pin));
            !w.ok()) {
          return w;
        }
      }
      *secret = std::move(text.secret);
    }
    if (std::string w = LoosePermissionsWarning(s.path); !w.empty()) {
      spdlog::warn("{}", w);
    }
    spdlog::info("{} {} (token \"{}\")", created ? "created" : "using", s.path,
                 s.name);
    s.into->push_back(BootstrapToken{s.name, s.path, *std::move(secret)});
  }
  tokens->SetBootstrap(std::move(admin), std::move(join));
  return absl::OkStatus();
}

Authenticator::Authenticator(TokenRegistry* tokens, PeerGuard* guard,
                             const Cluster* cluster,
                             const OperatorCertificates* certificates)
    : tokens_(tokens),
      guard_(guard),
      cluster_(cluster),
      certificates_(certificates) {}

grpc::Status Authenticator::AuthenticateOperator(
    const grpc::ServerContextBase& context, varan::v1::Role needed,
    Caller* caller) const {
  const std::string peer = NormalizePeerAddress(context.peer());
  if (absl::Status s = guard_->Admit(peer); !s.ok()) return ToGrpcStatus(s);
  const absl::string_view token = BearerToken(context);
  if (cluster_ != nullptr && !token.empty() &&
      SecretEquals(token, cluster_->secret())) {
    // Another replica, for an operator it authenticated with the role the
    // call needs.
    auto on_behalf = context.client_metadata().find("varan-on-behalf-of");
    caller->name =
        on_behalf == context.client_metadata().end()
            ? std::string("replica")
            : std::string(on_behalf->second.data(), on_behalf->second.size());
    caller->role = varan::v1::ROLE_ADMIN;
    caller->peer = peer;
    return grpc::Status::OK;
  }
  // With no bearer token, a client certificate of the cluster CA may stand
  // for one.
  const std::string chain = token.empty() && certificates_ != nullptr
                                ? PeerCertificateChain(context)
                                : std::string();
  absl::StatusOr<TokenIdentity> id;
  if (chain.empty()) {
    id = tokens_->AuthenticateOperator(token);
  } else if (auto presented = certificates_->OperatorOf(chain);
             presented.ok()) {
    id = tokens_->OperatorByBinding(presented->token_id, presented->binding);
  } else {
    id = presented.status();
  }
  if (!id.ok()) {
    guard_->RecordFailure(peer);
    return Unauthenticated(peer, id.status());
  }
  if (id->role < needed) {
    spdlog::warn("refused a call from {} (token {}): needs role {}, has {}",
                 peer, id->name, RoleName(needed), RoleName(id->role));
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("this call needs the ", RoleName(needed),
                                     " role; token \"", id->name, "\" has the ",
                                     RoleName(id->role), " role"));
  }
  caller->name = id->name;
  caller->role = id->role;
  caller->peer = peer;
  caller->by_certificate = !chain.empty();
  caller->token = *std::move(id);
  return grpc::Status::OK;
}

}  // namespace varan::core
