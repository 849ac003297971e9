#include "core/store/postgres/schema.h"

#include <iterator>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace varan::core::postgres {
namespace {

// pg_advisory_xact_lock's key: "varan" in ASCII, any constant no other
// program on the database is likely to take.
constexpr char kLockKey[] = "508441026926";  // 0x766172616e

// Numbered schema steps: kMigrations[i] takes version i to i + 1. Append
// only; never edit a step that has shipped. The same tables as SQLite's
// (core/store/sqlite/schema.cc). Times are unix nanoseconds; bytea columns
// are serialized varan.v1 messages, the columns beside them copies of the
// fields that queries filter on. Names sort bytewise (COLLATE "C"), as
// SQLite's do: job ids are time-ordered, so ORDER BY id is by age whatever
// the database's locale.
constexpr const char* kMigrations[] = {
    // 1: peripheries, tokens, jobs, events and stored output.
    R"sql(
CREATE TABLE peripheries (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT COLLATE "C" NOT NULL,
  state BIGINT NOT NULL,           -- varan.v1.PeripheryState
  info BYTEA NOT NULL,             -- varan.v1.Periphery
  credential TEXT NOT NULL,
  label_overrides BYTEA NOT NULL,  -- varan.v1.UpdateLabelsRequest
  confirmed BOOLEAN NOT NULL
);
CREATE TABLE tokens (
  id TEXT COLLATE "C" PRIMARY KEY,
  kind BIGINT NOT NULL,            -- 1: operator token, 2: join token
  name TEXT NOT NULL,
  hash TEXT NOT NULL,              -- SHA-256 of the secret, hex
  info BYTEA NOT NULL              -- varan.v1.Token or varan.v1.JoinToken
);
CREATE TABLE jobs (
  id TEXT COLLATE "C" PRIMARY KEY,
  create_time BIGINT NOT NULL,
  state BIGINT NOT NULL,           -- varan.v1.JobState
  created_by TEXT COLLATE "C" NOT NULL,
  record BYTEA NOT NULL            -- varan.v1.Job, without output
);
CREATE INDEX jobs_by_state ON jobs (state, id);
CREATE INDEX jobs_by_creator ON jobs (created_by, id);
CREATE INDEX jobs_by_create_time ON jobs (create_time);
CREATE TABLE job_targets (
  job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  name TEXT COLLATE "C" NOT NULL,  -- periphery name
  PRIMARY KEY (job_id, name)
);
CREATE INDEX job_targets_by_name ON job_targets (name, job_id);
CREATE TABLE job_events (
  job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  event BYTEA NOT NULL,            -- varan.v1.JobEvent
  PRIMARY KEY (job_id, seq)
);
CREATE TABLE output_streams (
  id BIGSERIAL PRIMARY KEY,
  job_id TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  target TEXT COLLATE "C" NOT NULL,
  stream INTEGER NOT NULL,         -- varan.v1.OutputStream
  end_offset BIGINT NOT NULL,      -- the stream's length so far
  head_bytes BIGINT NOT NULL,      -- its retention
  tail_bytes BIGINT NOT NULL,
  stored BIGINT NOT NULL,          -- bytes kept
  UNIQUE (job_id, target, stream)
);
CREATE TABLE output_chunks (
  stream_id BIGINT NOT NULL REFERENCES output_streams (id) ON DELETE CASCADE,
  pos BIGINT NOT NULL,             -- stream offset of the first byte
  size BIGINT NOT NULL,            -- length(data)
  data BYTEA NOT NULL,
  PRIMARY KEY (stream_id, pos)
);
)sql",
    // 2: the replicas of one cluster, their leases and which one holds
    // each periphery's connection (core/cluster/postgres_cluster.h).
    R"sql(
CREATE TABLE cluster_replicas (
  id TEXT COLLATE "C" PRIMARY KEY,
  address TEXT NOT NULL,           -- where the other replicas reach it
  expires_at TIMESTAMPTZ NOT NULL  -- membership, by the database's clock
);
CREATE TABLE cluster_leases (
  name TEXT COLLATE "C" PRIMARY KEY,
  holder TEXT COLLATE "C" NOT NULL,
  epoch BIGINT NOT NULL,           -- +1 each time it changes hands
  expires_at TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE cluster_connection_seq;
CREATE TABLE cluster_connections (
  periphery_id TEXT COLLATE "C" PRIMARY KEY,
  replica_id TEXT COLLATE "C" NOT NULL,  -- '' once dropped
  epoch BIGINT NOT NULL,           -- +1 with every claim
  seq BIGINT NOT NULL              -- cluster_connection_seq at the change
);
CREATE INDEX cluster_connections_by_seq ON cluster_connections (seq);
)sql",
    // 3: settings every replica shares (the secret they authenticate their
    // calls to each other with).
    R"sql(
CREATE TABLE cluster_settings (
  name TEXT COLLATE "C" PRIMARY KEY,
  value TEXT NOT NULL
);
)sql",
    // 4: which transaction last saved each periphery, so that replicas
    // re-read only what changed (LoadChangedPeripheries).
    R"sql(
ALTER TABLE peripheries
  ADD COLUMN saved_by XID8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX peripheries_by_saved_by ON peripheries (saved_by);
)sql",
    // 5: replicas taken for dead, whose work another replica took over
    // (Cluster::Fence): they never renew nor write again.
    R"sql(
CREATE TABLE cluster_fences (
  tag TEXT COLLATE "C" PRIMARY KEY,  -- ReplicaTag of the fenced replica
  fenced_by TEXT NOT NULL,           -- the replica that fenced it
  fenced_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
)sql",
};

}  // namespace

const int kSchemaVersion = static_cast<int>(std::size(kMigrations));

absl::Status Migrate(Conn& conn) {
  Transaction txn(conn, /*read_only=*/false);
  VARAN_RETURN_IF_ERROR(txn.status());
  VARAN_RETURN_IF_ERROR(
      conn.Run(absl::StrCat("SELECT pg_advisory_xact_lock(", kLockKey, ")"),
               "lock the schema for migration")
          .status());
  VARAN_RETURN_IF_ERROR(
      conn.Exec("CREATE TABLE IF NOT EXISTS varan_schema ("
                "version INTEGER PRIMARY KEY, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                "create varan_schema"));
  VARAN_ASSIGN_OR_RETURN(
      Result r, conn.Run("SELECT coalesce(max(version), 0)::BIGINT FROM "
                         "varan_schema",
                         "read the schema version"));
  const int64_t version = r.Int(0, 0);
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(conn.description(), " has schema version ", version,
                     ", newer than this varan-core supports (", kSchemaVersion,
                     "): upgrade this core to the version of the others"));
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    VARAN_RETURN_IF_ERROR(conn.Exec(
        kMigrations[v], absl::StrCat("migrate to schema version ", v + 1)));
    VARAN_RETURN_IF_ERROR(
        conn.Run("INSERT INTO varan_schema (version) VALUES ($1)",
                 Params().Int(v + 1), "record the schema version")
            .status());
  }
  VARAN_RETURN_IF_ERROR(txn.Commit());
  spdlog::info("store: {} migrated from schema version {} to {}",
               conn.description(), version, kSchemaVersion);
  return absl::OkStatus();
}

absl::Status CheckNotFenced(Conn& conn, const std::string& tag) {
  VARAN_RETURN_IF_ERROR(conn.Run(kLockFenceShared, Params().Text(tag),
                                 "lock this replica's fence")
                            .status());
  VARAN_ASSIGN_OR_RETURN(Result fence, conn.Run(kIsFenced, Params().Text(tag),
                                                "check this replica's fence"));
  if (fence.rows() == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "this replica (tag ", tag, ") was fenced by replica ", fence.Bytes(0, 0),
      " at ", fence.Bytes(0, 1),
      ": it was cut off from the database longer than its membership lasts, "
      "and its jobs were taken over"));
}

}  // namespace varan::core::postgres
