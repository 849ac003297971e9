// What the Jobs service answers about a job's output, kept apart from the
// gRPC edge (jobs_service.cc): GetJob's answer (target paging, OutputInfo
// sizes and previews), ListJobs' bounds, and ReadOutput's stream (one
// self-deleting write reactor per call).
//
// Sizes of a stream come from the job record when the job fills
// JobTarget.stdout_info/stderr_info (a live job's counters), and from
// Store::OutputExtents otherwise; previews and ReadOutput's pieces are always
// read from the Store. No answer built here reaches 1 MiB serialized
// (kAnswerBytes), far below gRPC's 4 MiB limit.
//
// Ownership: functions borrow their arguments; an OutputReader keeps the
// Job it follows alive and borrows the Store, the Dispatcher and the
// BlockingWork, which must outlive the grpc::Server. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/jobs/dispatcher.h"
#include "core/server/blocking_work.h"
#include "core/store/store.h"
#include "grpcpp/alarm.h"
#include "grpcpp/grpcpp.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

// GetJob: at most this many targets per answer.
inline constexpr uint32_t kGetJobTargets = 1000;
// ListJobs: at most this many targets per job.
inline constexpr int kListJobTargets = 100;
// GetJob.preview_bytes at most.
inline constexpr uint32_t kMaxPreviewBytes = 65536;
// Previews of one GetJob answer share this many bytes.
inline constexpr uint64_t kPreviewBudget = 1 << 20;
// A ListJobs page ends once it reaches this size; ReadOutput pieces stay
// below it.
inline constexpr size_t kAnswerBytes = 1 << 20;
// Data bytes of one ReadOutput piece (leaves room for its other fields).
inline constexpr uint64_t kPieceBytes = kAnswerBytes - 1024;

// GetJob's answer from the job's record `record` (all of its targets, in
// name order): the targets from request.target_offset (at most
// kGetJobTargets), target_count set, deprecated stdout/stderr cleared, and
// OutputInfo for each stream (sizes from the record when it has them, else
// from the store; previews read from the store when preview_bytes > 0).
// INVALID_ARGUMENT naming preview_bytes when it is over kMaxPreviewBytes.
absl::StatusOr<varan::v1::Job> GetJobAnswer(
    varan::v1::Job record, const varan::v1::GetJobRequest& request,
    Store* store);

// Bounds a ListJobs answer: each job keeps at most kListJobTargets targets
// (target_count set) without output; the page ends before the job that
// would make it reach kAnswerBytes (it keeps at least one job), and then
// next_page_token continues after the last job kept.
void BoundListJobs(varan::v1::ListJobsResponse* response);

// What one follower of a job's events (a WatchJob stream) has received of
// each target's streams. An output_gap record is merged over a run of
// evicted sequences, some of which this follower may have received before
// they were evicted; Trim cuts it down to what the follower really missed,
// so that what it got plus what the gaps name is each stream, once.
// Not thread-safe (one per follower).
class FollowerOffsets {
 public:
  // Call with each event before it is written; `next` is the follower's
  // next sequence (it has every event before it). Trims an output_gap
  // event in place and records how far each stream got.
  void Trim(uint64_t next, varan::v1::JobEvent& event);

 private:
  std::map<std::pair<std::string, int>, uint64_t> end_;
};

// Streams the stored output of one target's stream (Jobs.ReadOutput).
// `job` may be null when the caller found no live job (it is then final
// and its output stored). Deletes itself in OnDone.
class OutputReader final
    : public grpc::ServerWriteReactor<varan::v1::OutputPiece> {
 public:
  // `error` not OK: finishes with it at once.
  static OutputReader* Create(const grpc::Status& error);
  // Validates the request against the job and starts streaming.
  static OutputReader* Create(std::shared_ptr<Job> job,
                              const Dispatcher* dispatcher, Store* store,
                              const varan::v1::ReadOutputRequest& request);
  // Looks the job up (Dispatcher::Find: a finished job is read back from
  // the store), validates the request and streams, all of it on `work`'s
  // threads: every read of the store happens there, none on gRPC's.
  static OutputReader* Create(const Dispatcher* dispatcher, Store* store,
                              BlockingWork* work,
                              const varan::v1::ReadOutputRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  OutputReader(std::shared_ptr<Job> job, const Dispatcher* dispatcher,
               Store* store, BlockingWork* work, OutputKey key, uint64_t offset,
               bool follow);
  // Who calls Pump: a reaction or Create, the alarm's callback, or a
  // thread of work_.
  enum class Via { kDirect, kAlarm, kQueue };
  enum class Action { kNothing, kRead, kWrite, kFinish, kDelete, kQueue };
  // Writes the next stored piece, or finishes, or waits (an alarm), or
  // (with work_, off its threads) goes on on one of them. The store is read
  // without holding mu_.
  void Pump(Via via);
  // Pump's first decision, under mu_: kRead (from `*from`), kQueue,
  // kDelete or kNothing.
  Action Step(Via via, uint64_t* from) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the read gives, under mu_: kWrite, kFinish (with `*status`),
  // kDelete or kNothing (waiting: an alarm is set).
  Action Apply(bool complete, absl::StatusOr<StoredOutput> read,
               grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // On work_'s thread: finds the job and checks the request (Create).
  void Open(const varan::v1::ReadOutputRequest& request);
  // The stream will grow no more: its target is final and every append of
  // it is committed (reads the store).
  bool Complete() const;
  void FinishOnce(const grpc::Status& status);

  // Set before the first read (by Open, with work_), constant after.
  std::shared_ptr<Job> job_;
  const Dispatcher* const dispatcher_;
  Store* const store_;
  // Null: the store is read in reactions.
  BlockingWork* const work_;
  const OutputKey key_;
  const bool follow_;

  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // An alarm is set; its callback has not run yet.
  bool alarm_pending_ ABSL_GUARDED_BY(mu_) = false;
  // A Pump is queued on work_ and has not run yet.
  bool queued_ ABSL_GUARDED_BY(mu_) = false;
  // A Pump reads the store (without mu_).
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  // OnDone ran: the alarm callback deletes this.
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Alarm alarm_;
  varan::v1::OutputPiece piece_;
};

}  // namespace varan::core
