// What a QueuedStore's callers hand its writer thread
// (core/store/queued_store.h): one struct per write, each holding its rows
// serialized already, and the Sync and PruneNow markers; `Op` is their closed
// set. They are the same for every backend that queues its writes (SQLite,
// PostgreSQL); each backend executes them with its own statements. Every
// dispatch over an Op is a std::visit with one overload per alternative and
// no generic one, so a new op that is not handled everywhere does not
// compile.
//
// Ops are moved from the caller's thread to the writer thread through the
// store's queue; each belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "core/store/store.h"

namespace varan::core::queued {

// The kind column of the tokens table.
constexpr int64_t kOperatorTokenKind = 1;
constexpr int64_t kJoinTokenKind = 2;

// Where a caller of Sync or PruneNow waits for the writer.
struct Waiter {
  absl::Notification done;
  absl::Status status;
  uint64_t pruned = 0;
};

struct PeripheryOp {
  std::string id;
  std::string name;
  int64_t state = 0;
  std::string info;
  std::string credential;
  std::string label_overrides;
  bool confirmed = false;
};

struct TokenOp {
  int64_t kind = 0;
  std::string id;
  std::string name;
  std::string hash;
  std::string info;
  CommitCallback done;
};

// One UseJoinToken. The writer reads the stored token, applies `use`
// (ApplyJoinUseOp) and writes it back in the batch's transaction, leaving
// what it did in `*result` (never null) for `done`.
struct JoinUseOp {
  std::string id;
  JoinUse use = JoinUse::kTake;
  std::shared_ptr<JoinUses> result;
  CommitCallback done;
};

struct CreateJobOp {
  std::string id;
  int64_t create_time = 0;
  int64_t state = 0;
  std::string created_by;
  std::string record;
  std::vector<std::string> targets;
  CommitCallback done;
};

struct EventsOp {
  std::string job_id;
  std::vector<std::pair<int64_t, std::string>> events;  // sequence, event
};

struct FinishJobOp {
  std::string id;
  int64_t state = 0;
  std::string record;
  CommitCallback done;
};

// One AppendOutput; `data` is the caller's bytes, copied.
struct OutputOp {
  OutputKey key;
  uint64_t offset = 0;
  std::string data;
  OutputRetention retention;
  CommitCallback done;
};

// Markers: they write nothing.
struct SyncOp {
  Waiter* waiter;
};
struct PruneOp {
  Waiter* waiter;
};

using Op = std::variant<PeripheryOp, TokenOp, JoinUseOp, CreateJobOp, EventsOp,
                        FinishJobOp, OutputOp, SyncOp, PruneOp>;

// Where a retention run is; owned by the writer thread. A backend's
// PruneStep deletes by age first (until `age_done`), then by count.
struct PruneRun {
  bool age_done = false;
  bool counted = false;
  int64_t excess = 0;
  uint64_t by_age = 0;
  uint64_t by_count = 0;
  std::vector<Waiter*> waiters;
};

// For std::visit: one lambda per alternative.
template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

// False for the markers.
bool IsWrite(const Op& op);

// For a TokenOp of a join token that is stored already: `op.info` with the
// stored token's use count (`stored`: the stored info column), which only
// JoinUseOp changes. INTERNAL naming the token when either does not parse.
absl::StatusOr<std::string> WithStoredUses(const TokenOp& op,
                                           const std::string& stored);
// Applies `op` to the stored token (`stored`: its info column) and fills
// in `*op.result`; returns the info to write back, or nullopt when nothing
// changes. INTERNAL naming the token when `stored` does not parse.
absl::StatusOr<std::optional<std::string>> ApplyJoinUseOp(
    const JoinUseOp& op, const std::string& stored);

// The op's commit callback (may be empty), or null for an op that has none.
CommitCallback* DoneOf(Op& op);

}  // namespace varan::core::queued
