// Tests for common/bounded_queue.h: FIFO hand-off, the one-shot ready
// callback, back-pressure on the producer and abandonment by the consumer.
#include "common/bounded_queue.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace varan {
namespace {

using Queue = BoundedQueue<std::string>;
using PopResult = Queue::PopResult;

// How long a producer that should stay blocked is given to (wrongly) finish.
constexpr absl::Duration kStillBlocked = absl::Milliseconds(100);
// Upper bound for something that should happen promptly.
constexpr absl::Duration kPromptly = absl::Seconds(5);

class BoundedQueueTest : public ::testing::Test {
 protected:
  // A producer thread pushing `item`; `pushed` is notified once Push returns,
  // with its result in `push_result`.
  void StartProducer(Queue* queue, std::string item, size_t bytes) {
    producer_ = std::thread([this, queue, item = std::move(item), bytes] {
      push_result_ = queue->Push(item, bytes);
      pushed_.Notify();
    });
  }

  // Creates the queue under test; TearDown abandons it so that a failed
  // assertion never leaves the producer thread blocked.
  Queue& MakeQueue(size_t max_bytes) {
    queue_ = std::make_unique<Queue>(max_bytes);
    return *queue_;
  }

  void TearDown() override {
    if (queue_ != nullptr) queue_->Abandon();
    if (producer_.joinable()) producer_.join();
  }

  std::unique_ptr<Queue> queue_;

  std::thread producer_;
  absl::Notification pushed_;
  std::atomic<bool> push_result_{false};
};

TEST_F(BoundedQueueTest, DeliversItemsInOrder) {
  Queue& queue = MakeQueue(1024);
  for (const char* item : {"a", "b", "c"}) ASSERT_TRUE(queue.Push(item, 1));
  std::string out;
  for (const char* want : {"a", "b", "c"}) {
    ASSERT_EQ(queue.TryPop(&out, nullptr), PopResult::kItem);
    EXPECT_EQ(out, want);
  }
  EXPECT_EQ(queue.TryPop(&out, nullptr), PopResult::kEmpty);
}

TEST_F(BoundedQueueTest, EmptyPopLeavesACallbackTheNextPushRunsOnce) {
  Queue& queue = MakeQueue(1024);
  int calls = 0;
  std::string out;
  ASSERT_EQ(queue.TryPop(&out, [&] { ++calls; }), PopResult::kEmpty);
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(queue.Push("x", 1));
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(queue.Push("y", 1));
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(queue.TryPop(&out, nullptr), PopResult::kItem);
  EXPECT_EQ(out, "x");
}

TEST_F(BoundedQueueTest, OnlyTheLatestCallbackRuns) {
  Queue& queue = MakeQueue(1024);
  int first = 0, second = 0;
  std::string out;
  ASSERT_EQ(queue.TryPop(&out, [&] { ++first; }), PopResult::kEmpty);
  ASSERT_EQ(queue.TryPop(&out, [&] { ++second; }), PopResult::kEmpty);
  ASSERT_TRUE(queue.Push("x", 1));
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
}

TEST_F(BoundedQueueTest, CallbackMayPopTheItem) {
  Queue& queue = MakeQueue(1024);
  std::string popped;
  PopResult result = PopResult::kEmpty;
  std::string out;
  ASSERT_EQ(
      queue.TryPop(&out, [&] { result = queue.TryPop(&popped, nullptr); }),
      PopResult::kEmpty);
  ASSERT_TRUE(queue.Push("hello", 5));
  EXPECT_EQ(result, PopResult::kItem);
  EXPECT_EQ(popped, "hello");
}

TEST_F(BoundedQueueTest, DrainedOnlyAfterCloseAndEverythingTaken) {
  Queue& queue = MakeQueue(1024);
  ASSERT_TRUE(queue.Push("last", 4));
  queue.CloseProducer();
  std::string out;
  ASSERT_EQ(queue.TryPop(&out, nullptr), PopResult::kItem);
  EXPECT_EQ(out, "last");
  EXPECT_EQ(queue.TryPop(&out, nullptr), PopResult::kDrained);
  EXPECT_EQ(queue.TryPop(&out, nullptr), PopResult::kDrained);
}

TEST_F(BoundedQueueTest, CloseProducerRunsThePendingCallback) {
  Queue& queue = MakeQueue(1024);
  int calls = 0;
  std::string out;
  ASSERT_EQ(queue.TryPop(&out, [&] { ++calls; }), PopResult::kEmpty);
  queue.CloseProducer();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(queue.TryPop(&out, nullptr), PopResult::kDrained);
}

TEST_F(BoundedQueueTest, PushBlocksOverTheLimitUntilAPopMakesRoom) {
  Queue& queue = MakeQueue(10);
  ASSERT_TRUE(queue.Push("first", 10));
  StartProducer(&queue, "second", 1);
  EXPECT_FALSE(pushed_.WaitForNotificationWithTimeout(kStillBlocked))
      << "Push returned although the queue was full";

  std::string out;
  ASSERT_EQ(queue.TryPop(&out, nullptr), PopResult::kItem);
  EXPECT_EQ(out, "first");
  ASSERT_TRUE(pushed_.WaitForNotificationWithTimeout(kPromptly))
      << "Push stayed blocked after a pop made room";
  EXPECT_TRUE(push_result_.load());
  ASSERT_EQ(queue.TryPop(&out, nullptr), PopResult::kItem);
  EXPECT_EQ(out, "second");
}

TEST_F(BoundedQueueTest, ItemLargerThanTheLimitDoesNotBlockAnEmptyQueue) {
  Queue& queue = MakeQueue(10);
  ASSERT_TRUE(queue.Push(std::string(100, 'x'), 100));
  std::string out;
  ASSERT_EQ(queue.TryPop(&out, nullptr), PopResult::kItem);
  EXPECT_EQ(out.size(), 100u);
}

TEST_F(BoundedQueueTest, AbandonUnblocksAProducerAndRefusesLaterPushes) {
  Queue& queue = MakeQueue(10);
  ASSERT_TRUE(queue.Push("first", 10));
  StartProducer(&queue, "blocked", 1);
  EXPECT_FALSE(pushed_.WaitForNotificationWithTimeout(kStillBlocked));
  queue.Abandon();
  ASSERT_TRUE(pushed_.WaitForNotificationWithTimeout(kPromptly))
      << "Abandon did not unblock the producer";
  EXPECT_FALSE(push_result_.load());
  EXPECT_FALSE(queue.Push("later", 1));
}

TEST_F(BoundedQueueTest, NoCallbackRunsAfterAbandon) {
  Queue& queue = MakeQueue(1024);
  int calls = 0;
  std::string out;
  ASSERT_EQ(queue.TryPop(&out, [&] { ++calls; }), PopResult::kEmpty);
  queue.Abandon();
  EXPECT_FALSE(queue.Push("x", 1));
  queue.CloseProducer();
  EXPECT_EQ(calls, 0);
}

TEST_F(BoundedQueueTest, AbandonWaitsForARunningCallback) {
  Queue& queue = MakeQueue(1024);
  absl::Notification in_callback, release_callback;
  std::atomic<bool> callback_done{false};
  std::string out;
  ASSERT_EQ(queue.TryPop(&out,
                         [&] {
                           in_callback.Notify();
                           release_callback.WaitForNotification();
                           callback_done = true;
                         }),
            PopResult::kEmpty);
  // Never leave the producer stuck in the callback, even on failure.
  absl::Cleanup release = [&] {
    if (!release_callback.HasBeenNotified()) release_callback.Notify();
  };
  StartProducer(&queue, "x", 1);  // runs the callback on its thread
  ASSERT_TRUE(in_callback.WaitForNotificationWithTimeout(kPromptly));

  absl::Notification abandoned;
  std::thread consumer([&] {
    queue.Abandon();
    abandoned.Notify();
  });
  EXPECT_FALSE(abandoned.WaitForNotificationWithTimeout(kStillBlocked))
      << "Abandon returned while a callback was still running";
  std::move(release).Invoke();
  EXPECT_TRUE(abandoned.WaitForNotificationWithTimeout(kPromptly));
  EXPECT_TRUE(callback_done.load());
  consumer.join();
}

}  // namespace
}  // namespace varan
