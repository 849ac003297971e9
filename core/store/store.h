// Store: what core keeps across restarts — peripheries (with credentials and
// operator label changes), operator and join tokens (as hashes), and jobs
// (the record as dispatched, its event log, and its final summary).
//
// Writes are asynchronous: they are queued and committed by one writer in
// order, many to a transaction (group commit), so the request path never
// waits for the disk row by row. Where a caller must know a write is durable
// (a job is committed before it is sent anywhere), it passes a callback that
// runs after the commit. Reads see committed writes only; Sync() waits for
// everything queued before it.
//
// Retention (jobs older than max_age or beyond max_jobs, finished ones only)
// is applied by the store itself, in small batches between writes.
//
// Implementations are thread-safe. Callbacks run on one store thread, in
// commit order, with no store lock held; they must not block and must not
// call Sync().
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

// One periphery as stored.
struct StoredPeriphery {
  // Identity, labels (effective), address, facts, stats, version,
  // connection, first/last seen, peer address. `state` is ONLINE or OFFLINE
  // as of the write, or REMOVED.
  varan::v1::Periphery info;
  // The credential core issued; empty once removed.
  std::string credential;
  // The operator's label changes (UpdateLabels), re-applied over the labels
  // the periphery reports when it registers again.
  varan::v1::UpdateLabelsRequest label_overrides;
  // A heartbeat confirmed the latest registration.
  bool confirmed = false;
};

// An operator token as stored: its record (the state field is not kept:
// it is derived from the times) and the SHA-256 of its secret, hex. The
// secret itself is never stored.
struct StoredToken {
  varan::v1::Token info;
  std::string hash;
};

// A join token as stored, likewise.
struct StoredJoinToken {
  varan::v1::JoinToken info;
  std::string hash;
};

// One job as stored: the record written at dispatch (targets queued, no
// output) — or, once finished, its final summary — and every event.
struct StoredJob {
  varan::v1::Job record;
  // Ordered by sequence, without gaps.
  std::vector<varan::v1::JobEvent> events;
};

struct JobQuery {
  size_t limit = 50;
  // Only jobs whose id sorts before this one (ids are time-ordered, so this
  // continues a newest-first listing). Empty: from the newest.
  std::string before_id;
  std::vector<varan::v1::JobState> states;   // empty: any
  std::string created_by;                    // empty: anyone
  std::string periphery;                     // a target name; empty: any
  std::optional<absl::Time> created_after;   // inclusive
  std::optional<absl::Time> created_before;  // exclusive
};

struct JobPage {
  // Newest first. Each is the stored record (the final summary for
  // finished jobs), without output.
  std::vector<varan::v1::Job> jobs;
  // True when more jobs match after the last one.
  bool more = false;
};

struct RetentionOptions {
  // Finished jobs created longer ago than this are deleted. Zero: keep.
  absl::Duration max_age = absl::ZeroDuration();
  // Beyond this many jobs, the oldest finished ones are deleted. Zero: keep.
  uint64_t max_jobs = 0;
  // How often retention runs.
  absl::Duration interval = absl::Minutes(1);
};

using CommitCallback = std::function<void(const absl::Status&)>;

class Store {
 public:
  virtual ~Store() = default;

  // --- Peripheries -------------------------------------------------------
  // Every stored periphery, removed ones included.
  virtual absl::StatusOr<std::vector<StoredPeriphery>> LoadPeripheries() = 0;
  // Inserts or replaces the periphery with `p.info.id()`. Asynchronous.
  virtual void SavePeriphery(const StoredPeriphery& p) = 0;

  // --- Tokens ------------------------------------------------------------
  // Every stored operator token / join token, revoked ones included,
  // ordered by id.
  virtual absl::StatusOr<std::vector<StoredToken>> LoadTokens() = 0;
  virtual absl::StatusOr<std::vector<StoredJoinToken>> LoadJoinTokens() = 0;
  // Inserts or replaces the token with `t.info.id()`. `done` (may be empty)
  // runs after the commit with its status.
  virtual void SaveToken(const StoredToken& t, CommitCallback done) = 0;
  virtual void SaveJoinToken(const StoredJoinToken& t, CommitCallback done) = 0;

  // --- Jobs --------------------------------------------------------------
  // Inserts a new job: `record` as dispatched (targets queued, no output).
  // `done` (may be empty) runs after the commit with its status.
  virtual void CreateJob(const varan::v1::Job& record, CommitCallback done) = 0;
  // Appends events of one job, in sequence order. Asynchronous; the events
  // are serialized before it returns, so the caller keeps them (a job's
  // event log hands them over without a copy).
  virtual void AppendEvents(
      const std::string& job_id,
      absl::Span<const varan::v1::JobEvent* const> events) = 0;
  // The same for events at hand by value.
  void AppendEvents(const std::string& job_id,
                    const std::vector<varan::v1::JobEvent>& events) {
    std::vector<const varan::v1::JobEvent*> refs;
    refs.reserve(events.size());
    for (const auto& e : events) refs.push_back(&e);
    AppendEvents(job_id, refs);
  }
  // Replaces the job's record with its final summary (state, finish time,
  // targets' states and exit statuses; no output). `done` (may be empty)
  // runs after the commit.
  virtual void FinishJob(const varan::v1::Job& record, CommitCallback done) = 0;

  // The job and all its events. NOT_FOUND (naming the id) if there is none.
  virtual absl::StatusOr<StoredJob> LoadJob(const std::string& id) = 0;
  // Every job whose stored state is still RUNNING, oldest first.
  virtual absl::StatusOr<std::vector<StoredJob>> LoadUnfinishedJobs() = 0;
  // Jobs matching `query`, newest first.
  virtual absl::StatusOr<JobPage> ListJobs(const JobQuery& query) = 0;

  // Waits until every write queued before the call is committed. Returns the
  // first commit error since the previous Sync, if any.
  virtual absl::Status Sync() = 0;
};

}  // namespace varan::core
