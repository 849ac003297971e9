#include "core/server/job_output.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"

namespace varan::core {
namespace {

using varan::v1::JobTarget;
using varan::v1::OutputInfo;
using varan::v1::OutputStream;

// How often a following ReadOutput looks for more stored output.
constexpr absl::Duration kFollowPoll = absl::Milliseconds(100);
// What a stream's previews add besides their bytes: the tags and lengths of
// head and tail, tail_preview_offset, and OutputInfo's own length growing.
constexpr uint64_t kPreviewOverhead = 32;

OutputInfo InfoFromExtent(const OutputExtent& e) {
  OutputInfo info;
  info.set_total_bytes(e.end);
  info.set_head_end(e.head_end);
  info.set_tail_start(e.tail_start);
  info.set_omitted_bytes(e.end - std::min(e.stored, e.end));
  return info;
}

OutputInfo* InfoOf(JobTarget* t, OutputStream stream) {
  return stream == varan::v1::OUTPUT_STREAM_STDOUT ? t->mutable_stdout_info()
                                                   : t->mutable_stderr_info();
}

// Fills the previews of `info` (at most `bytes` in all) from the store.
absl::Status ReadPreview(Store* store, const OutputKey& key, uint64_t bytes,
                         OutputInfo* info) {
  auto all = store->ReadOutput(key, 0, bytes);
  if (!all.ok()) return all.status();
  const OutputExtent& e = all->extent;
  if (e.stored == e.end && e.end <= bytes) {
    for (const auto& p : all->pieces) info->mutable_head()->append(p.data);
    return absl::OkStatus();
  }
  // The head: the stored bytes from 0 that are contiguous, up to bytes / 2.
  const uint64_t head_bytes = bytes / 2;
  uint64_t head_len = 0;
  for (const auto& p : all->pieces) {
    if (p.offset != head_len || head_len >= head_bytes) break;
    const uint64_t n = std::min<uint64_t>(p.data.size(), head_bytes - head_len);
    info->mutable_head()->append(p.data, 0, n);
    head_len += n;
  }
  // The tail: the last contiguous stored run of the last bytes - head_bytes.
  const uint64_t tail_bytes = bytes - head_bytes;
  const uint64_t from = std::max(e.end - std::min(e.end, tail_bytes), head_len);
  if (from >= e.end) return absl::OkStatus();
  auto tail = store->ReadOutput(key, from, tail_bytes);
  if (!tail.ok()) return tail.status();
  if (tail->pieces.empty()) return absl::OkStatus();
  OutputPiece& last = tail->pieces.back();
  info->set_tail_preview_offset(last.offset);
  *info->mutable_tail() = std::move(last.data);
  return absl::OkStatus();
}

}  // namespace

void FollowerOffsets::Trim(uint64_t next, varan::v1::JobEvent& event) {
  if (event.has_output()) {
    const varan::v1::OutputChunk& c = event.output();
    end_[{event.target(), c.stream()}] = c.offset() + c.data().size();
    return;
  }
  if (!event.has_output_gap()) return;
  varan::v1::OutputGap* gap = event.mutable_output_gap();
  gap->set_first_sequence(std::max(gap->first_sequence(), next));
  auto* missed = gap->mutable_missed();
  for (int i = 0; i < missed->size();) {
    varan::v1::MissedOutput& m = (*missed)[i];
    uint64_t& end = end_[{m.target(), m.stream()}];
    const uint64_t stop = m.offset() + m.bytes();
    if (stop <= end) {  // received before it was evicted
      missed->erase(missed->begin() + i);
      continue;
    }
    if (m.offset() < end) {
      m.set_bytes(stop - end);
      m.set_offset(end);
    }
    end = stop;
    ++i;
  }
}

absl::StatusOr<varan::v1::Job> GetJobAnswer(
    varan::v1::Job record, const varan::v1::GetJobRequest& request,
    Store* store) {
  if (request.preview_bytes() > kMaxPreviewBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("preview_bytes ", request.preview_bytes(),
                     " is over the maximum of ", kMaxPreviewBytes));
  }
  const uint32_t count = record.targets_size();
  record.set_target_count(count);
  const uint32_t first = std::min(request.target_offset(), count);
  const uint32_t last = first + std::min(count - first, kGetJobTargets);
  auto* targets = record.mutable_targets();
  targets->DeleteSubrange(static_cast<int>(last), count - last);
  targets->DeleteSubrange(0, static_cast<int>(first));

  // Sizes the record does not carry come from the store's extents.
  std::map<std::pair<std::string, int>, OutputExtent> extents;
  bool need_extents = false;
  for (const JobTarget& t : *targets) {
    need_extents |= !t.has_stdout_info() || !t.has_stderr_info();
  }
  if (need_extents) {
    auto all = store->OutputExtents(record.id());
    if (!all.ok() && !absl::IsNotFound(all.status())) return all.status();
    if (all.ok()) {
      for (auto& [key, extent] : *all) {
        extents[{key.target, key.stream}] = extent;
      }
    }
  }
  for (JobTarget& t : *targets) {
    t.clear_stdout();
    t.clear_stderr();
    for (OutputStream stream :
         {varan::v1::OUTPUT_STREAM_STDOUT, varan::v1::OUTPUT_STREAM_STDERR}) {
      const bool has = stream == varan::v1::OUTPUT_STREAM_STDOUT
                           ? t.has_stdout_info()
                           : t.has_stderr_info();
      OutputInfo* info = InfoOf(&t, stream);
      if (!has) {
        auto it = extents.find({t.name(), stream});
        *info =
            InfoFromExtent(it == extents.end() ? OutputExtent{} : it->second);
      }
      info->clear_head();
      info->clear_tail();
      info->clear_tail_preview_offset();
    }
    t.set_stdout_uncaptured_bytes(t.stdout_info().omitted_bytes());
    t.set_stderr_uncaptured_bytes(t.stderr_info().omitted_bytes());
  }
  if (request.preview_bytes() == 0 || targets->empty()) return record;
  // The previews share what is left of the answer's budget (and at most
  // kPreviewBudget); each preview costs its fields' tags and lengths too.
  const uint64_t streams = 2 * targets->size();
  const uint64_t used = record.ByteSizeLong() + streams * kPreviewOverhead;
  const uint64_t budget =
      std::min(kPreviewBudget, kAnswerBytes - std::min(kAnswerBytes, used));
  const uint64_t preview =
      std::min<uint64_t>(request.preview_bytes(), budget / streams);
  if (preview == 0) return record;
  for (JobTarget& t : *targets) {
    for (OutputStream stream :
         {varan::v1::OUTPUT_STREAM_STDOUT, varan::v1::OUTPUT_STREAM_STDERR}) {
      OutputInfo* info = InfoOf(&t, stream);
      if (info->total_bytes() == 0) continue;
      OutputKey key{record.id(), t.name(), stream};
      if (absl::Status s = ReadPreview(store, key, preview, info); !s.ok()) {
        return s;
      }
    }
  }
  return record;
}

void BoundListJobs(varan::v1::ListJobsResponse* response) {
  size_t size = 0;
  int kept = 0;
  for (varan::v1::Job& job : *response->mutable_jobs()) {
    const int count = job.targets_size();
    if (job.target_count() == 0) job.set_target_count(count);
    if (count > kListJobTargets) {
      job.mutable_targets()->DeleteSubrange(kListJobTargets,
                                            count - kListJobTargets);
    }
    for (JobTarget& t : *job.mutable_targets()) {
      t.clear_stdout();
      t.clear_stderr();
      t.clear_stdout_info();
      t.clear_stderr_info();
    }
    // A repeated field costs its message plus a tag and a length (<= 6).
    const size_t job_size = job.ByteSizeLong() + 6;
    if (kept > 0 && size + job_size + response->next_page_token().size() + 8 >=
                        kAnswerBytes) {
      break;
    }
    size += job_size;
    ++kept;
  }
  const int total = response->jobs_size();
  if (kept < total) {
    response->mutable_jobs()->DeleteSubrange(kept, total - kept);
    response->set_next_page_token(response->jobs(kept - 1).id());
  }
}

// --- OutputReader ----------------------------------------------------------

OutputReader* OutputReader::Create(const grpc::Status& error) {
  auto* r = new OutputReader(nullptr, nullptr, nullptr, nullptr, OutputKey{}, 0,
                             false);
  r->FinishOnce(error);
  return r;
}

namespace {

// ReadOutput's stream must be STDOUT or STDERR.
grpc::Status CheckStream(const varan::v1::ReadOutputRequest& request) {
  if (request.stream() != varan::v1::OUTPUT_STREAM_STDOUT &&
      request.stream() != varan::v1::OUTPUT_STREAM_STDERR) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "stream must be STDOUT or STDERR");
  }
  return grpc::Status::OK;
}

// NOT_FOUND unless `job` has the request's target.
grpc::Status CheckTarget(const Job& job,
                         const varan::v1::ReadOutputRequest& request) {
  if (job.TargetIndex(request.target()) >= 0) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat("job \"", job.id(), "\" has no target \"",
                                   request.target(), "\""));
}

}  // namespace

OutputReader* OutputReader::Create(
    const Dispatcher* dispatcher, Store* store, BlockingWork* work,
    const varan::v1::ReadOutputRequest& request) {
  if (grpc::Status s = CheckStream(request); !s.ok()) return Create(s);
  OutputKey key{request.job_id(), request.target(), request.stream()};
  auto* r = new OutputReader(nullptr, dispatcher, store, work, std::move(key),
                             request.offset(), request.follow());
  {
    absl::MutexLock lock(&r->mu_);
    r->queued_ = true;
  }
  // A copy: the call (and its request) may end before the look-up runs.
  absl::Status queued = work->Run([r, request] { r->Open(request); });
  if (!queued.ok()) {
    {
      absl::MutexLock lock(&r->mu_);
      r->queued_ = false;
    }
    r->FinishOnce(ToGrpcStatus(queued));
  }
  return r;
}

void OutputReader::Open(const varan::v1::ReadOutputRequest& request) {
  bool gone;
  {
    absl::MutexLock lock(&mu_);
    gone = done_;
  }
  if (!gone) {
    auto job = dispatcher_->Find(request.job_id());
    grpc::Status refused =
        job.ok() ? CheckTarget(**job, request) : ToGrpcStatus(job.status());
    if (refused.ok()) {
      job_ = *std::move(job);
    } else {
      FinishOnce(refused);
    }
  }
  Pump(Via::kQueue);
}

OutputReader* OutputReader::Create(
    std::shared_ptr<Job> job, const Dispatcher* dispatcher, Store* store,
    const varan::v1::ReadOutputRequest& request) {
  if (grpc::Status s = CheckStream(request); !s.ok()) return Create(s);
  if (grpc::Status s = CheckTarget(*job, request); !s.ok()) return Create(s);
  OutputKey key{job->id(), request.target(), request.stream()};
  auto* r =
      new OutputReader(std::move(job), dispatcher, store, nullptr,
                       std::move(key), request.offset(), request.follow());
  r->Pump(Via::kDirect);
  return r;
}

OutputReader::OutputReader(std::shared_ptr<Job> job,
                           const Dispatcher* dispatcher, Store* store,
                           BlockingWork* work, OutputKey key, uint64_t offset,
                           bool follow)
    : job_(std::move(job)),
      dispatcher_(dispatcher),
      store_(store),
      work_(work),
      key_(std::move(key)),
      follow_(follow),
      next_(offset) {}

bool OutputReader::Complete() const {
  // A job no longer running in the dispatcher has its final record
  // committed, and with it every output append.
  if (!dispatcher_->Running(key_.job_id)) return true;
  const varan::v1::Job record = job_->Snapshot();
  for (const JobTarget& t : record.targets()) {
    if (t.name() != key_.target) continue;
    if (!IsFinal(t.state())) return false;
    const bool has = key_.stream == varan::v1::OUTPUT_STREAM_STDOUT
                         ? t.has_stdout_info()
                         : t.has_stderr_info();
    if (!has) return false;  // Wait for the final record.
    const uint64_t total = key_.stream == varan::v1::OUTPUT_STREAM_STDOUT
                               ? t.stdout_info().total_bytes()
                               : t.stderr_info().total_bytes();
    auto stored = store_->ReadOutput(key_, 0, 0);
    return stored.ok() && stored->extent.end >= total;
  }
  return true;
}

void OutputReader::Pump(Via via) {
  Action next;
  grpc::Status status;
  uint64_t from = 0;
  {
    absl::MutexLock lock(&mu_);
    next = Step(via, &from);
  }
  if (next == Action::kRead) {
    // Outside mu_: a reaction (OnCancel) never waits for the store.
    // Decided before the read: whatever was stored by then is read now.
    const bool complete = !follow_ || Complete();
    absl::StatusOr<StoredOutput> read =
        store_->ReadOutput(key_, from, kPieceBytes);
    absl::MutexLock lock(&mu_);
    next = Apply(complete, std::move(read), &status);
  }
  switch (next) {
    case Action::kNothing:
    case Action::kRead:  // Apply never asks for another
      return;
    case Action::kWrite:
      StartWrite(&piece_);
      return;
    case Action::kFinish:
      FinishOnce(status);
      return;
    case Action::kDelete:
      delete this;
      return;
    case Action::kQueue: {
      absl::Status queued = work_->Run([this] { Pump(Via::kQueue); });
      if (queued.ok()) return;
      bool destroy;
      {
        absl::MutexLock lock(&mu_);
        queued_ = false;
        destroy = done_ && !alarm_pending_;
      }
      if (destroy) {
        delete this;
      } else {
        FinishOnce(ToGrpcStatus(queued));
      }
      return;
    }
  }
}

OutputReader::Action OutputReader::Step(Via via, uint64_t* from) {
  switch (via) {
    case Via::kDirect:
      break;
    case Via::kAlarm:
      alarm_pending_ = false;
      break;
    case Via::kQueue:
      queued_ = false;
      break;
  }
  // The call ended: the last callback to come deletes this.
  if (done_) {
    return via == Via::kDirect || alarm_pending_ || queued_ || reading_
               ? Action::kNothing
               : Action::kDelete;
  }
  if (writing_ || finished_ || alarm_pending_ || queued_ || reading_) {
    return Action::kNothing;
  }
  // Reads of the store happen on work_'s threads when there are some.
  if (work_ != nullptr && via != Via::kQueue) {
    queued_ = true;
    return Action::kQueue;
  }
  reading_ = true;
  *from = next_;
  return Action::kRead;
}

OutputReader::Action OutputReader::Apply(bool complete,
                                         absl::StatusOr<StoredOutput> read,
                                         grpc::Status* status) {
  reading_ = false;
  if (done_)
    return alarm_pending_ || queued_ ? Action::kNothing : Action::kDelete;
  if (finished_) return Action::kNothing;  // OnDone deletes
  if (!read.ok()) {
    *status = ToGrpcStatus(read.status());
    return Action::kFinish;
  }
  piece_.Clear();
  piece_.set_total_bytes(read->extent.end);
  if (!read->pieces.empty()) {
    OutputPiece& p = read->pieces.front();
    piece_.set_offset(p.offset);
    piece_.set_skipped_bytes(p.offset - std::min(p.offset, next_));
    next_ = std::max(next_, p.offset + p.data.size());
    *piece_.mutable_data() = std::move(p.data);
  } else if (complete && read->extent.end > next_) {
    // Nothing more is stored up to the end: an empty last piece says so.
    piece_.set_offset(read->extent.end);
    piece_.set_skipped_bytes(read->extent.end - next_);
    next_ = read->extent.end;
  } else if (complete) {
    *status = grpc::Status::OK;
    return Action::kFinish;
  } else {
    alarm_pending_ = true;
    alarm_.Set(absl::ToChronoTime(absl::Now() + kFollowPoll),
               [this](bool) { Pump(Via::kAlarm); });
    return Action::kNothing;
  }
  writing_ = true;
  return Action::kWrite;
}

void OutputReader::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
  }
  if (!ok) {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    return;
  }
  Pump(Via::kDirect);
}

void OutputReader::OnCancel() {
  bool idle;
  {
    absl::MutexLock lock(&mu_);
    idle = !writing_;
    if (alarm_pending_) alarm_.Cancel();
  }
  // With a write in flight, OnWriteDone(false) finishes instead.
  if (idle) FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
}

void OutputReader::OnDone() {
  bool destroy;
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    destroy = !alarm_pending_ && !queued_ && !reading_;
    if (alarm_pending_) alarm_.Cancel();
  }
  if (destroy) delete this;
}

void OutputReader::FinishOnce(const grpc::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    if (alarm_pending_) alarm_.Cancel();
  }
  Finish(status);
}

}  // namespace varan::core
