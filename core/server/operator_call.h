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
#include "core/server/blocking_work.h"
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

// As OperatorAsync, for a call that may wait (a store read, a database
// round trip): `call(caller, done)` runs on one of `work`'s threads, not on
// gRPC's (the authentication stays there). A full queue answers the call
// with BlockingWork::Run's RESOURCE_EXHAUSTED. `call` outlives the handler:
// it captures the request and the service by value (pointers), never by
// reference to the handler's parameters. Null `work`: runs at once.
template <typename Response, typename Call>
grpc::ServerUnaryReactor* OperatorBlockingAsync(
    const Authenticator* auth, BlockingWork* work, varan::v1::Role needed,
    grpc::CallbackServerContext* context, Response* response, Call call) {
  return OperatorAsync(
      auth, needed, context, response,
      [work, call = std::move(call)](const Caller& caller, auto done) mutable {
        RunBlocking(
            work,
            [call = std::move(call), caller, done]() mutable {
              call(caller, std::move(done));
            },
            [done](absl::Status refused) mutable { done(std::move(refused)); });
      });
}

// As OperatorUnary, with `call(caller)` run on `work`'s threads (see
// OperatorBlockingAsync).
template <typename Response, typename Call>
grpc::ServerUnaryReactor* OperatorBlocking(const Authenticator* auth,
                                           BlockingWork* work,
                                           varan::v1::Role needed,
                                           grpc::CallbackServerContext* context,
                                           Response* response, Call call) {
  return OperatorBlockingAsync(
      auth, work, needed, context, response,
      [call = std::move(call)](const Caller& caller, auto done) mutable {
        done(call(caller));
      });
}

}  // namespace varan::core
