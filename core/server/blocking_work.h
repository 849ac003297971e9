// BlockingWork: threads of core's own for the part of a call that may
// wait — a store read, the wait for a commit, a database round trip —
// so that gRPC's callback threads never do.
//
// gRPC runs every reaction of every call (unary handlers, stream reads and
// writes, heartbeats, tunnels) on a few callback threads of its own: two
// on a 2-CPU machine. A handler that waits holds one of them, and two
// registrations waiting on a stalled database used to leave core answering
// nothing at all, heartbeats included, until the database came back. A
// handler whose work may wait queues it here and finishes its call from
// the work instead (OperatorBlocking in core/server/operator_call.h,
// RegistryService). The dispatcher reads here the stored jobs that
// heartbeats ask about (StoredJobViews), and heartbeats never wait.
//
// The queue is bounded: past `max_queued` waiting items, Run refuses with
// RESOURCE_EXHAUSTED and a retry-after hint, so a database that does not
// answer costs a bounded amount of memory, and the calls it holds up fail
// fast instead of piling up.
//
// Thread-safe. The destructor runs what is queued, then ends the threads:
// destroy it after the grpc::Server has shut down (every call it holds
// finishes from here) and before what its work uses.
#pragma once

#include <cstddef>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace varan::core {

class BlockingWork {
 public:
  struct Options {
    // Items that run at once: as many calls may wait on the store together.
    int threads = 8;
    // Items that may wait for a thread before Run refuses more.
    size_t max_queued = 1000;
    // The retry-after hint of a refusal.
    absl::Duration retry_after = absl::Seconds(1);
  };

  explicit BlockingWork(Options options);
  BlockingWork() : BlockingWork(Options()) {}
  ~BlockingWork();

  BlockingWork(const BlockingWork&) = delete;
  BlockingWork& operator=(const BlockingWork&) = delete;

  // Queues `work` to run on one of the threads. RESOURCE_EXHAUSTED (with a
  // retry-after hint), and `work` dropped without running, when
  // `max_queued` items already wait or the pool is ending: the caller
  // finishes its call with that status itself.
  absl::Status Run(absl::AnyInvocable<void() &&> work);

  // Items waiting for a thread (not counting those running).
  size_t queued() const;
  // Items running now.
  int running() const;

 private:
  void Loop();

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs `work` on `pool`'s threads, or at once when `pool` is null (a
// service built without one, in tests); calls `refused(status)` instead of
// `work` when the pool refuses it.
template <typename Work, typename Refused>
void RunBlocking(BlockingWork* pool, Work work, Refused refused) {
  if (pool == nullptr) {
    work();
    return;
  }
  if (absl::Status queued = pool->Run(std::move(work)); !queued.ok()) {
    refused(std::move(queued));
  }
}

}  // namespace varan::core
