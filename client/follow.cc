// CoreClient's following of a job across broken streams: FollowJob,
// ExecAndFollow, and the bookkeeping that keeps their output continuous
// (client/core_client.h says what a caller gets).
#include <algorithm>
#include <utility>

#include "client/core_client.h"
#include "common/output_stream.h"

namespace varan::client {
namespace {

using varan::v1::JobEvent;

}  // namespace

CoreClient::EventCallback CoreClient::Track(FollowCursor* cursor,
                                            const EventCallback& on_event) {
  return [this, cursor, &on_event](const JobEvent& event) {
    if (cursor->job_id.empty()) cursor->job_id = event.job_id();
    cursor->next_sequence = event.sequence() + 1;
    cursor->received = true;
    if (event.has_job_finished()) cursor->finished = true;
    if (event.has_output() && !event.output().data().empty()) {
      const varan::v1::OutputChunk& out = event.output();
      const size_t stream = StreamIndex(out.stream());
      const uint64_t end = out.offset() + out.data().size();
      uint64_t& next = cursor->next_offset[{event.target(), stream}];
      // A watch after a broken stream starts where core's stored log is,
      // which may be before what this cursor already delivered.
      if (end <= next) return;
      if (out.offset() < next) {
        JobEvent rest = event;
        rest.mutable_output()->set_offset(next);
        rest.mutable_output()->mutable_data()->erase(0, next - out.offset());
        next = end;
        on_event(rest);
        return;
      }
      // Core restarted meanwhile, or replays a stored log: output events
      // are gone from its log, the bytes themselves may be stored.
      if (out.offset() > next && cursor->read_back && cursor->offsets_known) {
        ReadBack(cursor, event.target(), stream, out.offset(), event.sequence(),
                 on_event);
      }
      next = end;
    } else if (event.has_output_gap()) {
      if (event.output_gap().missed().empty()) cursor->read_back = true;
      for (const auto& m : event.output_gap().missed()) {
        uint64_t& next =
            cursor->next_offset[{m.target(), StreamIndex(m.stream())}];
        next = std::max(next, m.offset() + m.bytes());
      }
    } else if (event.has_finished() && cursor->read_back &&
               cursor->offsets_known) {
      // Whatever the target wrote after the last byte delivered, read back
      // before the event that says it ended.
      for (size_t stream : {0, 1}) {
        ReadBack(cursor, event.target(), stream, kToTheEnd, event.sequence(),
                 on_event);
      }
    }
    on_event(event);
  };
}

void CoreClient::ReadBack(FollowCursor* cursor, const std::string& target,
                          size_t stream, uint64_t end, uint64_t sequence,
                          const EventCallback& on_event) {
  uint64_t& next = cursor->next_offset[{target, stream}];
  if (next >= end) return;
  auto event = [&](const std::string& event_target) {
    JobEvent e;
    e.set_sequence(sequence);
    e.set_job_id(cursor->job_id);
    e.set_target(event_target);
    return e;
  };
  auto missed = [&](uint64_t to) {
    if (to <= next) return;
    JobEvent e = event("");
    e.mutable_output_gap()->set_first_sequence(sequence);
    varan::v1::MissedOutput* m = e.mutable_output_gap()->add_missed();
    m->set_target(target);
    m->set_stream(StreamOf(stream));
    m->set_offset(next);
    m->set_bytes(to - next);
    next = to;
    on_event(e);
  };
  varan::v1::ReadOutputRequest request;
  request.set_job_id(cursor->job_id);
  request.set_target(target);
  request.set_stream(StreamOf(stream));
  request.set_offset(next);
  // To the end: the target is final, so the read ends once all that is
  // stored was sent.
  request.set_follow(end == kToTheEnd);
  uint64_t total = 0;
  // An error leaves what was not read as missed.
  ReadOutput(request, [&](const varan::v1::OutputPiece& piece) {
    total = std::max(total, piece.total_bytes());
    if (next >= end) return;
    missed(std::min(piece.offset(), end));
    const uint64_t from = std::max(next, piece.offset());
    const uint64_t to = std::min(piece.offset() + piece.data().size(), end);
    if (from >= to) return;
    JobEvent e = event(target);
    e.mutable_output()->set_stream(StreamOf(stream));
    e.mutable_output()->set_offset(from);
    e.mutable_output()->set_data(
        piece.data().substr(from - piece.offset(), to - from));
    next = to;
    on_event(e);
  }).IgnoreError();
  missed(end == kToTheEnd ? total : end);
}

absl::Status CoreClient::Resume(FollowCursor* cursor, absl::Status status,
                                const EventCallback& on_event,
                                const FollowOptions& options) {
  const absl::Time give_up = options.clock->Now() + options.patience;
  absl::Duration backoff = options.backoff;
  int attempts = 0;
  const EventCallback track = Track(cursor, on_event);
  while (!cursor->finished) {
    // Only a broken connection is worth waiting for; core's answers (not
    // found, refused) are final.
    if (!status.ok() && !absl::IsUnavailable(status) &&
        !absl::IsDeadlineExceeded(status) && !absl::IsCancelled(status) &&
        !absl::IsInternal(status) && !absl::IsUnknown(status)) {
      return status;
    }
    if (!cursor->received || options.clock->Now() >= give_up ||
        (options.max_attempts > 0 && attempts >= options.max_attempts)) {
      return status.ok() ? absl::UnavailableError(kStreamEndedEarly) : status;
    }
    if (attempts == 0 && options.on_resume) {
      options.on_resume(cursor->job_id, cursor->next_sequence);
    }
    if (options.sleep) {
      options.sleep(backoff);
    } else {
      AwaitConnection(backoff);
    }
    backoff = std::min(backoff * 2, options.max_backoff);
    ++attempts;
    cursor->read_back = true;
    status = WatchJob(cursor->job_id, cursor->next_sequence, track);
  }
  return absl::OkStatus();
}

absl::Status CoreClient::FollowJob(const std::string& job_id,
                                   uint64_t from_sequence,
                                   const EventCallback& on_event,
                                   const FollowOptions& options) {
  FollowCursor cursor;
  cursor.job_id = job_id;
  cursor.next_sequence = from_sequence;
  cursor.offsets_known = from_sequence == 0;
  absl::Status status =
      WatchJob(job_id, from_sequence, Track(&cursor, on_event));
  return Resume(&cursor, std::move(status), on_event, options);
}

absl::Status CoreClient::ExecAndFollow(
    const varan::v1::DispatchRequest& request, const EventCallback& on_event,
    const FollowOptions& options) {
  FollowCursor cursor;
  absl::Status status = Exec(request, Track(&cursor, on_event));
  return Resume(&cursor, std::move(status), on_event, options);
}

}  // namespace varan::client
