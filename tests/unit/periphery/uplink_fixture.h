// The fixture of the uplink's tests (uplink_test.cc,
// uplink_certificate_test.cc): an Uplink talking to a FakeCoreConnection,
// waiting on a RecordingClock, with its log captured.
#pragma once

#include <memory>
#include <string>

#include "common/address.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "gtest/gtest.h"
#include "periphery/uplink/uplink.h"
#include "spdlog/sinks/ringbuffer_sink.h"
#include "spdlog/spdlog.h"
#include "tests/fakes/periphery/fake_core_connection.h"
#include "tests/fakes/recording_clock.h"
#include "tests/unit/temp_dir.h"

namespace varan::periphery {

// What core answers a tunnel hello of periphery p-1 with.
inline varan::v1::TunnelOpened OpenedAsP1() {
  varan::v1::TunnelOpened opened;
  opened.set_periphery_id("p-1");
  opened.set_credential("cred-1");
  SetDuration(absl::Seconds(5), opened.mutable_heartbeat_interval());
  return opened;
}

inline varan::v1::RegisterResponse Registered(const std::string& id,
                                              const std::string& credential,
                                              absl::Duration interval) {
  varan::v1::RegisterResponse r;
  r.set_periphery_id(id);
  r.set_credential(credential);
  SetDuration(interval, r.mutable_heartbeat_interval());
  return r;
}

inline varan::v1::HeartbeatResponse Beat() { return {}; }

// Captures what the uplink logs (the process-wide default logger) while it
// lives.
class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)),
        previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string Text() const {
    std::string out;
    for (const auto& line : sink_->last_formatted()) out += line;
    return out;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

class UplinkTest : public ::testing::Test {
 protected:
  using Kind = FakeCoreConnection::Kind;

  UplinkTest()
      : host_(varan::v1::HostFacts()),
        executor_(ExecutorOptions{}),
        owned_core_(std::make_unique<FakeCoreConnection>(&clock_)),
        core_(owned_core_.get()) {
    options_.cores = {{"::1", 7700}};
    options_.join_token = "join-secret";
    options_.name = "web-1";
    options_.labels = {{"env", "prod"}};
    options_.advertise_address = "[::1]:7701";
    options_.state_dir = dir_.path();
    options_.max_backoff = absl::Seconds(1);
  }
  ~UplinkTest() override {
    core_->Close();
    uplink_.reset();
  }

  void SaveRegistration(const std::string& id, const std::string& credential) {
    ASSERT_TRUE(WriteSecretFile(dir_.path() + "/periphery_id", id).ok());
    ASSERT_TRUE(WriteSecretFile(dir_.path() + "/credential", credential).ok());
  }
  std::string Saved(const std::string& file) {
    auto s = ReadSecretFile(dir_.path() + "/" + file);
    return s.ok() ? *s : std::string("<") + s.status().ToString() + ">";
  }
  void StartUplink() {
    uplink_ = std::make_unique<Uplink>(
        options_,
        [this](const HostPort& core) {
          return core_->Connect(FormatHostPort(core));
        },
        &credential_, &host_, &executor_, &clock_);
    uplink_->Start();
  }

  varan::testing::UnitTempDir dir_;
  varan::testing::RecordingClock clock_;
  UplinkOptions options_;
  CredentialHolder credential_;
  HostSnapshot host_;
  Executor executor_;
  // Every core the uplink connects to is answered by this one fake.
  std::unique_ptr<FakeCoreConnection> owned_core_;
  FakeCoreConnection* const core_;
  std::unique_ptr<Uplink> uplink_;
};

}  // namespace varan::periphery
