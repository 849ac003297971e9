// A generic gRPC service answering every call with an empty message: for
// handshake tests, where reaching it means both sides accepted the
// handshake.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/notification.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

namespace varan::testing {

class AnswerAll final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext*) override {
    // Deletes itself in OnDone, as gRPC reactors do.
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() : reply_(&empty_, 1) {
        StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      grpc::Slice empty_{std::string()};
      grpc::ByteBuffer reply_;
    };
    return new Reactor;
  }
};

// One call (5 s deadline) over `channel` to an AnswerAll server: OK only
// when both sides accepted the handshake.
inline grpc::Status CallAnswerAll(std::shared_ptr<grpc::Channel> channel) {
  grpc::GenericStub stub(std::move(channel));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Slice empty{std::string()};
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  grpc::Status result;
  absl::Notification done;
  stub.UnaryCall(&ctx, "/varan.test.Probe/Ping", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status s) {
                   result = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  return result;
}

}  // namespace varan::testing
