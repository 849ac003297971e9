// ReportUntilStored: a periphery's report, given to a Dispatcher as its
// heartbeats give it, until the dispatcher acknowledges it — which it does
// only once the outcome is stored (Dispatcher::OnPeripheryReport).
#pragma once

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "core/jobs/dispatcher.h"
#include "core/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {

// The first report applies `reports` and must acknowledge nothing (a test
// failure otherwise); then, with `store` synced, the same report again
// until it is acknowledged (up to 2 s). Returns those acknowledgements.
// `cancel` goes with the first report.
inline std::vector<std::string> ReportUntilStored(
    Dispatcher& dispatcher, Store& store, const std::string& periphery,
    const google::protobuf::RepeatedPtrField<varan::v1::ExecutionReport>&
        reports,
    std::vector<std::string>* cancel = nullptr) {
  EXPECT_THAT(dispatcher.OnPeripheryReport(periphery, reports, cancel),
              ::testing::IsEmpty())
      << "acknowledged before it was stored";
  for (int i = 0; i < 200; ++i) {
    EXPECT_TRUE(store.Sync().ok());
    std::vector<std::string> acks =
        dispatcher.OnPeripheryReport(periphery, reports);
    if (!acks.empty()) return acks;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return {};
}

}  // namespace varan::core
