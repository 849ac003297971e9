#include "core/server/blocking_work.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"

namespace varan::core {

BlockingWork::BlockingWork(Options options) : options_(options) {
  const int n = std::max(1, options_.threads);
  threads_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Loop(); });
}

BlockingWork::~BlockingWork() {
  {
    absl::MutexLock lock(&mu_);
    ending_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

absl::Status BlockingWork::Run(absl::AnyInvocable<void() &&> work) {
  absl::MutexLock lock(&mu_);
  if (ending_) {
    return RetryAfterError("core is shutting down", options_.retry_after);
  }
  if (queue_.size() >= options_.max_queued) {
    return RetryAfterError(
        absl::StrCat("core has ", queue_.size(),
                     " calls waiting for the store already (it answers "
                     "slowly or not at all); try again later"),
        options_.retry_after);
  }
  queue_.push_back(std::move(work));
  return absl::OkStatus();
}

size_t BlockingWork::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

int BlockingWork::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

void BlockingWork::Loop() {
  while (true) {
    absl::AnyInvocable<void() &&> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || ending_;
      };
      mu_.Await(absl::Condition(&ready));
      // What was queued before the end still runs: each item finishes a
      // call, which gRPC's shutdown waits for.
      if (queue_.empty()) return;
      work = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    std::move(work)();
    absl::MutexLock lock(&mu_);
    --running_;
  }
}

}  // namespace varan::core
