// Pieces of a fake core for the client tests: a server-streaming reactor
// that writes a scripted list of messages, and a loopback server with a
// CoreClient connected to it. Each test owns its server and client; the
// reactors are gRPC's to delete (OnDone).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/core_client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace varan::testing {

// Writes `messages`, one write in flight, then finishes with `end`.
template <typename Message>
class ScriptedWriter final : public grpc::ServerWriteReactor<Message> {
 public:
  ScriptedWriter(std::vector<Message> messages, grpc::Status end)
      : messages_(std::move(messages)), end_(std::move(end)) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      this->Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (next_ < messages_.size()) {
      this->StartWrite(&messages_[next_++]);
    } else {
      this->Finish(end_);
    }
  }

  std::vector<Message> messages_;
  size_t next_ = 0;
  const grpc::Status end_;
};

// Serves `service` on a loopback port and connects a CoreClient (token
// "t") to it; fails the test (ASSERT) when either does not work.
inline void ServeOnLoopback(grpc::Service* service,
                            std::unique_ptr<grpc::Server>* server,
                            std::unique_ptr<client::CoreClient>* client) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(service);
  *server = builder.BuildAndStart();
  ASSERT_NE(*server, nullptr);
  ASSERT_GT(port, 0);
  client::ClientOptions options;
  options.address = absl::StrCat("127.0.0.1:", port);
  options.token = "t";
  auto created = client::CoreClient::Create(options);
  ASSERT_TRUE(created.ok()) << created.status();
  *client = std::move(*created);
}

}  // namespace varan::testing
