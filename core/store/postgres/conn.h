// The libpq wrapper under PostgresStore (core/store/postgres_store.h): one
// connection (Conn) with its cache of prepared statements, the parameters
// of a statement (Params, sent in binary), a result (Result, read in
// binary), and the mapping of PostgreSQL's SQLSTATE codes to absl codes.
//
// Nothing here is thread-safe: each Conn belongs to one user at a time (the
// writer thread, or readers under PostgresStore's read mutex).
#pragma once

#include <libpq-fe.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace varan::core::postgres {

// The absl code for a SQLSTATE (five characters; empty when the server sent
// none, e.g. the connection broke).
absl::StatusCode CodeForSqlState(absl::string_view sqlstate);

// A statement's parameters, $1, $2, ... in the order added, each sent in
// binary with its type. Text and bytes are not copied: they must stay valid
// until the statement ran. Integers are kept inside, so a Params may be
// copied and moved.
class Params {
 public:
  Params& Text(absl::string_view v);
  Params& Bytes(absl::string_view v);
  Params& Int(int64_t v);
  Params& Bool(bool v);

  int size() const { return static_cast<int>(types_.size()); }
  const Oid* types() const { return types_.data(); }
  // Valid until this Params is changed, copied over or gone.
  const char* const* values() const;
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  // Where a value is: outside (text, bytes), or scalars_[scalar].
  struct Value {
    const char* data = nullptr;
    int scalar = -1;
  };
  Params& Add(Oid type, Value value, size_t size);
  Params& AddScalar(Oid type, const void* data, size_t size);

  std::vector<Oid> types_;
  std::vector<Value> where_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  std::vector<std::array<char, 8>> scalars_;  // in network order
  mutable std::vector<const char*> values_;
};

// A statement's result, its columns in binary.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  Result(Result&& other) noexcept : r_(other.r_) { other.r_ = nullptr; }
  Result& operator=(Result&& other) noexcept;
  ~Result() { PQclear(r_); }

  int rows() const { return PQntuples(r_); }
  // Rows an INSERT, UPDATE or DELETE touched.
  int64_t affected() const;
  bool IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
  // text and bytea: the bytes; valid while the result lives.
  absl::string_view Bytes(int row, int col) const {
    return {PQgetvalue(r_, row, col),
            static_cast<size_t>(PQgetlength(r_, row, col))};
  }
  // int2, int4, int8 (by the value's length), bool; 0 for NULL.
  int64_t Int(int row, int col) const;
  const PGresult* raw() const { return r_; }

 private:
  PGresult* r_;
};

class Conn {
 public:
  // Connects to `url` (a libpq connection URI or key=value string, e.g.
  // postgres://user@host:5432/db?sslmode=require), waiting at most
  // `connect_timeout` unless the URL sets its own. UNAVAILABLE when the
  // server cannot be reached or refuses; the message never holds the
  // password.
  static absl::StatusOr<std::unique_ptr<Conn>> Connect(
      const std::string& url, absl::Duration connect_timeout);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Runs `sql` (prepared on first use, then cached) with `params`; `what`
  // names it in errors ("create job j-1"). A result of rows or a command's
  // count, or the server's error with the most specific code: unique
  // violation ALREADY_EXISTS, foreign key NOT_FOUND, connection problems
  // UNAVAILABLE, ...
  absl::StatusOr<Result> Run(const std::string& sql, const Params& params,
                             absl::string_view what);
  absl::StatusOr<Result> Run(const std::string& sql, absl::string_view what) {
    return Run(sql, Params(), what);
  }
  // One statement of a pipeline; both must outlive RunPipelined.
  struct Piped {
    const std::string* sql;
    const Params* params;
  };
  // Runs `stmts` in libpq's pipeline mode, up to kPipelineChunk of them per
  // round trip, and stops after the first chunk holding an error: each
  // statement's result or error, in order; statements skipped after an
  // error are ABORTED ("not run"). UNAVAILABLE when the connection broke
  // (then nothing is known of what ran).
  static constexpr size_t kPipelineChunk = 256;
  absl::StatusOr<std::vector<absl::StatusOr<Result>>> RunPipelined(
      const std::vector<Piped>& stmts, absl::string_view what);
  // Runs one or more statements without parameters (BEGIN, COMMIT, DDL).
  absl::Status Exec(const std::string& sql, absl::string_view what);

  // Whether the connection is lost (the server went away or restarted).
  bool Broken() const;
  // Connects again with the same parameters; prepared statements are
  // prepared again on their next use.
  absl::Status Reconnect();
  // Whether a transaction is open (or failed and not yet rolled back).
  bool InTransaction() const;

  // "database D on host:port", for messages (never the password).
  const std::string& description() const { return description_; }
  PGconn* get() { return conn_; }

 private:
  Conn(PGconn* conn, std::string url, absl::Duration connect_timeout);
  absl::Status ErrorOf(const PGresult* r, absl::string_view what) const;
  // The name `sql` is prepared under on this connection, preparing it first.
  absl::StatusOr<const std::string*> Prepared(const std::string& sql,
                                              const Params& params,
                                              absl::string_view what);

  PGconn* conn_;
  const std::string url_;
  const absl::Duration connect_timeout_;
  std::string description_;
  // SQL text -> prepared statement name.
  std::map<std::string, std::string, std::less<>> prepared_;
};

// A transaction on `conn` that rolls back unless committed; REPEATABLE READ
// READ ONLY for `read_only`, so a read of several statements sees one
// snapshot.
class Transaction {
 public:
  Transaction(Conn& conn, bool read_only);
  ~Transaction();
  const absl::Status& status() const { return status_; }
  absl::Status Commit();

 private:
  Conn& conn_;
  absl::Status status_;
  bool open_ = false;
};

}  // namespace varan::core::postgres
