// Store: what core keeps across restarts — peripheries (with credentials and
// operator label changes), operator and join tokens (as hashes), jobs (the
// record as dispatched, its event log, and its final summary) and what is
// kept of each job's output (the head and the tail of every stream).
//
// This header is the contract every backend keeps (SqliteStore,
// MemoryStore; tests/unit/store/store_contract_test.cc checks it against
// each). The rules, for all methods:
//
// Writes (SavePeriphery, SaveToken, SaveJoinToken, UseJoinToken, CreateJob,
// AppendEvents, AppendOutput, FinishJob) are asynchronous: they return before
// the write is committed. They are committed in the order they were called
// (calls from different threads: in the order the store took them), each write
// all or nothing; a write that fails does not undo or stop the writes around
// it. A backend may commit many writes in one transaction (group commit).
// Arguments are copied or serialized before the call returns; the caller keeps
// them.
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
//  * AppendOutput, ReadOutput, OutputExtents of an unknown job: NOT_FOUND
//    naming the job id; an OutputKey with an empty target or an unspecified
//    stream, or an append whose end would reach 2^63: INVALID_ARGUMENT.
//  * Backend failures: the most specific code (RESOURCE_EXHAUSTED when
//    full, UNAVAILABLE when busy, DATA_LOSS for a corrupt record, ...).
//
// Output: of each stream (OutputKey: job, target, stdout or stderr) the
// store keeps the first `head_bytes` and the last `tail_bytes` (the
// stream's OutputRetention) and counts the bytes between. Offsets are byte
// positions in the stream; `end` is the offset just past the last byte
// appended. An append at `offset` with `data`:
//  * ignores its bytes before `end` (a duplicate delivery after a reconnect
//    is harmless: the same bytes are stored once);
//  * starting past `end` leaves a hole: [end, offset) were never delivered,
//    are never stored and are not counted in `stored`;
//  * moves `end` to offset + size, then keeps exactly the bytes in
//    [0, head_bytes) and in [max(end - tail_bytes, head_bytes), end) that
//    were delivered: reads return them and `stored` counts them, nothing
//    else. The rest is deleted in the same commit (bytes the append itself
//    pushes out of the tail are never written), except that a backend may
//    hold on to one append's bytes straddling the tail's start until they
//    are wholly out of it — on disk at most one append more than
//    head_bytes + tail_bytes per stream, never visible.
// The extent after it: head_end = min(end, head_bytes), tail_start =
// max(end - tail_bytes, head_end); tail_start - head_end bytes are omitted.
// The retention of the first append that creates the stream (one that moves
// `end` past 0) is the stream's; the values of later appends are ignored. A
// stream exists once its end is past 0. Output is kept apart from events:
// LoadJob, LoadUnfinishedJobs and ListJobs never carry it.
//
// Retention: finished jobs (stored state other than RUNNING) are deleted
// with their events, targets and output when they were created longer than
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
#include <string_view>
#include <utility>
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

// What UseJoinToken does to a join token's stored use count.
enum class JoinUse {
  kTake,      // one registration more, if the token allows it
  kGiveBack,  // one fewer (a registration that failed after taking it)
};

// What UseJoinToken did.
struct JoinUses {
  // The token as stored after the call (its state not set).
  varan::v1::JoinToken token;
  // kTake: whether the use was taken — false when the stored token is
  // revoked or has max_uses uses already (nothing was changed). kGiveBack:
  // true.
  bool taken = false;
};
using JoinUsesCallback = std::function<void(absl::StatusOr<JoinUses>)>;

// The join token `stored` after `use` (what every backend's UseJoinToken
// applies to the token it read): true if `use` was applied.
bool ApplyJoinUse(JoinUse use, varan::v1::JoinToken* stored);
// UseJoinToken's error for an id no join token has.
absl::Status NoSuchJoinToken(const std::string& id);

// One job as stored: the record written at dispatch (targets queued, no
// output) — or, once finished, its final summary — and every event.
struct StoredJob {
  varan::v1::Job record;
  // Ordered by sequence. The log may have holes: output events are not
  // stored as events (the output is, see AppendOutput), so their sequence
  // numbers are missing; Job::Restore turns each hole into an output_gap.
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
  // Whether periodic retention runs here when due (replicas: only on the
  // holder of the retention lease); empty: always. PruneNow ignores it.
  std::function<bool()> due_here;
};

// One stream of one target of one job.
struct OutputKey {
  std::string job_id;
  // Periphery name, as in the job record.
  std::string target;
  // STDOUT or STDERR.
  varan::v1::OutputStream stream = varan::v1::OUTPUT_STREAM_UNSPECIFIED;
};

// What a job keeps of each stream: the first head_bytes and the last
// tail_bytes.
struct OutputRetention {
  uint64_t head_bytes = 0;
  uint64_t tail_bytes = 0;
};

// How much of a stream exists and how much is kept. All zero for a stream
// that does not exist.
struct OutputExtent {
  // Offset just past the last byte appended (the stream's length so far).
  uint64_t end = 0;
  // Bytes [0, head_end) are stored, except holes never delivered;
  // head_end = min(end, head_bytes).
  uint64_t head_end = 0;
  // Bytes [tail_start, end) are stored, except holes never delivered;
  // tail_start = max(end - tail_bytes, head_end), so the bytes between
  // (tail_start - head_end) are the omitted middle.
  uint64_t tail_start = 0;
  // Bytes actually stored (delivered bytes within the two ranges).
  uint64_t stored = 0;
};

// Stored bytes of a stream starting at `offset`.
struct OutputPiece {
  uint64_t offset = 0;
  std::string data;
};

struct StoredOutput {
  OutputExtent extent;
  // The stored bytes at or after the read offset, in order, contiguous runs
  // merged into one piece, at most max_bytes in total. A piece starting past
  // the previous one's end (or past the read offset) is a jump over an
  // omitted middle or a hole.
  std::vector<OutputPiece> pieces;
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
  // The peripheries saved since the call that set `*cursor` (0: all of
  // them), removed ones included, ordered by id — maybe more, never fewer —
  // and sets `*cursor` for the next call. For replicas re-reading a shared
  // database (FleetRegistry::Refresh) without reading every periphery each
  // time. A backend that cannot tell what changed returns every periphery.
  virtual absl::StatusOr<std::vector<StoredPeriphery>> LoadChangedPeripheries(
      [[maybe_unused]] uint64_t* cursor) {
    return LoadPeripheries();
  }

  // --- Tokens ------------------------------------------------------------
  // Every stored operator token / join token, revoked ones included,
  // ordered by id.
  virtual absl::StatusOr<std::vector<StoredToken>> LoadTokens() = 0;
  virtual absl::StatusOr<std::vector<StoredJoinToken>> LoadJoinTokens() = 0;
  // Inserts or replaces the token with `t.info.id()`; the token's state is
  // not stored (it is derived from the times). `done` (may be empty) runs
  // after the commit with its status.
  // A join token's `uses` is counted by UseJoinToken alone: saving a join
  // token that is stored already keeps the stored count (a replica's copy
  // may be behind another's registrations).
  virtual void SaveToken(const StoredToken& t, CommitCallback done) = 0;
  virtual void SaveJoinToken(const StoredJoinToken& t, CommitCallback done) = 0;
  // Counts one use of the stored join token `id` (JoinUse), as one atomic
  // step with every other writer of the store, replicas sharing a database
  // included: however many registrations race on its last use, one takes it.
  // Asynchronous, ordered with the other writes; `done` runs once it is
  // committed, on a store thread like a commit callback (the same rules),
  // with what it did, or NOT_FOUND naming the id when no join token has it.
  // kGiveBack never takes the count below zero.
  virtual void UseJoinToken(const std::string& id, JoinUse use,
                            JoinUsesCallback done) = 0;

  // --- Jobs --------------------------------------------------------------
  // Inserts a new job: `record` as dispatched (targets queued). Output in
  // its targets is not stored. The record's state, created_by, create_time
  // and target names are what ListJobs filters on. `done` (may be empty)
  // runs after the commit with its status; an id that exists fails it
  // with ALREADY_EXISTS.
  virtual void CreateJob(const varan::v1::Job& record, CommitCallback done) = 0;
  // Appends events of one job, in sequence order; sequence numbers may skip
  // (holes are allowed, see StoredJob::events). Asynchronous; the events
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

  // --- Output --------------------------------------------------------------
  // Appends `data` at `offset` of the stream `key`, keeping what
  // `retention` says (the first append's retention is the stream's; see
  // "Output" above). Asynchronous, ordered with the other writes; `data` is
  // copied before the call returns. `done` (may be empty) runs after the
  // commit with its status: NOT_FOUND naming the job for an unknown job,
  // INVALID_ARGUMENT for an empty target, an unspecified stream or an end
  // at or past 2^63. Bytes before the stream's end are ignored (OK).
  virtual void AppendOutput(const OutputKey& key, uint64_t offset,
                            std::string_view data,
                            const OutputRetention& retention,
                            CommitCallback done) = 0;
  // The stream's extent and its stored bytes at or after `offset` (an offset
  // inside the omitted middle or a hole reads on from the next stored byte),
  // at most `max_bytes` in total (0: the extent only), in one snapshot.
  // NOT_FOUND naming the job for an unknown job; a job without that stream:
  // OK, an empty extent and no pieces. INVALID_ARGUMENT as AppendOutput.
  virtual absl::StatusOr<StoredOutput> ReadOutput(const OutputKey& key,
                                                  uint64_t offset,
                                                  uint64_t max_bytes) = 0;
  // The extent of every stream of the job that exists, ordered by target,
  // then stdout before stderr; empty when nothing was appended. NOT_FOUND
  // naming the job for an unknown job.
  virtual absl::StatusOr<std::vector<std::pair<OutputKey, OutputExtent>>>
  OutputExtents(const std::string& job_id) = 0;

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

  // Whether the store keeps up with its writes. OK, or RESOURCE_EXHAUSTED
  // with a retry-after hint (common/grpc_util.h) while more writes wait for
  // their commit than the backend takes (a slow disk or database): callers
  // refuse new work with it (a new job, a new registration) instead of
  // queueing more. Writes themselves are never refused for it, so the work
  // already admitted (running jobs, heartbeats) goes on.
  virtual absl::Status CheckBacklog() = 0;

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
