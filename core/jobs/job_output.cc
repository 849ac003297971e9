// Job, output: OutputChunk offsets checked per target and stream, the live
// window of output events and its eviction into output_gap records, the
// pacing watcher and producers waiting for room, and what is stored of each
// stream (Store::AppendOutput). The class and its contract are in job.h.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/output_stream.h"
#include "core/jobs/job.h"

namespace varan::core {

using varan::v1::JobEvent;

namespace {

// Buffered bytes of a stream's head that start an append at once.
constexpr uint64_t kFlushBytes = 256 << 10;
// How often a stream's buffered bytes are stored otherwise (the tail's only
// trigger while the stream runs).
constexpr absl::Duration kFlushInterval = absl::Seconds(1);
// Offsets at or past this are refused: no stream gets near it.
constexpr uint64_t kAbsurdOffset = uint64_t{1} << 62;
constexpr uint64_t kNoPacer = ~uint64_t{0};

}  // namespace

void Job::OutputLocked(size_t target, varan::v1::OutputChunk& chunk,
                       bool exact_offset) {
  const size_t s = StreamIndex(chunk.stream());
  Stream& st = streams_[target][s];
  const std::string& name = record_.targets(static_cast<int>(target)).name();
  uint64_t offset = chunk.offset();
  const uint64_t size = chunk.data().size();
  if (!exact_offset && offset == 0 && st.end > 0 && chunk.sequence() > 0) {
    // A periphery that does not set offsets: chunks are contiguous.
    offset = st.end;
  }
  const absl::Time now = clock_->Now();
  const bool may_log = now - last_offset_log_ >= absl::Seconds(1);
  const std::string where = absl::StrCat("execution ", id_, "/", name,
                                         s == 1 ? " stderr" : " stdout");
  if (offset >= kAbsurdOffset || size >= kAbsurdOffset - offset) {
    if (may_log) {
      last_offset_log_ = now;
      spdlog::warn("{}: output at offset {} refused (absurd offset)", where,
                   offset);
    }
    return;
  }
  if (offset + size <= st.end) {
    if (size > 0 && may_log) {
      last_offset_log_ = now;
      spdlog::info("{}: duplicate output [{}, {}) dropped", where, offset,
                   offset + size);
    }
    return;
  }
  if (offset < st.end) {
    if (may_log) {
      last_offset_log_ = now;
      spdlog::info("{}: output overlapping [{}, {}) trimmed", where, offset,
                   st.end);
    }
    chunk.mutable_data()->erase(0, st.end - offset);
    offset = st.end;
  } else if (offset > st.end) {
    if (may_log) {
      last_offset_log_ = now;
      spdlog::warn("{}: output [{}, {}) never arrived", where, st.end, offset);
    }
    st.missed += offset - st.end;
  }
  st.end = offset + chunk.data().size();
  chunk.set_offset(offset);
  BufferLocked(target, s, offset, chunk.data());
  JobEvent ev;
  ev.set_target(name);
  ev.mutable_output()->Swap(&chunk);  // the data is taken, not copied
  EmitLocked(std::move(ev));
  EvictLocked();
}

void Job::BufferLocked(size_t target, size_t s, uint64_t offset,
                       std::string_view data) {
  Stream& st = streams_[target][s];
  const uint64_t head = limits_.head_bytes;
  const uint64_t end = offset + data.size();
  const OutputKey key{id_, record_.targets(static_cast<int>(target)).name(),
                      StreamOf(s)};
  const OutputRetention retention{limits_.head_bytes, limits_.tail_bytes};
  if (offset < head) {
    const uint64_t head_end = std::min(end, head);
    if (!st.head_buf.empty() && st.head_off + st.head_buf.size() != offset) {
      // Bytes never arrived between: what is buffered goes on its own
      // (rare, so the one-append-in-flight rule gives way).
      if (created_) {
        store_->AppendOutput(key, st.head_off, st.head_buf, retention, {});
      }
      st.head_buf.clear();
    }
    if (st.head_buf.empty()) st.head_off = offset;
    st.head_buf.append(data.substr(0, head_end - offset));
  }
  if (limits_.tail_bytes > 0 && end > head) {
    const uint64_t from = std::max(offset, head);
    // Before a jump: only what ends the stream counts.
    if (st.tail_end != from) st.tail.Clear();
    // What falls out of the ring before a flush is never stored.
    st.tail.Append(data.substr(from - offset));
    st.tail_end = end;
  }
  FlushLocked(target, s, /*force=*/false);
  NoteStreamsLocked(target);
}

void Job::NoteStreamsLocked(size_t target) {
  bool buffered = false, storing = false;
  for (const Stream& st : streams_[target]) {
    buffered |= !st.head_buf.empty() || !st.tail.empty();
    storing |= st.in_flight;
  }
  if (buffered) {
    buffered_.insert(target);
  } else {
    buffered_.erase(target);
  }
  if (buffered || storing) {
    storing_.insert(target);
  } else {
    storing_.erase(target);
  }
}

void Job::FlushLocked(size_t target, size_t s, bool force) {
  Stream& st = streams_[target][s];
  // A forced flush (the target is final) does not wait for the append in
  // flight: the store commits writes in call order anyway.
  if (!created_ || (st.in_flight && !force)) return;
  const absl::Time now = clock_->Now();
  const bool due = force || now - st.last_flush >= kFlushInterval;
  const bool head =
      !st.head_buf.empty() && (due || st.head_buf.size() >= kFlushBytes);
  const bool tail = !st.tail.empty() && due;
  if (!head && !tail) return;
  st.in_flight = true;
  if (due) st.last_flush = now;
  const OutputKey key{id_, record_.targets(static_cast<int>(target)).name(),
                      StreamOf(s)};
  const OutputRetention retention{limits_.head_bytes, limits_.tail_bytes};
  CommitCallback done = [alive = alive_, target,
                         s](const absl::Status& status) {
    absl::MutexLock lock(&alive->mu);
    if (alive->job == nullptr) return;  // the job is gone
    if (!status.ok()) {
      spdlog::error("job {}: storing output failed: {}", alive->job->id_,
                    status.ToString());
    }
    alive->job->OutputCommitted(target, s);
  };
  // The store copies the bytes before it returns.
  if (head) {
    store_->AppendOutput(key, st.head_off, st.head_buf, retention,
                         tail ? nullptr : std::move(done));
    st.head_off += st.head_buf.size();
    st.head_buf.clear();
  }
  if (tail) {
    const uint64_t size = st.tail.size();
    store_->AppendOutput(key, st.tail_end - size, st.tail.Take(), retention,
                         std::move(done));
  }
  NoteStreamsLocked(target);
}

Job::~Job() {
  absl::MutexLock lock(&alive_->mu);
  alive_->job = nullptr;
}

void Job::OutputCommitted(size_t target, size_t s) {
  std::vector<std::function<void()>> stored;
  {
    absl::MutexLock lock(&mu_);
    streams_[target][s].in_flight = false;
    FlushLocked(target, s, /*force=*/FinalLocked(target));
    NoteStreamsLocked(target);
    // The final record waits for the output.
    PersistLocked();
    if (!output_stored_waiters_.empty() && FinalOutputStoredLocked()) {
      stored.swap(output_stored_waiters_);
    }
  }
  for (auto& done : stored) done();
}

void Job::FlushOutput() {
  absl::MutexLock lock(&mu_);
  // Copied: a flush takes the target out of buffered_.
  const std::vector<size_t> buffered(buffered_.begin(), buffered_.end());
  for (size_t t : buffered) {
    FlushLocked(t, 0, /*force=*/false);
    FlushLocked(t, 1, /*force=*/false);
  }
}

bool Job::OutputIdleLocked() const { return buffered_.empty(); }

bool Job::FinalOutputStoredLocked() const {
  for (size_t t : storing_) {
    if (FinalLocked(t)) return false;
  }
  return true;
}

void Job::WhenFinalOutputStored(std::function<void()> done) {
  {
    absl::MutexLock lock(&mu_);
    if (!FinalOutputStoredLocked()) {
      // Only OutputCommitted ends an append in flight, and buffered output
      // of a final target is already being appended.
      output_stored_waiters_.push_back(std::move(done));
      return;
    }
  }
  done();
}

void Job::EvictLocked() {
  while (window_bytes_ > limits_.live_window_bytes && !window_.empty()) {
    const uint64_t seq = window_.front();
    // The pacer has not written it yet: the producer waits instead.
    if (pacer_ != kNoPacer && seq >= pacer_next_) break;
    window_.pop_front();
    EvictOneLocked(seq);
  }
}

void Job::EvictOneLocked(uint64_t seq) {
  auto it = log_.find(seq);
  if (it == log_.end() || !it->second->has_output()) return;
  const EventPtr event = std::move(it->second);
  log_.erase(it);
  const varan::v1::OutputChunk& chunk = event->output();
  window_bytes_ -= chunk.data().size();
  std::shared_ptr<JobEvent> gap;
  auto prev = seq > 0 ? log_.find(seq - 1) : log_.end();
  if (prev != log_.end() && prev->second->has_output_gap()) {
    // Merged into the gap just before. Nobody but the log holds it: it is
    // changed in place; otherwise a reader has it, and it is copied.
    if (prev->second.use_count() == 1) {
      gap = std::const_pointer_cast<JobEvent>(std::move(prev->second));
    } else {
      gap = std::make_shared<JobEvent>(*prev->second);
    }
    log_.erase(prev);
  } else {
    gap = std::make_shared<JobEvent>();
    gap->set_job_id(id_);
    gap->mutable_output_gap()->set_first_sequence(seq);
  }
  gap->set_sequence(seq);
  *gap->mutable_time() = event->time();
  auto* missed = gap->mutable_output_gap()->mutable_missed();
  if (!missed->empty()) {
    varan::v1::MissedOutput& last = *missed->rbegin();
    if (last.target() == event->target() && last.stream() == chunk.stream() &&
        last.offset() + last.bytes() == chunk.offset()) {
      last.set_bytes(last.bytes() + chunk.data().size());
      log_[seq] = std::move(gap);
      return;
    }
  }
  varan::v1::MissedOutput* m = missed->Add();
  m->set_target(event->target());
  m->set_stream(chunk.stream());
  m->set_offset(chunk.offset());
  m->set_bytes(chunk.data().size());
  log_[seq] = std::move(gap);
}

void Job::AppendGapLocked(uint64_t first, uint64_t last) {
  auto gap = std::make_shared<JobEvent>();
  gap->set_job_id(id_);
  gap->set_sequence(last);
  gap->mutable_output_gap()->set_first_sequence(first);
  log_[last] = std::move(gap);
}

bool Job::RoomLocked() const {
  return released_ || pacer_ == kNoPacer || record_.has_cancel_time() ||
         record_.state() != varan::v1::JOB_STATE_RUNNING ||
         window_bytes_ <= limits_.live_window_bytes;
}

void Job::WakeProducers() {
  std::vector<std::function<void()>> run;
  {
    absl::MutexLock lock(&mu_);
    if (on_room_.empty() || !RoomLocked()) return;
    run.swap(on_room_);
  }
  for (auto& callback : run) callback();
}

void Job::Consumed(uint64_t handle, uint64_t next_seq) {
  {
    absl::MutexLock lock(&mu_);
    if (handle != pacer_) return;
    pacer_next_ = std::max(pacer_next_, next_seq);
    EvictLocked();
  }
  WakeProducers();
}

void Job::ReleaseProducers() {
  {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  WakeProducers();
}

uint64_t Job::OmittedLocked(size_t target, size_t s) const {
  varan::v1::OutputInfo info;
  FillInfoLocked(target, s, &info);
  return info.omitted_bytes();
}

void Job::FillInfoLocked(size_t target, size_t s,
                         varan::v1::OutputInfo* info) const {
  const Stream& st = streams_[target][s];
  const uint64_t total = st.end;
  const uint64_t head_end = std::min(total, limits_.head_bytes);
  const uint64_t tail_start = std::max(
      total > limits_.tail_bytes ? total - limits_.tail_bytes : 0, head_end);
  info->set_total_bytes(total);
  info->set_head_end(head_end);
  info->set_tail_start(tail_start);
  info->set_omitted_bytes(tail_start - head_end + st.missed);
}

}  // namespace varan::core
