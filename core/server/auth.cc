#include "core/server/auth.h"

#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/secrets.h"

namespace varan::core {
namespace {

grpc::Status Refuse(const grpc::CallbackServerContext& context,
                    const char* what) {
  spdlog::warn("refused a call from {}: missing or wrong {}",
               NormalizePeerAddress(context.peer()), what);
  return grpc::Status(
      grpc::StatusCode::UNAUTHENTICATED,
      std::string("missing or wrong ") + what +
          " (send it as 'authorization: Bearer <token>' metadata)");
}

}  // namespace

Authenticator::Authenticator(std::string admin_token, std::string join_token)
    : admin_token_(std::move(admin_token)),
      join_token_(std::move(join_token)) {}

absl::StatusOr<Authenticator> Authenticator::FromDataDir(
    const std::string& dir) {
  std::string tokens[2];
  const char* names[2] = {"admin.token", "join.token"};
  for (int i = 0; i < 2; ++i) {
    const std::string path = absl::StrCat(dir, "/", names[i]);
    bool created = false;
    auto token = EnsureSecretFile(path, &created);
    if (!token.ok()) return token.status();
    tokens[i] = *std::move(token);
    spdlog::info("{} {}", created ? "created" : "using", path);
  }
  return Authenticator(std::move(tokens[0]), std::move(tokens[1]));
}

grpc::Status Authenticator::AuthenticateOperator(
    const grpc::CallbackServerContext& context, Caller* caller) const {
  absl::string_view token = BearerToken(context);
  if (token.empty() || !SecretEquals(token, admin_token_)) {
    return Refuse(context, "operator token");
  }
  caller->name = "admin";
  return grpc::Status::OK;
}

grpc::Status Authenticator::AuthenticateJoin(
    const grpc::CallbackServerContext& context) const {
  absl::string_view token = BearerToken(context);
  if (token.empty() || !SecretEquals(token, join_token_)) {
    return Refuse(context, "join token");
  }
  return grpc::Status::OK;
}

}  // namespace varan::core
