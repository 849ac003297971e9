// The fixture of the Dispatcher tests (dispatcher_test.cc,
// dispatcher_reports_test.cc): a dispatcher on fake links and a fake
// clock, over a FleetRegistry and a SqliteStore in a temporary directory,
// and the reports a periphery's heartbeat carries.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "core/fleet/registry.h"
#include "core/jobs/dispatcher.h"
#include "core/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/core/fake_links.h"
#include "tests/unit/temp_dir.h"

namespace varan::core {

inline constexpr absl::Duration kInterval = absl::Seconds(10);

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() { Open(); }
  ~DispatcherTest() override { Close(); }

  void Open() { Open(dir_.path()); }
  void Open(const std::string& dir) {
    auto store = SqliteStore::Open(dir + "/core.db", {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    fleet_ = std::make_unique<FleetRegistry>(
        &clock_,
        FleetOptions{kInterval, 3, absl::ZeroDuration(), absl::Seconds(30)},
        store_.get());
    ASSERT_TRUE(fleet_->Load().ok());
    dispatcher_ = std::make_unique<Dispatcher>(fleet_.get(), &links_,
                                               store_.get(), &clock_, options_);
    fleet_->SetGoneListener(
        [this](const std::string& id, const std::string& reason) {
          dispatcher_->PeripheryGone(id, reason);
        });
  }

  void Close() {
    links_.EndAll();
    dispatcher_.reset();
    fleet_.reset();
    store_.reset();
  }

  // Registers and confirms a periphery.
  std::string Add(const std::string& name,
                  std::map<std::string, std::string> labels = {}) {
    varan::v1::RegisterRequest req;
    req.set_name(name);
    req.mutable_labels()->insert(labels.begin(), labels.end());
    req.set_advertise_address("[::1]:7701");
    auto reg = fleet_->Register(req, "::1");
    EXPECT_TRUE(reg.ok()) << reg.status();
    EXPECT_TRUE(fleet_->Heartbeat(reg->id, reg->credential, {}, "::1").ok());
    return reg->id;
  }

  static varan::v1::DispatchRequest Request(const std::string& selector) {
    varan::v1::DispatchRequest req;
    req.mutable_target()->set_selector(selector);
    req.mutable_spec()->add_argv("true");
    return req;
  }

  std::shared_ptr<Job> MustDispatch(const varan::v1::DispatchRequest& req) {
    auto job = dispatcher_->Dispatch(req, "tester");
    EXPECT_TRUE(job.ok()) << job.status();
    // Targets are sent after the commit; wait for it.
    EXPECT_TRUE(store_->Sync().ok());
    return job.ok() ? *job : nullptr;
  }

  static std::vector<varan::v1::TargetState> States(const Job& job) {
    std::vector<varan::v1::TargetState> out;
    const varan::v1::Job snap = job.Snapshot();
    for (const auto& t : snap.targets()) out.push_back(t.state());
    return out;
  }

  FakeClock clock_;
  // The options of the dispatcher the next Open makes.
  DispatcherOptions options_;
  varan::testing::UnitTempDir dir_;
  FakeLinks links_;
  // The stored stdout of a target (the output is not in the job record).
  std::string StoredStdout(const std::string& job, const std::string& target) {
    EXPECT_TRUE(store_->Sync().ok());
    auto out = store_->ReadOutput(
        {job, target, varan::v1::OUTPUT_STREAM_STDOUT}, 0, 1 << 30);
    EXPECT_TRUE(out.ok()) << out.status();
    std::string joined;
    if (out.ok()) {
      for (const auto& piece : out->pieces) joined += piece.data;
    }
    return joined;
  }

  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<FleetRegistry> fleet_;
  std::unique_ptr<Dispatcher> dispatcher_;
};

// A finished report from a periphery: exit code and an output tail.
inline varan::v1::ExecutionReport Finished(const std::string& execution_id,
                                           int code, const std::string& tail,
                                           uint64_t offset = 0) {
  varan::v1::ExecutionReport r;
  r.set_execution_id(execution_id);
  r.mutable_started()->set_pid(42);
  r.mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
  r.mutable_exited()->set_code(code);
  r.mutable_stdout_tail()->set_offset(offset);
  r.mutable_stdout_tail()->set_data(tail);
  return r;
}

inline google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> Reports(
    std::vector<varan::v1::ExecutionReport> list) {
  google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport> out;
  for (auto& r : list) *out.Add() = std::move(r);
  return out;
}

}  // namespace varan::core
