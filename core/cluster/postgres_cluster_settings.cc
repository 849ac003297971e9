// PostgresCluster, part 2 of 2: the settings every replica shares (Agree,
// Setting, Replace), in table cluster_settings. The class and its contract
// are in postgres_cluster.h and cluster.h.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "core/cluster/postgres_cluster.h"
#include "core/store/postgres/conn.h"

namespace varan::core {
namespace {

using postgres::Params;

const std::string kPropose =
    "INSERT INTO cluster_settings (name, value) VALUES ($1, $2) "
    "ON CONFLICT (name) DO NOTHING";
const std::string kReadSetting =
    "SELECT value FROM cluster_settings WHERE name = $1";
const std::string kReplaceSetting =
    "UPDATE cluster_settings SET value = $3 WHERE name = $1 AND value = $2 "
    "RETURNING name";

// Runs `sql` on `conn`, connected to `url` first if it is not; on an error
// drops it, so the next call connects anew (the database may have
// restarted).
absl::StatusOr<postgres::Result> RunKeeping(
    std::unique_ptr<postgres::Conn>& conn, const std::string& url,
    const std::string& sql, const Params& params, absl::string_view what) {
  if (conn == nullptr) {
    VARAN_ASSIGN_OR_RETURN(conn,
                           postgres::Conn::Connect(url, absl::Seconds(5)));
  }
  absl::StatusOr<postgres::Result> out = conn->Run(sql, params, what);
  if (!out.ok()) conn.reset();
  return out;
}

// Setting `name` through RunKeeping: NOT_FOUND when it was never set.
absl::StatusOr<std::string> ReadKeeping(std::unique_ptr<postgres::Conn>& conn,
                                        const std::string& url,
                                        const std::string& name) {
  VARAN_ASSIGN_OR_RETURN(
      postgres::Result read,
      RunKeeping(conn, url, kReadSetting, Params().Text(name),
                 absl::StrCat("read the cluster's ", name)));
  if (read.rows() != 1) {
    return absl::NotFoundError(absl::StrCat("no cluster setting ", name));
  }
  return std::string(read.Bytes(0, 0));
}

}  // namespace

// What the replicas agree on for setting `name` (Cluster::Agree), through
// `conn`.
absl::StatusOr<std::string> PostgresCluster::AgreeOn(
    postgres::Conn& conn, const std::string& name,
    const std::string& proposal) {
  VARAN_RETURN_IF_ERROR(conn.Run(kPropose, Params().Text(name).Text(proposal),
                                 absl::StrCat("propose the cluster's ", name))
                            .status());
  VARAN_ASSIGN_OR_RETURN(postgres::Result agreed,
                         conn.Run(kReadSetting, Params().Text(name),
                                  absl::StrCat("read the cluster's ", name)));
  if (agreed.rows() != 1) {
    return absl::InternalError(
        absl::StrCat("the cluster's ", name, " is missing"));
  }
  return std::string(agreed.Bytes(0, 0));
}

absl::StatusOr<std::string> PostgresCluster::Agree(
    const std::string& name, const std::string& proposal) {
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<postgres::Conn> conn,
                         postgres::Conn::Connect(url_, absl::Seconds(5)));
  return AgreeOn(*conn, name, proposal);
}

absl::StatusOr<std::string> PostgresCluster::Setting(const std::string& name) {
  absl::MutexLock lock(&settings_mu_);
  return ReadKeeping(settings_conn_, url_, name);
}

absl::Status PostgresCluster::Replace(const std::string& name,
                                      const std::string& expected,
                                      const std::string& value) {
  absl::MutexLock lock(&settings_mu_);
  VARAN_ASSIGN_OR_RETURN(
      postgres::Result replaced,
      RunKeeping(settings_conn_, url_, kReplaceSetting,
                 Params().Text(name).Text(expected).Text(value),
                 absl::StrCat("change the cluster's ", name)));
  if (replaced.rows() == 1) return absl::OkStatus();
  // Changed meanwhile, or never set.
  VARAN_RETURN_IF_ERROR(ReadKeeping(settings_conn_, url_, name).status());
  return absl::AbortedError(absl::StrCat(
      "the cluster's ", name, " was changed by another replica meanwhile"));
}

}  // namespace varan::core
