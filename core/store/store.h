// Store: what core keeps across restarts — peripheries (with credentials and
// operator label changes), operator and join tokens (as hashes), and jobs
// (the record as dispatched, its event log, and its final summary).
//
// This header is the contract every backend keeps (SqliteStore,
// MemoryStore; tests/unit/store/store_contract_test.cc checks it against
// each). The rules, for all methods:
//
// Writes (SavePeriphery, SaveToken, SaveJoinToken, CreateJob, AppendEvents,
// FinishJob) are asynchronous: they return before the write is committed.
// They are committed in the order they were called (calls from different
// threads: in the order the store took them), each write all or nothing;
// a write that fails does not undo or stop the writes around it. A backend
// may commit many writes in one transaction (group commit). Arguments are
// copied or serialized before the call returns; the caller keeps them.
//
// Commit callbacks (`done`, may be empty) run exactly once per write, with
// the write's status, after the write is committed (or has failed) — never
// on the caller's thread from inside the write call, never under a store
// lock, and one at a time on a store thread, in commit order. They must not
// block and must not call Sync() or PruneNow() (which then return
// FAILED_PRECONDITION instead of deadlocking); reads are allowed. Once a
// write's callback runs, every read sees it. Writes without a callback are
// visible to reads once a later Sync() returns (a backend may show them
// earlier). Reads never see a write that failed.
//
// Sync() waits until every write called before it is committed and every
// callback of those writes has run, then returns the first write error
// since the previous Sync() returned (each error is reported once, to one
// Sync), or OK.
//
// Errors, as codes and texts (to callbacks and Sync):
//  * CreateJob of an id that exists: ALREADY_EXISTS naming the id.
//  * FinishJob of an unknown id: NOT_FOUND naming the id.
//  * AppendEvents of an unknown job: NOT_FOUND naming the job id; with a
//    sequence number stored already: ALREADY_EXISTS naming the job id. The
//    whole call then stores none of its events.
//  * LoadJob of an unknown id: NOT_FOUND with the text `job "<id>" not
//    found`.
//  * Backend failures: the most specific code (RESOURCE_EXHAUSTED when
//    full, UNAVAILABLE when busy, DATA_LOSS for a corrupt record, ...).
//
// Retention: finished jobs (stored state other than RUNNING) are deleted
// with their events and targets when they were created longer than
// `max_age` ago (by the backend's clock), and, beyond `max_jobs` stored
// jobs (running ones count), the oldest finished ones by id. A running job
// is never deleted. The store applies it by itself every `interval` (the
// first run right after opening) when a limit is set, in small batches
// between writes, and at once on PruneNow(); zero limits delete nothing.
//
// Thread safety: every method may be called from any thread at once. The
// destructor commits everything still queued and runs its callbacks before
// it returns; no method may be called concurrently with it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
  // Every stored periphery, removed ones included, ordered by id.
  virtual absl::StatusOr<std::vector<StoredPeriphery>> LoadPeripheries() = 0;
  // Inserts or replaces the periphery with `p.info.id()`. Asynchronous.
  virtual void SavePeriphery(const StoredPeriphery& p) = 0;

  // --- Tokens ------------------------------------------------------------
  // Every stored operator token / join token, revoked ones included,
  // ordered by id.
  virtual absl::StatusOr<std::vector<StoredToken>> LoadTokens() = 0;
  virtual absl::StatusOr<std::vector<StoredJoinToken>> LoadJoinTokens() = 0;
  // Inserts or replaces the token with `t.info.id()`; the token's state is
  // not stored (it is derived from the times). `done` (may be empty) runs
  // after the commit with its status.
  virtual void SaveToken(const StoredToken& t, CommitCallback done) = 0;
  virtual void SaveJoinToken(const StoredJoinToken& t, CommitCallback done) = 0;

  // --- Jobs --------------------------------------------------------------
  // Inserts a new job: `record` as dispatched (targets queued). Output in
  // its targets is not stored. The record's state, created_by, create_time
  // and target names are what ListJobs filters on. `done` (may be empty)
  // runs after the commit with its status; an id that exists fails it
  // with ALREADY_EXISTS.
  virtual void CreateJob(const varan::v1::Job& record, CommitCallback done) = 0;
  // Appends events of one job, in sequence order. Asynchronous; the events
  // are serialized before it returns, so the caller keeps them (a job's
  // event log hands them over without a copy). Events of an unknown job,
  // or a sequence number stored already, fail the whole call (none of its
  // events are stored; the error goes to the next Sync). No events: no
  // write.
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
  // targets' states and exit statuses; output is not stored) and its
  // state; created_by, create_time and the target names stay as CreateJob
  // stored them. `done` (may be empty) runs after the commit; an unknown id
  // fails it with NOT_FOUND.
  virtual void FinishJob(const varan::v1::Job& record, CommitCallback done) = 0;

  // The job (its latest record: the final summary once finished) and all
  // its events, read in one snapshot. NOT_FOUND, `job "<id>" not found`, if
  // there is none.
  virtual absl::StatusOr<StoredJob> LoadJob(const std::string& id) = 0;
  // Every job whose stored state is still RUNNING, with its events, oldest
  // (smallest id) first.
  virtual absl::StatusOr<std::vector<StoredJob>> LoadUnfinishedJobs() = 0;
  // Jobs matching every filter of `query`, newest (largest id) first, at
  // most `query.limit`. A limit of 0 returns no jobs; `more` then tells
  // whether any match. Repeating the query with `before_id` set to the last
  // id of a page lists every match exactly once.
  virtual absl::StatusOr<JobPage> ListJobs(const JobQuery& query) = 0;

  // Waits until every write called before it is committed and its callback
  // has run. Returns the first write error since the previous Sync, if any
  // (reported once). From a commit callback: FAILED_PRECONDITION at once.
  virtual absl::Status Sync() = 0;

  // Runs retention now, to completion, and waits for it: the writes called
  // before it are committed first. Returns the number of jobs deleted.
  // Works whether or not periodic retention is enabled, with the store's
  // retention limits (zero limits delete nothing). From a commit callback:
  // FAILED_PRECONDITION at once.
  virtual absl::StatusOr<uint64_t> PruneNow() = 0;
};

// For the constructors that take a Store (it is mandatory: core without
// persistence runs on a MemoryStore): aborts, naming `who`, when `store` is
// null — a wiring mistake, not a recoverable error. Returns `store`.
inline Store* RequireStore(Store* store, const char* who) {
  if (store == nullptr) {
    std::fprintf(stderr, "%s: the store must not be null\n", who);
    std::abort();
  }
  return store;
}

}  // namespace varan::core
