#include "periphery/exec/executor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace varan::periphery {
namespace {

constexpr size_t kReportBudget = 2 * 1024 * 1024;

}  // namespace

Executor::Executor(ExecutorOptions options) : options_(std::move(options)) {}

uint32_t Executor::PruneLocked() {
  const absl::Time now = absl::Now();
  uint32_t running = 0;
  std::vector<std::pair<absl::Time, std::string>> held;
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (!e.execution->finished()) {
      ++running;
      ++it;
      continue;
    }
    if (!e.hold) {
      entries_.erase(it++);
      continue;
    }
    const absl::Time finished = e.execution->outcome().finish_time;
    if (now - finished > options_.hold_for) {
      spdlog::warn(
          "execution {}: dropping its result, held {} without core "
          "acknowledging it",
          it->first, absl::FormatDuration(now - finished));
      entries_.erase(it++);
      continue;
    }
    held.emplace_back(finished, it->first);
    ++it;
  }
  if (held.size() > options_.max_held) {
    std::sort(held.begin(), held.end());
    const size_t drop = held.size() - options_.max_held;
    for (size_t i = 0; i < drop; ++i) {
      spdlog::warn(
          "execution {}: dropping its result, more than {} results wait for "
          "core",
          held[i].second, options_.max_held);
      entries_.erase(held[i].second);
    }
  }
  return running;
}

absl::StatusOr<std::shared_ptr<Execution>> Executor::Start(
    const varan::v1::ExecuteRequest& request) {
  const std::string& id = request.execution_id();
  const bool hold = request.hold_result() && !id.empty();
  {
    absl::MutexLock lock(&mu_);
    if (PruneLocked() >= options_.max_concurrent) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many commands running (", options_.max_concurrent, " allowed)"));
    }
    if (!id.empty() && entries_.contains(id)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "execution \"", id,
          "\" is already running (or its result is held for core)"));
    }
  }
  auto execution = Execution::Start(request.spec(), options_.execution, hold,
                                    request.output_window_bytes());
  if (!execution.ok()) return execution.status();
  absl::MutexLock lock(&mu_);
  std::string key = id;
  if (key.empty()) key = absl::StrCat("\x01anonymous-", anonymous_++);
  Entry& e = entries_[key];
  e.execution = *execution;
  e.hold = hold;
  return *std::move(execution);
}

absl::Status Executor::Cancel(const std::string& id) {
  std::shared_ptr<Execution> execution;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it != entries_.end()) execution = it->second.execution;
  }
  if (execution == nullptr || execution->finished()) {
    return absl::NotFoundError(
        absl::StrCat("no running execution \"", id, "\""));
  }
  execution->Cancel();  // signals only; never blocks
  return absl::OkStatus();
}

void Executor::Dropped(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.attached = false;
  it->second.delivered = false;
}

void Executor::ResendTails(const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  for (const std::string& id : ids) {
    auto it = entries_.find(id);
    if (it != entries_.end()) it->second.delivered = false;
  }
}

void Executor::Detached(const std::string& id, bool delivered) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.attached = false;
  it->second.delivered = it->second.delivered || delivered;
}

std::vector<varan::v1::ExecutionReport> Executor::Report() {
  std::vector<std::pair<std::string, Entry>> held;
  {
    absl::MutexLock lock(&mu_);
    PruneLocked();
    for (const auto& [id, e] : entries_) {
      if (e.hold) held.emplace_back(id, e);
    }
  }
  std::vector<varan::v1::ExecutionReport> out;
  out.reserve(held.size());
  // Results go out oldest first, within a budget per heartbeat (a message
  // must stay well under gRPC's 4 MB limit); the rest look still running
  // until a later heartbeat carries them.
  std::sort(held.begin(), held.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  size_t budget = kReportBudget;
  for (const auto& [id, e] : held) {
    const ExecutionOutcome o = e.execution->outcome();
    varan::v1::ExecutionReport r;
    r.set_execution_id(id);
    if (o.started) *r.mutable_started() = o.started_event;
    const size_t size =
        e.delivered ? 64 : 64 + o.tail[0].size() + o.tail[1].size();
    // A result still being streamed is reported once the stream is done
    // with it, so core never records it twice.
    if (o.finished && !e.attached && size <= budget) {
      budget -= size;
      *r.mutable_exited() = o.exit;
      if (!e.delivered) {
        r.mutable_stdout_tail()->set_offset(o.tail_offset[0]);
        r.mutable_stdout_tail()->set_data(o.tail[0]);
        r.mutable_stderr_tail()->set_offset(o.tail_offset[1]);
        r.mutable_stderr_tail()->set_data(o.tail[1]);
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

void Executor::Acknowledge(const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  for (const auto& id : ids) {
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second.execution->finished()) {
      entries_.erase(it);
    }
  }
}

uint32_t Executor::running() {
  absl::MutexLock lock(&mu_);
  return PruneLocked();
}

void Executor::CancelAll() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, e] : entries_) e.execution->Cancel();
}

void CancelForCore(Executor* executor,
                   const google::protobuf::RepeatedPtrField<std::string>& ids) {
  for (const std::string& id : ids) {
    if (executor->Cancel(id).ok()) {
      spdlog::info(
          "execution {}: canceled: core asked in a heartbeat (its job "
          "was canceled while core could not reach it)",
          id);
    }
  }
}

}  // namespace varan::periphery
