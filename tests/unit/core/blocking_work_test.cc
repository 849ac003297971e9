// BlockingWork: work runs on the pool's threads, as many items at once as
// it has threads; past its bound it refuses with a retry hint, and it runs
// what was queued before it ends.
#include "core/server/blocking_work.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

BlockingWork::Options Sized(int threads, size_t max_queued) {
  BlockingWork::Options options;
  options.threads = threads;
  options.max_queued = max_queued;
  return options;
}

TEST(BlockingWorkTest, ItemsWaitOnThePoolsThreadsTogether) {
  BlockingWork work(Sized(3, 10));
  absl::Notification release;
  std::atomic<int> waiting{0};
  std::atomic<bool> on_caller{false};
  const std::thread::id caller = std::this_thread::get_id();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(work.Run([&] {
                      if (std::this_thread::get_id() == caller)
                        on_caller = true;
                      ++waiting;
                      release.WaitForNotification();
                    })
                    .ok());
  }
  // All three wait at once: none holds the others up.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (waiting.load() < 3 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(waiting.load(), 3);
  EXPECT_EQ(work.running(), 3);
  EXPECT_FALSE(on_caller.load());
  release.Notify();
}

TEST(BlockingWorkTest, AFullQueueRefusesWithARetryHint) {
  BlockingWork::Options options = Sized(1, 2);
  options.retry_after = absl::Milliseconds(700);
  BlockingWork work(options);
  absl::Notification started;
  absl::Notification release;
  ASSERT_TRUE(work.Run([&] {
                    started.Notify();
                    release.WaitForNotification();
                  })
                  .ok());
  started.WaitForNotification();
  std::atomic<int> ran{0};
  ASSERT_TRUE(work.Run([&] { ++ran; }).ok());
  ASSERT_TRUE(work.Run([&] { ++ran; }).ok());
  EXPECT_EQ(work.queued(), 2u);

  bool dropped_ran = false;
  const absl::Status refused = work.Run([&] { dropped_ran = true; });
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_NE(refused.message().find("2 calls waiting for the store"),
            absl::string_view::npos)
      << refused;
  ASSERT_TRUE(RetryAfter(refused).has_value());
  EXPECT_EQ(*RetryAfter(refused), absl::Milliseconds(700));

  release.Notify();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (ran.load() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(ran.load(), 2);
  EXPECT_FALSE(dropped_ran);
  // Room again once the queue drained.
  EXPECT_TRUE(work.Run([&] { ++ran; }).ok());
}

TEST(BlockingWorkTest, WhatWasQueuedRunsBeforeThePoolEnds) {
  std::atomic<int> ran{0};
  {
    BlockingWork work(Sized(1, 100));
    absl::Notification release;
    ASSERT_TRUE(work.Run([&] { release.WaitForNotification(); }).ok());
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(work.Run([&] { ++ran; }).ok());
    }
    release.Notify();
  }
  // Each item finishes a call: none may be dropped at the end.
  EXPECT_EQ(ran.load(), 20);
}

}  // namespace
}  // namespace varan::core
