// PostgresStore's writes (core/store/postgres_store.h): one statement
// handler per queued op (core/store/write_ops.h), and the batch — one
// transaction, retried on a new connection when the old one broke.
#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "core/store/output_plan.h"
#include "core/store/postgres/conn.h"
#include "core/store/postgres/ops.h"
#include "core/store/postgres_store.h"

namespace varan::core {
namespace postgres {
namespace {

using queued::CreateJobOp;
using queued::EventsOp;
using queued::FinishJobOp;
using queued::JoinUseOp;
using queued::OutputOp;
using queued::PeripheryOp;
using queued::PruneOp;
using queued::SyncOp;
using queued::TokenOp;

constexpr uint64_t kMaxInt = std::numeric_limits<int64_t>::max();

// What an output append to `key` is called in its errors.
std::string AppendWhat(const OutputKey& key) {
  return absl::StrCat("append output of job ", key.job_id, " target ",
                      key.target);
}

const std::string kSavePeriphery =
    "INSERT INTO peripheries (id, name, state, info, credential, "
    "label_overrides, confirmed) VALUES ($1, $2, $3, $4, $5, $6, $7) ON "
    "CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, state = "
    "EXCLUDED.state, info = EXCLUDED.info, credential = EXCLUDED.credential, "
    "label_overrides = EXCLUDED.label_overrides, confirmed = "
    "EXCLUDED.confirmed, saved_by = pg_current_xact_id()";
const std::string kSaveToken =
    "INSERT INTO tokens (id, kind, name, hash, info) VALUES ($1, $2, $3, $4, "
    "$5) ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, name = "
    "EXCLUDED.name, hash = EXCLUDED.hash, info = EXCLUDED.info";
const std::string kInsertJob =
    "INSERT INTO jobs (id, create_time, state, created_by, record) VALUES "
    "($1, $2, $3, $4, $5)";
const std::string kInsertTarget =
    "INSERT INTO job_targets (job_id, name) VALUES ($1, $2) ON CONFLICT DO "
    "NOTHING";
const std::string kInsertEvent =
    "INSERT INTO job_events (job_id, seq, event) VALUES ($1, $2, $3)";
const std::string kFinishJob =
    "UPDATE jobs SET state = $1, record = $2 WHERE id = $3";
// A stream's first append, within its head: the stream and its one row.
const std::string kFirstOutput =
    "WITH s AS (INSERT INTO output_streams (job_id, target, stream, "
    "end_offset, head_bytes, tail_bytes, stored) VALUES ($1, $2, $3, $4, $5, "
    "$6, $4) ON CONFLICT (job_id, target, stream) DO NOTHING RETURNING id) "
    "INSERT INTO output_chunks (stream_id, pos, size, data) SELECT id, 0, $4, "
    "$7 FROM s";

// The statements of every op but an output append, which reads before it
// writes: none depends on another's result, so a batch of them can be sent
// in one pipeline. One overload per op: a new op without one does not
// compile.
class Planner {
 public:
  using Plan = std::optional<std::vector<Statement>>;

  Plan operator()(const PeripheryOp& p) const {
    return One(&kSavePeriphery,
               Params()
                   .Text(p.id)
                   .Text(p.name)
                   .Int(p.state)
                   .Bytes(p.info)
                   .Text(p.credential)
                   .Bytes(p.label_overrides)
                   .Bool(p.confirmed),
               absl::StrCat("save periphery ", p.id), Check::kPlain);
  }
  Plan operator()(const TokenOp& t) const {
    // A join token's stored use count stays: read first (Writer).
    if (t.kind == queued::kJoinTokenKind) return std::nullopt;
    return One(
        &kSaveToken,
        Params().Text(t.id).Int(t.kind).Text(t.name).Text(t.hash).Bytes(t.info),
        absl::StrCat("save token ", t.id), Check::kPlain);
  }
  Plan operator()(const CreateJobOp& c) const {
    const std::string what = absl::StrCat("create job ", c.id);
    std::vector<Statement> out;
    out.push_back({&kInsertJob,
                   Params()
                       .Text(c.id)
                       .Int(c.create_time)
                       .Int(c.state)
                       .Text(c.created_by)
                       .Bytes(c.record),
                   what, Check::kNewJob});
    for (const std::string& name : c.targets) {
      out.push_back({&kInsertTarget, Params().Text(c.id).Text(name), what,
                     Check::kPlain});
    }
    return out;
  }
  Plan operator()(const EventsOp& e) const {
    std::vector<Statement> out;
    for (const auto& [seq, event] : e.events) {
      out.push_back({&kInsertEvent,
                     Params().Text(e.job_id).Int(seq).Bytes(event),
                     absl::StrCat("append event ", seq, " of job ", e.job_id),
                     Check::kEvent});
    }
    return out;
  }
  Plan operator()(const FinishJobOp& f) const {
    return One(&kFinishJob, Params().Int(f.state).Bytes(f.record).Text(f.id),
               absl::StrCat("finish job ", f.id), Check::kUpdatedJob);
  }
  Plan operator()(const JoinUseOp&) const { return std::nullopt; }
  Plan operator()(const OutputOp& o) const {
    // Anything else reads the stream's state first (Writer).
    const uint64_t head = std::min<uint64_t>(o.retention.head_bytes, kMaxInt);
    if (o.offset != 0 || o.data.empty() || o.data.size() > head ||
        !output::CheckKey(o.key, "append output").ok()) {
      return std::nullopt;
    }
    return One(&kFirstOutput,
               Params()
                   .Text(o.key.job_id)
                   .Text(o.key.target)
                   .Int(o.key.stream)
                   .Int(static_cast<int64_t>(o.data.size()))
                   .Int(static_cast<int64_t>(head))
                   .Int(static_cast<int64_t>(
                       std::min<uint64_t>(o.retention.tail_bytes, kMaxInt)))
                   .Bytes(o.data),
               AppendWhat(o.key), Check::kFirstOutput);
  }
  Plan operator()(const SyncOp&) const { return std::vector<Statement>(); }
  Plan operator()(const PruneOp&) const { return std::vector<Statement>(); }

 private:
  static Plan One(const std::string* sql, Params params, std::string what,
                  Check check) {
    std::vector<Statement> out;
    out.push_back({sql, std::move(params), std::move(what), check});
    return out;
  }
};

// The writes that read first: join tokens (their stored use count) and
// output appends (the stream's state).
class Writer {
 public:
  explicit Writer(Conn& db) : db_(db) {}

  absl::Status operator()(const TokenOp& t) {
    const std::string what = absl::StrCat("save token ", t.id);
    VARAN_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                           StoredJoinInfo(t.id, what));
    std::string info = t.info;
    if (stored) {
      VARAN_ASSIGN_OR_RETURN(info, queued::WithStoredUses(t, *stored));
    }
    return db_
        .Run(kSaveToken,
             Params().Text(t.id).Int(t.kind).Text(t.name).Text(t.hash).Bytes(
                 info),
             what)
        .status();
  }

  absl::Status operator()(const JoinUseOp& u) {
    const std::string what = absl::StrCat("count a use of join token ", u.id);
    VARAN_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                           StoredJoinInfo(u.id, what));
    if (!stored) return NoSuchJoinToken(u.id);
    VARAN_ASSIGN_OR_RETURN(std::optional<std::string> info,
                           queued::ApplyJoinUseOp(u, *stored));
    if (!info) return absl::OkStatus();
    return db_
        .Run("UPDATE tokens SET info = $1 WHERE id = $2",
             Params().Bytes(*info).Text(u.id), what)
        .status();
  }

  absl::Status operator()(const OutputOp& o) {
    VARAN_RETURN_IF_ERROR(output::CheckKey(o.key, "append output"));
    const std::string what = AppendWhat(o.key);
    // FOR UPDATE: another replica appending to the same stream waits.
    VARAN_ASSIGN_OR_RETURN(std::optional<OutputStreamRow> row,
                           FindOutputStream(db_, o.key, what, true));
    int64_t id = row ? row->id : 0;
    output::StreamState state = row ? row->state : output::StreamState{};
    if (id == 0) {
      VARAN_ASSIGN_OR_RETURN(bool exists, JobExists(db_, o.key.job_id));
      if (!exists) {
        return absl::NotFoundError(absl::StrCat(what, ": no such job"));
      }
      // SQL integers are signed.
      state.head_bytes = std::min<uint64_t>(o.retention.head_bytes, kMaxInt);
      state.tail_bytes = std::min<uint64_t>(o.retention.tail_bytes, kMaxInt);
    }
    VARAN_ASSIGN_OR_RETURN(
        output::AppendPlan plan,
        output::PlanAppend(o.key, state, o.offset, o.data.size()));
    if (plan.noop) return absl::OkStatus();
    if (id == 0) {
      VARAN_ASSIGN_OR_RETURN(
          Result r,
          db_.Run("INSERT INTO output_streams (job_id, target, stream, "
                  "end_offset, head_bytes, tail_bytes, stored) VALUES ($1, "
                  "$2, $3, 0, $4, $5, 0) RETURNING id",
                  Params()
                      .Text(o.key.job_id)
                      .Text(o.key.target)
                      .Int(o.key.stream)
                      .Int(static_cast<int64_t>(state.head_bytes))
                      .Int(static_cast<int64_t>(state.tail_bytes)),
                  what));
      id = r.Int(0, 0);
    }
    if (!plan.dropped.empty()) {
      VARAN_RETURN_IF_ERROR(
          DropTail(id, state.head_bytes, plan.dropped, &state.stored, what));
    }
    for (const output::Range& r : {plan.head, plan.tail}) {
      if (r.empty()) continue;
      VARAN_RETURN_IF_ERROR(
          db_.Run("INSERT INTO output_chunks (stream_id, pos, size, data) "
                  "VALUES ($1, $2, $3, $4)",
                  Params()
                      .Int(id)
                      .Int(static_cast<int64_t>(r.begin))
                      .Int(static_cast<int64_t>(r.size()))
                      .Bytes(absl::string_view(o.data).substr(
                          r.begin - o.offset, r.size())),
                  what)
              .status());
      state.stored += r.size();
    }
    return db_
        .Run(
            "UPDATE output_streams SET end_offset = $1, stored = $2 WHERE "
            "id = $3",
            Params()
                .Int(static_cast<int64_t>(plan.new_end))
                .Int(static_cast<int64_t>(state.stored))
                .Int(id),
            what)
        .status();
  }

 private:
  // Deletes the tail rows of stream `id` that end at or before dropped.end,
  // and takes the bytes in `dropped` off `*stored` (a row straddling
  // dropped.end stays whole; reads clip it).
  absl::Status DropTail(int64_t id, uint64_t head_bytes, output::Range dropped,
                        uint64_t* stored, const std::string& what) {
    const int64_t head = static_cast<int64_t>(head_bytes);
    const int64_t end = static_cast<int64_t>(dropped.end);
    VARAN_ASSIGN_OR_RETURN(
        Result rows,
        db_.Run("SELECT pos, size FROM output_chunks WHERE stream_id = $1 AND "
                "pos >= $2 AND pos < $3",
                Params().Int(id).Int(head).Int(end), what));
    for (int i = 0; i < rows.rows(); ++i) {
      const auto pos = static_cast<uint64_t>(rows.Int(i, 0));
      const auto size = static_cast<uint64_t>(rows.Int(i, 1));
      *stored -= output::Overlap({pos, pos + size}, dropped);
    }
    return db_
        .Run(
            "DELETE FROM output_chunks WHERE stream_id = $1 AND pos >= $2 "
            "AND pos < $3 AND pos + size <= $3",
            Params().Int(id).Int(head).Int(end), what)
        .status();
  }

  // The info column of join token `id`, locked for the transaction (a
  // replica counting a use of the same token waits), or none.
  absl::StatusOr<std::optional<std::string>> StoredJoinInfo(
      const std::string& id, const std::string& what) {
    VARAN_ASSIGN_OR_RETURN(
        Result r, db_.Run("SELECT info FROM tokens WHERE id = $1 AND kind = "
                          "$2 FOR UPDATE",
                          Params().Text(id).Int(queued::kJoinTokenKind), what));
    if (r.rows() == 0) return std::nullopt;
    return std::string(r.Bytes(0, 0));
  }

  Conn& db_;
};

}  // namespace

output::StreamState StreamStateAt(const Result& r, int row, int first) {
  output::StreamState state;
  state.end = static_cast<uint64_t>(r.Int(row, first));
  state.head_bytes = static_cast<uint64_t>(r.Int(row, first + 1));
  state.tail_bytes = static_cast<uint64_t>(r.Int(row, first + 2));
  state.stored = static_cast<uint64_t>(r.Int(row, first + 3));
  return state;
}

absl::StatusOr<std::optional<OutputStreamRow>> FindOutputStream(
    Conn& db, const OutputKey& key, absl::string_view what, bool for_update) {
  VARAN_ASSIGN_OR_RETURN(
      Result r,
      db.Run(absl::StrCat("SELECT id, end_offset, head_bytes, tail_bytes, "
                          "stored FROM output_streams WHERE job_id = $1 AND "
                          "target = $2 AND stream = $3",
                          for_update ? " FOR UPDATE" : ""),
             Params().Text(key.job_id).Text(key.target).Int(key.stream), what));
  if (r.rows() == 0) return std::nullopt;
  return OutputStreamRow{r.Int(0, 0), StreamStateAt(r, 0, 1)};
}

absl::StatusOr<bool> JobExists(Conn& db, const std::string& id) {
  VARAN_ASSIGN_OR_RETURN(
      Result r, db.Run("SELECT 1 FROM jobs WHERE id = $1", Params().Text(id),
                       absl::StrCat("look up job ", id)));
  return r.rows() > 0;
}

absl::Status Outcome(const Statement& s, const absl::StatusOr<Result>& r) {
  switch (s.check) {
    case Check::kPlain:
      return r.status();
    case Check::kNewJob:
      if (absl::IsAlreadyExists(r.status())) {
        return absl::AlreadyExistsError(
            absl::StrCat(s.what, ": a job with this id exists"));
      }
      return r.status();
    case Check::kEvent:
      if (absl::IsNotFound(r.status())) {
        return absl::NotFoundError(absl::StrCat(s.what, ": no such job"));
      }
      if (absl::IsAlreadyExists(r.status())) {
        return absl::AlreadyExistsError(
            absl::StrCat(s.what, ": that sequence number is stored already"));
      }
      return r.status();
    case Check::kUpdatedJob:
      if (r.ok() && r->affected() == 0) {
        return absl::NotFoundError(absl::StrCat(s.what, ": no such job"));
      }
      return r.status();
    case Check::kFirstOutput:
      if (absl::IsNotFound(r.status())) {
        return absl::NotFoundError(absl::StrCat(s.what, ": no such job"));
      }
      return r.status();
  }
  return r.status();
}

bool FirstAppendMissed(const Statement& s, const absl::StatusOr<Result>& r) {
  return s.check == Check::kFirstOutput && r.ok() && r->affected() == 0;
}

std::optional<std::vector<Statement>> PlanWrite(const queued::Op& op) {
  return std::visit(Planner(), op);
}

absl::Status ExecuteWrite(Conn& db, const queued::Op& op) {
  if (const auto* output = std::get_if<OutputOp>(&op)) {
    return Writer(db)(*output);
  }
  std::optional<std::vector<Statement>> plan = PlanWrite(op);
  if (!plan) {
    if (const auto* token = std::get_if<TokenOp>(&op)) {
      return Writer(db)(*token);
    }
    if (const auto* use = std::get_if<JoinUseOp>(&op)) {
      return Writer(db)(*use);
    }
    return absl::InternalError("a write without statements");
  }
  for (const Statement& s : *plan) {
    VARAN_RETURN_IF_ERROR(Outcome(s, db.Run(*s.sql, s.params, s.what)));
  }
  return absl::OkStatus();
}

}  // namespace postgres
}  // namespace varan::core
