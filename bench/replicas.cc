#include "bench/replicas.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/secrets.h"
#include "tests/postgres/test_postgres.h"

namespace varan::bench {

BenchPostgres::BenchPostgres() = default;
BenchPostgres::~BenchPostgres() = default;

absl::Status BenchPostgres::Open(const std::string& url) {
  if (!url.empty()) {
    url_ = url;
    return absl::OkStatus();
  }
  own_ = std::make_unique<testing::TestPostgres>();
  if (absl::Status s = own_->Start(); !s.ok()) return s;
  url_ = own_->url();
  return absl::OkStatus();
}

absl::StatusOr<std::string> BenchPostgres::NewDatabase(
    const std::string& prefix) {
  const std::string name =
      absl::StrCat(prefix, "_", static_cast<long>(getpid()), "_", ++databases_);
  PGconn* conn = PQconnectdb(url_.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    // PQerrorMessage names host and port, never the password.
    std::string error = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", error));
  }
  PGresult* r = PQexec(conn, absl::StrCat("CREATE DATABASE ", name).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  const std::string error = ok ? "" : PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  if (!ok) {
    return absl::InternalError(
        absl::StrCat("CREATE DATABASE ", name, ": ", error));
  }
  // The same URL with the new database as its path (the query, such as
  // ?sslmode=disable, stays).
  const size_t scheme = url_.find("://");
  const size_t path =
      url_.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const size_t query = url_.find('?');
  std::string out = url_.substr(0, std::min(path, query));
  absl::StrAppend(&out, "/", name);
  if (query != std::string::npos) absl::StrAppend(&out, url_.substr(query));
  return out;
}

std::string BenchPostgres::Describe() const {
  return own_ != nullptr
             ? "PostgreSQL 15 on loopback, started by this benchmark "
               "(Debian's defaults)"
             : "PostgreSQL 15 on loopback, started by bench/run.sh "
               "(Debian's defaults)";
}

namespace {

std::string LastLine(const std::string& log) {
  size_t end = log.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  size_t start = log.rfind('\n', end);
  return log.substr(start == std::string::npos ? 0 : start + 1,
                    end - (start == std::string::npos ? 0 : start + 1) + 1);
}

}  // namespace

Replicas::Replicas(ReplicaOptions options) : options_(std::move(options)) {}

Replicas::~Replicas() {
  Stop();
  // VARAN_BENCH_KEEP_LOGS=DIR: the cores' logs are copied there, as
  // <pid>-core-<n>.log, before their directory goes.
  const char* keep = getenv("VARAN_BENCH_KEEP_LOGS");
  if (keep == nullptr || *keep == '\0') return;
  for (int i = 0; i < size(); ++i) {
    testing::WriteFile(absl::StrCat(keep, "/", pid(i), "-core-", i + 1, ".log"),
                       Log(i));
  }
}

std::string Replicas::address(int i) const {
  return absl::StrCat("[::1]:", ports_[static_cast<size_t>(i)]);
}

std::string Replicas::Log(int i) const {
  return daemons_[static_cast<size_t>(i)]->Log();
}

std::vector<std::string> Replicas::Warnings(int i, size_t max,
                                            size_t* total) const {
  std::vector<std::string> out;
  size_t count = 0;
  std::istringstream in(Log(i));
  for (std::string line; std::getline(in, line);) {
    // Text format: "<time> <level> <logger>: <message>" (spdlog spells
    // the warn level "warning").
    if (absl::StrContains(line, "Z warning ") ||
        absl::StrContains(line, "Z error ") ||
        absl::StrContains(line, "Z critical ")) {
      if (out.size() < max) out.push_back(line);
      ++count;
    }
  }
  if (total != nullptr) *total = count;
  return out;
}

std::string Replicas::Exited() {
  std::string out;
  for (int i = 0; i < size(); ++i) {
    if (Running(i)) continue;
    const int code =
        daemons_[static_cast<size_t>(i)]->Wait(absl::ZeroDuration());
    absl::StrAppend(
        &out, out.empty() ? "" : "; ", "replica ", i + 1, " (pid ", pid(i),
        ") exited with status ", code,
        code > 128 ? absl::StrCat(" (signal ", code - 128, ")") : "",
        ", its log ending ", "\"", LastLine(Log(i)), "\"");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<client::CoreClient>> Replicas::Client(
    int i, absl::Duration timeout) const {
  return client::CoreClient::Create({address(i), admin_token_, timeout, {}});
}

absl::Status Replicas::Start() {
  if (options_.replicas < 1 ||
      (options_.replicas > 1 &&
       (options_.database.empty() || !options_.cluster))) {
    return absl::InvalidArgumentError(
        "several replicas need a PostgreSQL database and cluster mode");
  }
  admin_token_ = GenerateSecret();
  join_token_ = GenerateSecret();
  const std::string admin_file = admin_token_file();
  const std::string join_file = join_token_file();
  if (absl::Status s = WriteSecretFile(admin_file, admin_token_); !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteSecretFile(join_file, join_token_); !s.ok()) {
    return s;
  }
  for (int i = 0; i < options_.replicas; ++i) {
    ports_.push_back(testing::FreePort());
    const std::string listen = address(i);
    std::vector<std::string> argv = {testing::BinPath("varan-core"),
                                     "--listen",
                                     listen,
                                     "--data-dir",
                                     dir_.File(absl::StrCat("core-", i + 1)),
                                     "--admin-token-file",
                                     admin_file,
                                     "--join-token-file",
                                     join_file,
                                     "--insecure-plaintext"};
    if (!options_.database.empty()) {
      // In a file, as a Secret would hold it: never on a command line
      // that ps shows.
      const std::string url_file = dir_.File("database.url");
      if (i == 0) {
        absl::Status s = WritePrivateFile(url_file, options_.database);
        if (!s.ok()) return s;
      }
      argv.insert(argv.end(), {"--database-file", url_file});
      if (options_.cluster)
        argv.insert(argv.end(), {"--replica-address", listen});
    }
    argv.insert(argv.end(), options_.extra_args.begin(),
                options_.extra_args.end());
    daemons_.push_back(std::make_unique<testing::Daemon>(
        argv, dir_.File(absl::StrCat("core-", i + 1, ".log"))));
    testing::Daemon* daemon = daemons_.back().get();
    daemon->Start();
    auto client = Client(i, absl::Seconds(2));
    if (!client.ok()) return client.status();
    const bool up = testing::WaitFor(
        [&] {
          return !daemon->Running() ||
                 (testing::Healthy(listen) && (*client)->GetInfo().ok());
        },
        absl::Seconds(30));
    if (!up || !daemon->Running()) {
      return absl::UnavailableError(
          absl::StrCat("replica ", i + 1, " at ", listen,
                       " did not come up; its log:\n", daemon->Log()));
    }
  }
  return absl::OkStatus();
}

void Replicas::Stop() {
  for (auto it = daemons_.rbegin(); it != daemons_.rend(); ++it) {
    if ((*it)->Running()) (*it)->Stop(15, absl::Seconds(30));
  }
}

}  // namespace varan::bench
