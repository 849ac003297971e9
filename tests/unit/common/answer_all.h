// A generic gRPC service answering every call with an empty message: for
// handshake tests, where reaching it means both sides accepted the
// handshake.
#pragma once

#include <string>

#include "grpcpp/generic/async_generic_service.h"
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

}  // namespace varan::testing
