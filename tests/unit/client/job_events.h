// Builders of real JobEvent messages for the client tests: a job's events
// with gap-free sequence numbers and output at consecutive offsets per
// target and stream, as core would stream them. Not thread-safe; one
// JobEvents per test.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "varan/v1/core.pb.h"

namespace varan::testing {

// How a target ended: exited with `code`.
inline varan::v1::TargetFinished Exited(int code) {
  varan::v1::TargetFinished f;
  f.set_state(varan::v1::TARGET_STATE_EXITED);
  f.mutable_exit_status()->set_kind(varan::v1::ExitStatus::KIND_EXITED);
  f.mutable_exit_status()->set_code(code);
  return f;
}

// How a target ended: in `state`, with this exit status kind and error.
inline varan::v1::TargetFinished Ended(
    varan::v1::TargetState state,
    varan::v1::ExitStatus::Kind kind = varan::v1::ExitStatus::KIND_UNSPECIFIED,
    const std::string& error = "") {
  varan::v1::TargetFinished f;
  f.set_state(state);
  f.mutable_exit_status()->set_kind(kind);
  f.set_error(error);
  return f;
}

// Killed by signal `signal`.
inline varan::v1::TargetFinished Signaled(int signal) {
  varan::v1::TargetFinished f = Ended(varan::v1::TARGET_STATE_EXITED,
                                      varan::v1::ExitStatus::KIND_SIGNALED);
  f.mutable_exit_status()->set_signal(signal);
  return f;
}

// A run of `bytes` bytes from `offset` of a target's stream, as an
// output_gap event lists it.
inline varan::v1::MissedOutput Missed(const std::string& target,
                                      varan::v1::OutputStream stream,
                                      uint64_t offset, uint64_t bytes) {
  varan::v1::MissedOutput m;
  m.set_target(target);
  m.set_stream(stream);
  m.set_offset(offset);
  m.set_bytes(bytes);
  return m;
}

class JobEvents {
 public:
  explicit JobEvents(std::string job_id = "job-1")
      : job_id_(std::move(job_id)) {}

  varan::v1::JobEvent Accepted(const std::vector<std::string>& targets) {
    varan::v1::JobEvent e = Next("");
    e.mutable_accepted();  // set even without targets
    for (const auto& t : targets) e.mutable_accepted()->add_targets(t);
    return e;
  }
  varan::v1::JobEvent Started(const std::string& target) {
    varan::v1::JobEvent e = Next(target);
    e.mutable_started()->set_pid(100);
    return e;
  }
  varan::v1::JobEvent Stdout(const std::string& target,
                             const std::string& data) {
    return Output(target, varan::v1::OUTPUT_STREAM_STDOUT, data);
  }
  varan::v1::JobEvent Stderr(const std::string& target,
                             const std::string& data) {
    return Output(target, varan::v1::OUTPUT_STREAM_STDERR, data);
  }
  varan::v1::JobEvent Finished(const std::string& target,
                               const varan::v1::TargetFinished& f) {
    varan::v1::JobEvent e = Next(target);
    *e.mutable_finished() = f;
    return e;
  }
  varan::v1::JobEvent CancelRequested(const std::string& by) {
    varan::v1::JobEvent e = Next("");
    e.mutable_cancel_requested()->set_by(by);
    return e;
  }
  // An output_gap standing for the next `covers` sequences (at least 1):
  // its sequence is the last of them.
  varan::v1::JobEvent Gap(uint64_t covers,
                          const std::vector<varan::v1::MissedOutput>& missed) {
    const uint64_t first = sequence_;
    sequence_ += covers - 1;
    varan::v1::JobEvent e = Next("");
    e.mutable_output_gap()->set_first_sequence(first);
    for (const auto& m : missed) {
      *e.mutable_output_gap()->add_missed() = m;
      uint64_t& next = offsets_[{m.target(), m.stream()}];
      next = std::max(next, m.offset() + m.bytes());
    }
    return e;
  }
  // Output at an explicit `offset` (a repeat or a jump); later output
  // follows the furthest byte.
  varan::v1::JobEvent OutputAt(const std::string& target,
                               varan::v1::OutputStream stream, uint64_t offset,
                               const std::string& data) {
    varan::v1::JobEvent e = Next(target);
    e.mutable_output()->set_stream(stream);
    e.mutable_output()->set_offset(offset);
    e.mutable_output()->set_data(data);
    uint64_t& next = offsets_[{target, stream}];
    next = std::max(next, offset + data.size());
    return e;
  }
  varan::v1::JobEvent JobFinished(varan::v1::JobState state) {
    varan::v1::JobEvent e = Next("");
    e.mutable_job_finished()->set_state(state);
    return e;
  }

 private:
  varan::v1::JobEvent Output(const std::string& target,
                             varan::v1::OutputStream stream,
                             const std::string& data) {
    return OutputAt(target, stream, offsets_[{target, stream}], data);
  }
  varan::v1::JobEvent Next(const std::string& target) {
    varan::v1::JobEvent e;
    e.set_sequence(sequence_++);
    e.set_job_id(job_id_);
    e.set_target(target);
    return e;
  }

  std::string job_id_;
  uint64_t sequence_ = 0;
  // The next output offset per target and stream.
  std::map<std::pair<std::string, varan::v1::OutputStream>, uint64_t> offsets_;
};

}  // namespace varan::testing
