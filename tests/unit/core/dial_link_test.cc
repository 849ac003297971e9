// Tests for core/link/dial_link.h against a real gRPC server on loopback
// playing the periphery: which broken calls are NotDelivered (the target
// fails at once) and which may have started the command (the target waits
// for the periphery's report). Decided by what the call saw, not by gRPC's
// words: an answer that quotes "failed to connect to all addresses" is
// still an answer.
#include "core/link/dial_link.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "varan/v1/periphery.grpc.pb.h"

namespace varan::core {
namespace {

constexpr char kGrpcNoConnection[] = "failed to connect to all addresses";

// An Agent whose Execute fails UNAVAILABLE with gRPC's own no-connection
// message: after sending "started" (a command that began), or at once.
class UnavailableAgent final : public varan::v1::Agent::CallbackService {
 public:
  explicit UnavailableAgent(bool start_first) : start_first_(start_first) {}

  grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext*, const varan::v1::ExecuteRequest*) override {
    return new Reactor(start_first_);
  }

 private:
  class Reactor final
      : public grpc::ServerWriteReactor<varan::v1::ExecuteEvent> {
   public:
    explicit Reactor(bool start_first) {
      if (!start_first) {
        Fail();
        return;
      }
      started_.mutable_started()->set_pid(7);
      StartWrite(&started_);
    }
    void OnWriteDone(bool) override { Fail(); }
    void OnDone() override { delete this; }

   private:
    void Fail() {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, kGrpcNoConnection));
    }
    varan::v1::ExecuteEvent started_;
  };

  const bool start_first_;
};

// Records one call's events and its end.
class Recorder final : public ExecuteObserver {
 public:
  void OnEvent(const varan::v1::ExecuteEvent&) override { ++events_; }
  void OnDone(const absl::Status& status) override {
    status_ = status;
    done_.Notify();
  }
  // How the call ended (DEADLINE_EXCEEDED here if it did not within 20 s).
  absl::Status Wait() {
    if (!done_.WaitForNotificationWithTimeout(absl::Seconds(20))) {
      return absl::DeadlineExceededError("the call did not end");
    }
    return status_;
  }
  int events() const { return events_; }

 private:
  int events_ = 0;
  absl::Status status_;
  absl::Notification done_;
};

// A loopback port nobody listens on (bound, then closed).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

class DialLinkTest : public ::testing::Test {
 protected:
  // Serves an UnavailableAgent on a loopback port; returns its address.
  std::string Serve(bool start_first) {
    agent_ = std::make_unique<UnavailableAgent>(start_first);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(agent_.get());
    server_ = builder.BuildAndStart();
    EXPECT_NE(server_, nullptr);
    EXPECT_NE(port, 0);
    return absl::StrCat("127.0.0.1:", port);
  }

  // Runs one Execute call to `address` and returns how it ended.
  absl::Status Execute(const std::string& address, Recorder* recorder) {
    auto link = links_.LinkFor("p1", address, "credential");
    varan::v1::ExecuteRequest request;
    request.set_execution_id("job/p1");
    request.mutable_spec()->add_argv("true");
    link->Execute(request, recorder);
    return recorder->Wait();
  }

  ~DialLinkTest() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  DialLinkProvider links_;
  // Declared before the server, which must be destroyed first.
  std::unique_ptr<UnavailableAgent> agent_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(DialLinkTest, APeripheryThatIsDownIsNotDelivered) {
  const std::string address = absl::StrCat("127.0.0.1:", ClosedPort());
  Recorder recorder;
  const absl::Status status = Execute(address, &recorder);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(IsNotDelivered(status)) << status;
  EXPECT_NE(status.message().find(address), std::string::npos) << status;
  EXPECT_EQ(recorder.events(), 0);
}

TEST_F(DialLinkTest, ACallThatStartedTheCommandIsNotNotDelivered) {
  const std::string address = Serve(/*start_first=*/true);
  Recorder recorder;
  const absl::Status status = Execute(address, &recorder);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_FALSE(IsNotDelivered(status)) << status;
  EXPECT_EQ(recorder.events(), 1);
}

TEST_F(DialLinkTest, AnAnswerOnAConnectedChannelIsNotNotDelivered) {
  const std::string address = Serve(/*start_first=*/false);
  // The first call connects the channel; the second starts on it READY.
  for (int i = 0; i < 2; ++i) {
    Recorder recorder;
    const absl::Status status = Execute(address, &recorder);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_NE(status.message().find(kGrpcNoConnection), std::string::npos);
    EXPECT_FALSE(IsNotDelivered(status)) << "call " << i << ": " << status;
  }
}

// A replica relaying Execute (RelayService's side): it answers UNAVAILABLE
// saying it could not deliver (the trailer), or after its initial metadata
// (which it sends before passing a request on).
class RelayingReplica final : public varan::v1::Agent::CallbackService {
 public:
  explicit RelayingReplica(bool said_not_delivered)
      : said_not_delivered_(said_not_delivered) {}

  grpc::ServerWriteReactor<varan::v1::ExecuteEvent>* Execute(
      grpc::CallbackServerContext* context,
      const varan::v1::ExecuteRequest*) override {
    return new Reactor(context, said_not_delivered_);
  }

 private:
  class Reactor final
      : public grpc::ServerWriteReactor<varan::v1::ExecuteEvent> {
   public:
    Reactor(grpc::CallbackServerContext* context, bool said_not_delivered) {
      if (said_not_delivered) {
        context->AddTrailingMetadata(kNotDeliveredTrailer, "1");
        Fail();
        return;
      }
      StartSendInitialMetadata();
    }
    void OnSendInitialMetadataDone(bool) override { Fail(); }
    void OnDone() override { delete this; }

   private:
    void Fail() {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the tunnel broke"));
    }
  };

  const bool said_not_delivered_;
};

// A relayed call is Misrouted (sent again through the periphery's next
// replica) only when it provably never reached the periphery: the replica
// is down, or said so. One the replica took on may have started it.
TEST(DialLinkRelayTest, OnlyARelayThatNeverReachedThePeripheryIsMisrouted) {
  DialLinkProvider links;
  varan::v1::ExecuteRequest request;
  request.set_execution_id("job/p1");
  request.mutable_spec()->add_argv("true");
  auto relay = [&](const std::string& address) {
    Recorder recorder;
    links.RelayLinkFor("p1", address, "secret")->Execute(request, &recorder);
    return recorder.Wait();
  };
  const absl::Status down = relay(absl::StrCat("127.0.0.1:", ClosedPort()));
  EXPECT_TRUE(IsMisrouted(down)) << down;
  EXPECT_NE(down.message().find("periphery p1 through core replica"),
            std::string::npos)
      << down;
  for (bool said : {true, false}) {
    RelayingReplica replica(said);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&replica);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    const absl::Status status = relay(absl::StrCat("127.0.0.1:", port));
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_EQ(IsMisrouted(status), said) << status;
    EXPECT_EQ(IsNotDelivered(status), said) << status;
    server->Shutdown();
  }
}

// With the built-in CA each periphery's channel checks that periphery's
// certificate: one channel per periphery (not per address), made with the
// security of its id, and made anew after ResetChannels (core's own
// certificate renewed).
TEST(DialLinkProviderTest, ChannelsArePerPeripheryAndResetMakesNewOnes) {
  DialLinkProvider links;
  std::vector<std::string> made;
  links.set_periphery_security([&made](const std::string& id) {
    made.push_back(id);
    ChannelSecurity security;
    security.credentials = grpc::InsecureChannelCredentials();
    return security;
  });
  const std::string address = "127.0.0.1:1";
  links.LinkFor("p1", address, "c1");
  links.LinkFor("p1", address, "c1");
  EXPECT_EQ(made, std::vector<std::string>({"p1"}));
  // Another periphery now at the same address: its own channel.
  links.LinkFor("p2", address, "c2");
  EXPECT_EQ(made, std::vector<std::string>({"p1", "p2"}));
  links.ResetChannels();
  links.LinkFor("p1", address, "c1");
  EXPECT_EQ(made, std::vector<std::string>({"p1", "p2", "p1"}));
}

}  // namespace
}  // namespace varan::core
