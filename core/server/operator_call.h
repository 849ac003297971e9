// What every operator-facing unary handler of core's services shares:
// authenticate with the role the RPC needs (Authenticator), run the call,
// and finish the call's default reactor with the result converted to a
// grpc::Status. Header-only templates; thread-safety is that of the call
// they run.
#pragma once

#include <utility>

#include "absl/status/statusor.h"
#include "common/grpc_util.h"
#include "core/server/auth.h"
#include "grpcpp/grpcpp.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

// Finishes the call at once with `status`.
inline grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context,
                                      const grpc::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

// An operator's call that answers later: authenticates with at least role
// `needed`, then `call(caller, done)` must call `done` (an
// absl::StatusOr<Response> callback) exactly once, on any thread.
template <typename Response, typename Call>
grpc::ServerUnaryReactor* OperatorAsync(const Authenticator* auth,
                                        varan::v1::Role needed,
                                        grpc::CallbackServerContext* context,
                                        Response* response, Call call) {
  Caller caller;
  if (grpc::Status s = auth->AuthenticateOperator(*context, needed, &caller);
      !s.ok()) {
    return Done(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  call(caller, [context, reactor, response](absl::StatusOr<Response> result) {
    if (!result.ok()) {
      // A status refusing work for now says when to try again.
      AddRetryAfterTrailer(result.status(), context);
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    *response = *std::move(result);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

// An operator's unary call: authenticates with at least role `needed`, then
// answers with what `call(caller)` returns (an absl::StatusOr<Response>).
template <typename Response, typename Call>
grpc::ServerUnaryReactor* OperatorUnary(const Authenticator* auth,
                                        varan::v1::Role needed,
                                        grpc::CallbackServerContext* context,
                                        Response* response, Call call) {
  return OperatorAsync(
      auth, needed, context, response,
      [&call](const Caller& caller, auto done) { done(call(caller)); });
}

}  // namespace varan::core
