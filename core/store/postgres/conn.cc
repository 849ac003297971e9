#include "core/store/postgres/conn.h"

#include <endian.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace varan::core::postgres {
namespace {

// Type OIDs (pg_type.h, stable across versions).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;

std::string Trimmed(const char* message) {
  if (message == nullptr) return std::string();
  return std::string(absl::StripAsciiWhitespace(message));
}

}  // namespace

absl::StatusCode CodeForSqlState(absl::string_view s) {
  if (s.size() != 5) return absl::StatusCode::kUnavailable;
  const absl::string_view cls = s.substr(0, 2);
  if (s == "23505") return absl::StatusCode::kAlreadyExists;
  if (s == "23503") return absl::StatusCode::kNotFound;
  if (s == "40001" || s == "40P01") return absl::StatusCode::kAborted;
  if (s == "57014") return absl::StatusCode::kDeadlineExceeded;  // canceled
  if (cls == "08" || cls == "57" || s == "53300") {
    // Connection exceptions, the server shutting down, too many clients.
    return absl::StatusCode::kUnavailable;
  }
  if (cls == "53" || cls == "54") return absl::StatusCode::kResourceExhausted;
  if (cls == "22" || cls == "23") return absl::StatusCode::kInvalidArgument;
  if (cls == "28" || cls == "42") {
    // Authentication, privileges and statement errors.
    return s == "42501" || cls == "28" ? absl::StatusCode::kPermissionDenied
                                       : absl::StatusCode::kInternal;
  }
  if (cls == "XX") return absl::StatusCode::kDataLoss;
  return absl::StatusCode::kInternal;
}

// --- Params ----------------------------------------------------------------

Params& Params::Add(Oid type, Value value, size_t size) {
  types_.push_back(type);
  where_.push_back(value);
  lengths_.push_back(static_cast<int>(size));
  formats_.push_back(1);
  return *this;
}

Params& Params::AddScalar(Oid type, const void* data, size_t size) {
  std::array<char, 8>& slot = scalars_.emplace_back();
  std::memcpy(slot.data(), data, size);
  return Add(type, Value{nullptr, static_cast<int>(scalars_.size() - 1)}, size);
}

const char* const* Params::values() const {
  values_.clear();
  for (const Value& v : where_) {
    values_.push_back(v.scalar >= 0
                          ? scalars_[static_cast<size_t>(v.scalar)].data()
                          : v.data);
  }
  return values_.data();
}

Params& Params::Text(absl::string_view v) {
  return Add(kTextOid, Value{v.empty() ? "" : v.data()}, v.size());
}

Params& Params::Bytes(absl::string_view v) {
  // libpq sends a null pointer as NULL: an empty value needs an address.
  return Add(kByteaOid, Value{v.empty() ? "" : v.data()}, v.size());
}

Params& Params::Int(int64_t v) {
  const uint64_t be = htobe64(static_cast<uint64_t>(v));
  return AddScalar(kInt8Oid, &be, sizeof(be));
}

Params& Params::Bool(bool v) {
  const char b = v ? 1 : 0;
  return AddScalar(kBoolOid, &b, 1);
}

// --- Result ----------------------------------------------------------------

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    PQclear(r_);
    r_ = std::exchange(other.r_, nullptr);
  }
  return *this;
}

int64_t Result::affected() const {
  const char* n = PQcmdTuples(r_);
  return n == nullptr || *n == '\0' ? 0 : std::strtoll(n, nullptr, 10);
}

int64_t Result::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  const char* v = PQgetvalue(r_, row, col);
  switch (PQgetlength(r_, row, col)) {
    case 8: {
      uint64_t be;
      std::memcpy(&be, v, sizeof(be));
      return static_cast<int64_t>(be64toh(be));
    }
    case 4: {
      uint32_t be;
      std::memcpy(&be, v, sizeof(be));
      return static_cast<int32_t>(be32toh(be));
    }
    case 2: {
      uint16_t be;
      std::memcpy(&be, v, sizeof(be));
      return static_cast<int16_t>(be16toh(be));
    }
    case 1:
      return static_cast<unsigned char>(*v);
  }
  return 0;
}

// --- Conn ------------------------------------------------------------------

namespace {

// Our defaults first: what the URL says overrides them (libpq processes the
// expanded dbname after the keywords before it).
PGconn* Open(const std::string& url, absl::Duration connect_timeout) {
  const std::string timeout =
      absl::StrCat(std::max<int64_t>(2, absl::ToInt64Seconds(connect_timeout)));
  // A transaction left open by a core that lost its connection (a network
  // partition) would hold its locks until the server noticed, which could
  // take hours: the server ends one idle for 30 s (no transaction of core's
  // waits on core that long). A replica being fenced holds such locks.
  const char* keys[] = {
      "connect_timeout",  "keepalives_idle",  "keepalives_interval",
      "keepalives_count", "tcp_user_timeout", "application_name",
      "options",          "dbname",           nullptr};
  const char* values[] = {timeout.c_str(),
                          "10",
                          "5",
                          "3",
                          "20000",
                          "varan-core",
                          "-c idle_in_transaction_session_timeout=30000",
                          url.c_str(),
                          nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  // The server's notices ("... already exists, skipping" when replicas
  // migrate at once) go to the debug log, not raw to stderr.
  if (conn != nullptr) {
    PQsetNoticeProcessor(
        conn,
        [](void*, const char* message) {
          spdlog::debug("PostgreSQL: {}", Trimmed(message));
        },
        nullptr);
  }
  return conn;
}

std::string Describe(PGconn* conn) {
  const char* host = PQhost(conn);
  const char* port = PQport(conn);
  const char* db = PQdb(conn);
  std::string where = host == nullptr ? "?" : host;
  if (where.find(':') != std::string::npos)
    where = absl::StrCat("[", where, "]");
  return absl::StrCat("PostgreSQL database ", db == nullptr ? "?" : db, " on ",
                      where, ":", port == nullptr ? "?" : port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Conn>> Conn::Connect(
    const std::string& url, absl::Duration connect_timeout) {
  PGconn* conn = Open(url, connect_timeout);
  if (conn == nullptr) {
    return absl::ResourceExhaustedError(
        "cannot connect to PostgreSQL: out of memory");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string error = absl::StrCat("cannot connect to ", Describe(conn),
                                           ": ", Trimmed(PQerrorMessage(conn)));
    PQfinish(conn);
    return absl::UnavailableError(error);
  }
  return std::unique_ptr<Conn>(new Conn(conn, url, connect_timeout));
}

Conn::Conn(PGconn* conn, std::string url, absl::Duration connect_timeout)
    : conn_(conn),
      url_(std::move(url)),
      connect_timeout_(connect_timeout),
      description_(Describe(conn)) {}

Conn::~Conn() { PQfinish(conn_); }

bool Conn::Broken() const { return PQstatus(conn_) == CONNECTION_BAD; }

bool Conn::InTransaction() const {
  return PQtransactionStatus(conn_) != PQTRANS_IDLE;
}

absl::Status Conn::Reconnect() {
  prepared_.clear();
  PGconn* fresh = Open(url_, connect_timeout_);
  if (fresh == nullptr || PQstatus(fresh) != CONNECTION_OK) {
    const std::string error = fresh == nullptr ? std::string("out of memory")
                                               : Trimmed(PQerrorMessage(fresh));
    PQfinish(fresh);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", description_, ": ", error));
  }
  PQfinish(conn_);
  conn_ = fresh;
  return absl::OkStatus();
}

absl::Status Conn::ErrorOf(const PGresult* r, absl::string_view what) const {
  const char* state =
      r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* primary =
      r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const std::string message =
      primary != nullptr ? Trimmed(primary) : Trimmed(PQerrorMessage(conn_));
  if (Broken() || state == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        what, ": lost the connection to ", description_, ": ", message));
  }
  return absl::Status(CodeForSqlState(state),
                      absl::StrCat(what, ": ", message, " (SQLSTATE ", state,
                                   ", ", description_, ")"));
}

absl::StatusOr<const std::string*> Conn::Prepared(const std::string& sql,
                                                  const Params& params,
                                                  absl::string_view what) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = absl::StrCat("s", prepared_.size() + 1);
    Result prepared(PQprepare(conn_, name.c_str(), sql.c_str(), params.size(),
                              params.types()));
    if (PQresultStatus(prepared.raw()) != PGRES_COMMAND_OK) {
      return ErrorOf(prepared.raw(), what);
    }
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  return &it->second;
}

absl::StatusOr<std::vector<absl::StatusOr<Result>>> Conn::RunPipelined(
    const std::vector<Piped>& stmts, absl::string_view what) {
  // Prepared first: PQprepare waits for its answer, which pipeline mode
  // does not allow.
  std::vector<const std::string*> names;
  names.reserve(stmts.size());
  for (const Piped& s : stmts) {
    VARAN_ASSIGN_OR_RETURN(const std::string* name,
                           Prepared(*s.sql, *s.params, what));
    names.push_back(name);
  }
  const auto lost = [&] {
    return absl::UnavailableError(
        absl::StrCat(what, ": lost the connection to ", description_, ": ",
                     Trimmed(PQerrorMessage(conn_))));
  };
  std::vector<absl::StatusOr<Result>> out;
  out.reserve(stmts.size());
  bool failed = false;
  for (size_t begin = 0; begin < stmts.size() && !failed;
       begin += kPipelineChunk) {
    const size_t end = std::min(stmts.size(), begin + kPipelineChunk);
    if (PQenterPipelineMode(conn_) != 1) return lost();
    for (size_t i = begin; i < end; ++i) {
      const Params& p = *stmts[i].params;
      if (PQsendQueryPrepared(conn_, names[i]->c_str(), p.size(), p.values(),
                              p.lengths(), p.formats(),
                              /*resultFormat=*/1) != 1) {
        return lost();
      }
    }
    if (PQpipelineSync(conn_) != 1) return lost();
    for (size_t i = begin; i < end; ++i) {
      PGresult* raw = PQgetResult(conn_);
      if (raw == nullptr) return lost();
      Result r(raw);
      switch (PQresultStatus(raw)) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
          out.push_back(std::move(r));
          break;
        case PGRES_PIPELINE_ABORTED:
          out.push_back(absl::AbortedError("not run"));
          failed = true;
          break;
        case PGRES_EMPTY_QUERY:
        case PGRES_COPY_OUT:
        case PGRES_COPY_IN:
        case PGRES_BAD_RESPONSE:
        case PGRES_NONFATAL_ERROR:
        case PGRES_FATAL_ERROR:
        case PGRES_COPY_BOTH:
        case PGRES_SINGLE_TUPLE:
        case PGRES_PIPELINE_SYNC:
          if (Broken()) return lost();
          out.push_back(ErrorOf(raw, what));
          failed = true;
          break;
      }
      // Each statement's results end with a null.
      if (PGresult* extra = PQgetResult(conn_); extra != nullptr) {
        PQclear(extra);
        return lost();
      }
    }
    Result sync(PQgetResult(conn_));
    if (PQresultStatus(sync.raw()) != PGRES_PIPELINE_SYNC ||
        PQexitPipelineMode(conn_) != 1) {
      return lost();
    }
  }
  while (out.size() < stmts.size())
    out.push_back(absl::AbortedError("not run"));
  return out;
}

absl::StatusOr<Result> Conn::Run(const std::string& sql, const Params& params,
                                 absl::string_view what) {
  VARAN_ASSIGN_OR_RETURN(const std::string* name, Prepared(sql, params, what));
  Result r(PQexecPrepared(conn_, name->c_str(), params.size(), params.values(),
                          params.lengths(), params.formats(),
                          /*resultFormat=*/1));
  const ExecStatusType status = PQresultStatus(r.raw());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return ErrorOf(r.raw(), what);
  }
  return r;
}

absl::Status Conn::Exec(const std::string& sql, absl::string_view what) {
  Result r(PQexec(conn_, sql.c_str()));
  const ExecStatusType status = PQresultStatus(r.raw());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return ErrorOf(r.raw(), what);
  }
  return absl::OkStatus();
}

// --- Transaction -----------------------------------------------------------

Transaction::Transaction(Conn& conn, bool read_only) : conn_(conn) {
  status_ = conn_.Exec(read_only ? "BEGIN ISOLATION LEVEL REPEATABLE READ "
                                   "READ ONLY"
                                 : "BEGIN",
                       "begin a transaction");
  open_ = status_.ok();
}

Transaction::~Transaction() {
  if (open_ && !conn_.Broken()) (void)conn_.Exec("ROLLBACK", "roll back");
}

absl::Status Transaction::Commit() {
  VARAN_RETURN_IF_ERROR(status_);
  open_ = false;
  return conn_.Exec("COMMIT", "commit");
}

}  // namespace varan::core::postgres
