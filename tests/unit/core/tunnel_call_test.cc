// TunnelCall: output window accounting, credit granted only once the
// listener took the output (a quarter window at a time, none after the
// end), a stalled listener stalling only its own
// execution, and output beyond the window refused.
#include "core/link/tunnel_call.h"

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using varan::v1::ExecuteEvent;

// Records what a call asks of its tunnel.
class FakeHost final : public TunnelCallHost {
 public:
  bool SendCancel(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    canceled_.push_back(id);
    return true;
  }
  void SendCredit(const std::string& id, uint64_t bytes) override {
    absl::MutexLock lock(&mu_);
    credit_[id] += bytes;
    ++grants_[id];
  }
  void SendDetach(const std::string& id) override {
    absl::MutexLock lock(&mu_);
    detached_.push_back(id);
  }
  std::vector<std::string> detached() {
    absl::MutexLock lock(&mu_);
    return detached_;
  }
  void Forget(const std::string& id) override {
    std::shared_ptr<TunnelCall> routed;
    {
      absl::MutexLock lock(&mu_);
      forgotten_.push_back(id);
      routed = std::move(routed_);
    }
    // The routing table's reference goes here, as in TunnelConnection.
  }
  // Holds `call` as the tunnel's routing table does, until Forget.
  void Route(std::shared_ptr<TunnelCall> call) {
    absl::MutexLock lock(&mu_);
    routed_ = std::move(call);
  }
  uint64_t credit(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return credit_[id];
  }
  // Credit messages sent for `id`.
  int grants(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return grants_[id];
  }
  // Waits until `id` was granted at least `bytes`.
  void AwaitCredit(const std::string& id, uint64_t bytes) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return credit_[id] >= bytes;
    };
    mu_.Await(absl::Condition(&enough));
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, uint64_t> credit_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> grants_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> canceled_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> detached_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> forgotten_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<TunnelCall> routed_ ABSL_GUARDED_BY(mu_);
};

// A listener that can be made to block in OnEvent, like a job whose live
// window is full.
class Listener final : public ExecuteObserver {
 public:
  void OnEvent(const ExecuteEvent& event) override {
    {
      absl::MutexLock lock(&mu_);
      ++entered_;
    }
    if (blocking_) release_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    if (event.has_output()) bytes_ += event.output().data().size();
    ++events_;
  }
  void OnDone(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
    done_on_ = std::this_thread::get_id();
  }
  // The thread OnDone ran on.
  std::thread::id done_on() {
    absl::MutexLock lock(&mu_);
    return done_on_;
  }
  void Block() { blocking_ = true; }
  void Release() { release_.Notify(); }
  void AwaitEntered(int n) {
    Await([&] { return entered_ >= n; });
  }
  void AwaitEvents(int n) {
    Await([&] { return events_ >= n; });
  }
  absl::Status AwaitDone() {
    Await([&] { return done_; });
    absl::MutexLock lock(&mu_);
    return status_;
  }
  uint64_t bytes() {
    absl::MutexLock lock(&mu_);
    return bytes_;
  }
  int events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  template <typename F>
  void Await(F f) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&f));
  }
  bool blocking_ = false;
  absl::Notification release_;
  absl::Mutex mu_;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
  int events_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread::id done_on_ ABSL_GUARDED_BY(mu_);
};

ExecuteEvent Output(size_t size) {
  ExecuteEvent ev;
  ev.mutable_output()->set_stream(varan::v1::OUTPUT_STREAM_STDOUT);
  ev.mutable_output()->set_data(std::string(size, 'x'));
  return ev;
}

ExecuteEvent Exited() {
  ExecuteEvent ev;
  ev.mutable_exited()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
  return ev;
}

class TunnelCallTest : public ::testing::Test {
 protected:
  std::shared_ptr<TunnelCall> NewCall(const std::string& id, uint64_t window,
                                      Listener* listener) {
    return std::make_shared<TunnelCall>(host_, &threads_, id, window, listener);
  }
  void TearDown() override { threads_.WaitIdle(); }

  std::shared_ptr<FakeHost> host_ = std::make_shared<FakeHost>();
  DeliveryThreads threads_;
};

TEST_F(TunnelCallTest, CreditIsGrantedOnlyOnceTheListenerTookTheOutput) {
  Listener listener;
  listener.Block();
  auto call = NewCall("e1", 1000, &listener);
  ASSERT_TRUE(call->Accept(Output(400)).ok());
  listener.AwaitEntered(1);
  EXPECT_EQ(host_->credit("e1"), 0u);
  listener.Release();
  host_->AwaitCredit("e1", 400);
  ASSERT_TRUE(call->Accept(Exited()).ok());
  EXPECT_TRUE(listener.AwaitDone().ok());
  EXPECT_EQ(listener.bytes(), 400u);
  EXPECT_EQ(host_->credit("e1"), 400u);
}

// Output in small chunks (a command printing line by line) is granted back
// a quarter window at a time, not with a message per chunk.
TEST_F(TunnelCallTest, SmallChunksAreGrantedAQuarterWindowAtATime) {
  Listener listener;
  auto call = NewCall("e1", 1000, &listener);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(call->Accept(Output(50)).ok());
  host_->AwaitCredit("e1", 500);
  EXPECT_EQ(host_->grants("e1"), 2);
  // Less than a quarter window delivered: kept until more comes.
  ASSERT_TRUE(call->Accept(Output(100)).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(call->Accept(Output(50)).ok());
  host_->AwaitCredit("e1", 750);
  EXPECT_EQ(host_->grants("e1"), 3);
  ASSERT_TRUE(call->Accept(Exited()).ok());
  EXPECT_TRUE(listener.AwaitDone().ok());
  EXPECT_EQ(listener.bytes(), 750u);
}

// Once the command has ended the periphery sends no more output: credit for
// what was delivered after that would be a message for nothing.
TEST_F(TunnelCallTest, NoCreditIsSentOnceTheCommandEnded) {
  Listener listener;
  listener.Block();
  auto call = NewCall("e1", 1000, &listener);
  ASSERT_TRUE(call->Accept(Output(400)).ok());
  ASSERT_TRUE(call->Accept(Exited()).ok());
  listener.Release();
  EXPECT_TRUE(listener.AwaitDone().ok());
  EXPECT_EQ(listener.bytes(), 400u);
  EXPECT_EQ(host_->grants("e1"), 0);
}

TEST_F(TunnelCallTest, OutputBeyondTheWindowIsRefused) {
  Listener listener;
  listener.Block();
  auto call = NewCall("e1", 1000, &listener);
  ASSERT_TRUE(call->Accept(Output(600)).ok());
  ASSERT_TRUE(call->Accept(Output(400)).ok());  // exactly the window
  absl::Status excess = call->Accept(Output(1));
  EXPECT_EQ(excess.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(excess.message().find("e1"), std::string::npos);
  call->Complete(excess, /*drop=*/true);
  listener.Release();
  EXPECT_EQ(listener.AwaitDone().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(TunnelCallTest, CreditReopensTheWindow) {
  Listener listener;
  auto call = NewCall("e1", 1000, &listener);
  for (int i = 0; i < 5; ++i) {
    // Each round fills the window; the listener's credit makes room.
    ASSERT_TRUE(call->Accept(Output(1000)).ok()) << "round " << i;
    host_->AwaitCredit("e1", 1000u * (i + 1));
  }
  ASSERT_TRUE(call->Accept(Exited()).ok());
  EXPECT_TRUE(listener.AwaitDone().ok());
  EXPECT_EQ(listener.bytes(), 5000u);
}

TEST_F(TunnelCallTest, AStalledListenerDoesNotStallAnotherExecution) {
  Listener stalled, other;
  stalled.Block();
  auto a = NewCall("a", 1000, &stalled);
  auto b = NewCall("b", 1000, &other);
  ASSERT_TRUE(a->Accept(Output(1000)).ok());
  stalled.AwaitEntered(1);
  // The reader (this thread) is not held by `a`: `b` flows to the end.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b->Accept(Output(1000)).ok());
    host_->AwaitCredit("b", 1000u * (i + 1));
  }
  ASSERT_TRUE(b->Accept(Exited()).ok());
  EXPECT_TRUE(other.AwaitDone().ok());
  EXPECT_EQ(other.bytes(), 3000u);
  EXPECT_EQ(host_->credit("a"), 0u);
  stalled.Release();
  host_->AwaitCredit("a", 1000);
  a->Abort();
  EXPECT_EQ(stalled.AwaitDone().code(), absl::StatusCode::kCancelled);
}

// A fan-out's calls come one after the other on a tunnel: their deliveries
// reuse the threads of the calls before, not a new thread each.
TEST_F(TunnelCallTest, CallsOneAfterTheOtherReuseTheDeliveryThreads) {
  std::set<std::thread::id> used;
  std::deque<Listener> listeners;  // kept until the threads have ended
  for (int i = 0; i < 100; ++i) {
    Listener& listener = listeners.emplace_back();
    auto call = NewCall("e" + std::to_string(i), 1000, &listener);
    ASSERT_TRUE(call->Accept(Output(10)).ok());
    ASSERT_TRUE(call->Accept(Exited()).ok());
    ASSERT_TRUE(listener.AwaitDone().ok());
    used.insert(listener.done_on());
  }
  EXPECT_LE(used.size(), 2u);
  EXPECT_GE(threads_.threads(), 1);
  // Ending, the idle ones end at once (not after DeliveryThreads::kIdleFor).
  threads_.WaitIdle();
  EXPECT_EQ(threads_.threads(), 0);
}

// A periphery going offline aborts its calls while the tunnel's routing
// table holds the only reference: Forget drops it inside Abort, which must
// not touch the call afterwards (a heap-use-after-free under ASan, found by
// NetworkTest.PartitionLongerThanTheTtlThenResultsAreDelivered).
TEST_F(TunnelCallTest, AbortWhenTheTunnelHeldTheLastReference) {
  Listener listener;
  auto call = NewCall("e1", 1000, &listener);
  ExecuteCall* raw = call.get();  // what a TargetRun keeps
  host_->Route(std::move(call));
  raw->Abort();
  EXPECT_EQ(listener.AwaitDone().code(), absl::StatusCode::kCancelled);
}

// A dropped call's events may have gone up the tunnel already (its exit
// too): the periphery is told, so it reports the result with its output
// tails instead of taking it as delivered.
TEST_F(TunnelCallTest, AbortTellsThePeripheryItsEventsWereDropped) {
  Listener listener;
  auto call = NewCall("e1", 1000, &listener);
  ASSERT_TRUE(call->Accept(Output(10)).ok());
  call->Abort();
  EXPECT_EQ(listener.AwaitDone().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(host_->detached(), std::vector<std::string>{"e1"});
}

TEST_F(TunnelCallTest, EventsArriveInOrderAndExitedEndsTheCall) {
  Listener listener;
  auto call = NewCall("e1", 0, &listener);  // no window: no credit
  ExecuteEvent started;
  started.mutable_started()->set_pid(7);
  ASSERT_TRUE(call->Accept(started).ok());
  ASSERT_TRUE(call->Accept(Output(10 * 1000 * 1000)).ok());
  ASSERT_TRUE(call->Accept(Exited()).ok());
  // After the end, nothing more reaches the listener.
  ASSERT_TRUE(call->Accept(Output(5)).ok());
  EXPECT_TRUE(listener.AwaitDone().ok());
  EXPECT_EQ(listener.events(), 3);
  EXPECT_EQ(host_->credit("e1"), 0u);
}

}  // namespace
}  // namespace varan::core
