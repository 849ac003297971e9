// PostgresCluster, part 1 of 2: membership, leases, connection claims and
// fencing; the shared settings are in postgres_cluster_settings.cc.
#include "core/cluster/postgres_cluster.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/status_macros.h"
#include "core/store/postgres/conn.h"
#include "core/store/postgres/schema.h"

namespace varan::core {
namespace {

using postgres::Params;

// Claims are written under this transaction-level advisory lock ("varanc"
// in ASCII), so their sequence numbers commit in order.
const std::string kLockClaims = "SELECT pg_advisory_xact_lock(130160902893155)";
const std::string kNotify = "SELECT pg_notify('varan_cluster', '')";
const std::string kRenewReplica =
    "INSERT INTO cluster_replicas (id, address, expires_at) "
    "VALUES ($1, $2, now() + $3::float8 * interval '1 microsecond') "
    "ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, "
    "expires_at = EXCLUDED.expires_at";
// Replicas that died without leaving are forgotten a day later.
const std::string kForgetReplicas =
    "DELETE FROM cluster_replicas WHERE expires_at < now() - interval '1 day'";
// Taken when free (never taken, or expired) or renewed by its holder: a row
// comes back only then.
const std::string kTakeLease =
    "INSERT INTO cluster_leases AS l (name, holder, epoch, expires_at) "
    "VALUES ($1, $2, 1, now() + $3::float8 * interval '1 microsecond') "
    "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, "
    "expires_at = EXCLUDED.expires_at, "
    "epoch = CASE WHEN l.holder = EXCLUDED.holder THEN l.epoch "
    "ELSE l.epoch + 1 END "
    "WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now() "
    "RETURNING l.epoch";
const std::string kClaim =
    "INSERT INTO cluster_connections AS c (periphery_id, replica_id, epoch, "
    "seq) VALUES ($1, $2, 1, nextval('cluster_connection_seq')) "
    "ON CONFLICT (periphery_id) DO UPDATE SET replica_id = "
    "EXCLUDED.replica_id, epoch = c.epoch + 1, seq = EXCLUDED.seq";
const std::string kRelease =
    "UPDATE cluster_connections SET replica_id = '', "
    "seq = nextval('cluster_connection_seq') "
    "WHERE periphery_id = $1 AND replica_id = $2";
const std::string kReleaseAll =
    "UPDATE cluster_connections SET replica_id = '', "
    "seq = nextval('cluster_connection_seq') WHERE replica_id = $1";
const std::string kLeaveLeases =
    "UPDATE cluster_leases SET expires_at = '-infinity' WHERE holder = $1";
const std::string kLeaveReplica = "DELETE FROM cluster_replicas WHERE id = $1";
const std::string kLiveReplicas =
    "SELECT id, address FROM cluster_replicas WHERE expires_at > now() "
    "ORDER BY id";
const std::string kLeaseHolders =
    "SELECT name, holder FROM cluster_leases WHERE expires_at > now()";
const std::string kClaimsSince =
    "SELECT periphery_id, replica_id, epoch, seq FROM cluster_connections "
    "WHERE seq > $1 ORDER BY seq";
// The live replicas with tag $1, and fencing it (Fence).
const std::string kLiveWithTag =
    "SELECT id FROM cluster_replicas WHERE starts_with(id, 'r-' || $1) "
    "AND expires_at > now()";
const std::string kFence =
    "INSERT INTO cluster_fences (tag, fenced_by) VALUES ($1, $2) "
    "ON CONFLICT (tag) DO NOTHING";
// Fences are kept for 30 days: a replica cut off longer than that may
// write again when it is back.
const std::string kForgetFences =
    "DELETE FROM cluster_fences WHERE fenced_at < now() - interval '30 days'";

// Connection claims written per renewing transaction at most.
constexpr size_t kMaxClaimsPerRenewal = 500;

// The least time between two refreshes, so a burst of notifications (many
// peripheries moving at once) costs a few refreshes, not one each.
constexpr absl::Duration kMinGap = absl::Milliseconds(20);
// How many refresh intervals between two views make a gap (PresumeLocked).
constexpr int kViewGap = 3;

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresCluster>> PostgresCluster::Open(
    const std::string& url, ClusterOptions options, const Clock* clock) {
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<postgres::Conn> conn,
                         postgres::Conn::Connect(url, absl::Seconds(5)));
  VARAN_RETURN_IF_ERROR(postgres::Migrate(*conn));
  // The first replica creates the secret replicas authenticate each other
  // with; the others read it.
  VARAN_ASSIGN_OR_RETURN(std::string shared_secret,
                         AgreeOn(*conn, "replica_secret", GenerateSecret()));
  std::unique_ptr<PostgresCluster> cluster(new PostgresCluster(
      std::move(options), clock != nullptr ? clock : RealClock::Get(),
      std::move(conn)));
  cluster->secret_ = std::move(shared_secret);
  cluster->url_ = url;
  absl::Status first =
      cluster->wake_fd_ < 0
          ? absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)))
          : cluster->Refresh();
  if (!first.ok()) {
    // Never joined (a failed renewal commits nothing): nothing to leave.
    cluster->Crash();
    return first;
  }
  spdlog::info("cluster: replica {} ({}) joined on {}", cluster->self_.id,
               cluster->self_.address, cluster->conn_->description());
  cluster->thread_ = std::thread([c = cluster.get()] { c->Run(); });
  return cluster;
}

absl::Status PostgresCluster::Fence(const std::string& tag) {
  VARAN_ASSIGN_OR_RETURN(std::unique_ptr<postgres::Conn> conn,
                         postgres::Conn::Connect(url_, absl::Seconds(5)));
  postgres::Transaction txn(*conn, /*read_only=*/false);
  VARAN_RETURN_IF_ERROR(txn.status());
  // Waits for the replica's writing transactions in progress: they commit
  // before the fence, or see it. Not for ever: one the replica left open
  // when it was cut off ends when the server times it out (Conn), and the
  // fence is tried again at the next scan.
  VARAN_RETURN_IF_ERROR(
      conn->Exec("SET LOCAL lock_timeout = '5s'", "limit the fence's wait"));
  VARAN_RETURN_IF_ERROR(
      conn->Run(postgres::kLockFence, Params().Text(tag), "lock a fence")
          .status());
  VARAN_ASSIGN_OR_RETURN(
      postgres::Result live,
      conn->Run(kLiveWithTag, Params().Text(tag), "read a replica to fence"));
  if (live.rows() > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("replica ", live.Bytes(0, 0),
                     " is live: it is not fenced (its work stays its own)"));
  }
  VARAN_RETURN_IF_ERROR(
      conn->Run(kFence, Params().Text(tag).Text(self_.id), "fence a replica")
          .status());
  return txn.Commit();
}

bool PostgresCluster::Fenced() const {
  absl::MutexLock lock(&mu_);
  return fenced_;
}

bool PostgresCluster::Reachable() const {
  absl::MutexLock lock(&mu_);
  return !fenced_ && last_.ok();
}

PostgresCluster::PostgresCluster(ClusterOptions options, const Clock* clock,
                                 std::unique_ptr<postgres::Conn> conn)
    : options_([&] {
        // A lease must survive two failed renewals in a row.
        options.refresh_interval =
            std::min(options.refresh_interval, options.ttl / 3);
        return std::move(options);
      }()),
      clock_(clock),
      self_{options_.replica_id.empty() ? NewReplicaId() : options_.replica_id,
            options_.address},
      tag_(ReplicaTag(self_.id)),
      conn_(std::move(conn)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  absl::MutexLock lock(&mu_);
  renewed_ = clock_->Now();
}

PostgresCluster::~PostgresCluster() {
  bool crashed;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    // A fenced replica writes nothing more, not even its leaving.
    crashed = crashed_ || fenced_;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  if (!crashed) {
    const absl::Status left = Leave();
    if (left.ok()) {
      spdlog::info("cluster: replica {} left", self_.id);
    } else {
      spdlog::warn(
          "cluster: replica {} could not leave ({}); the others take over "
          "its leases and connections after {}",
          self_.id, left.message(), absl::FormatDuration(options_.ttl));
    }
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

void PostgresCluster::Crash() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    crashed_ = true;
    leases_.clear();
  }
  Wake();
  if (thread_.joinable()) thread_.join();
}

// --- The view --------------------------------------------------------------

std::vector<ReplicaInfo> PostgresCluster::Replicas() const {
  absl::MutexLock lock(&mu_);
  return replicas_;
}

bool PostgresCluster::Holds(absl::string_view name) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(name);
  return it != leases_.end() && now < it->second;
}

void PostgresCluster::Connected(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    pending_[id] = true;
  }
  Wake();
}

void PostgresCluster::Disconnected(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    pending_[id] = false;
  }
  Wake();
}

std::optional<ReplicaInfo> PostgresCluster::HolderOf(
    absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = holders_.find(name);
  if (it == holders_.end()) return std::nullopt;
  for (const ReplicaInfo& r : replicas_) {
    if (r.id == it->second) return r;
  }
  return std::nullopt;
}

std::optional<PeripheryOwner> PostgresCluster::OwnerOf(
    const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = claims_.find(id);
  if (it == claims_.end() || it->second.replica.empty()) return std::nullopt;
  for (const ReplicaInfo& r : replicas_) {
    if (r.id == it->second.replica) {
      return PeripheryOwner{r, it->second.epoch};
    }
  }
  return std::nullopt;
}

Holding PostgresCluster::HoldingOf(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = claims_.find(id);
  if (it == claims_.end() || it->second.replica.empty()) {
    return Holding::kNowhere;
  }
  for (const ReplicaInfo& r : replicas_) {
    if (r.id == it->second.replica) {
      return r.id == self_.id ? Holding::kHere : Holding::kElsewhere;
    }
  }
  return Holding::kNowhere;
}

absl::Status PostgresCluster::Sync() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = started_ + 1;
  Wake();
  // Claims go in batches: every one made before the call is written (or
  // the last refresh failed) once none waits and none is being written.
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || fenced_ ||
           (finished_ >= target &&
            (!last_.ok() || (pending_.empty() && claims_in_flight_ == 0)));
  };
  mu_.Await(absl::Condition(&done));
  if (fenced_) {
    return absl::FailedPreconditionError(
        absl::StrCat("replica ", self_.id, " was fenced"));
  }
  if (finished_ < target) {
    return absl::FailedPreconditionError("the cluster view is closed");
  }
  return last_;
}

// --- The thread ------------------------------------------------------------

void PostgresCluster::Run() {
  bool failing = false;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      ++started_;
    }
    const absl::Time began = absl::Now();
    const absl::Status status = Refresh();
    if (Fenced()) {
      spdlog::critical("cluster: {}", status.message());
      {
        absl::MutexLock lock(&mu_);
        ++finished_;
        last_ = status;
      }
      if (options_.on_fenced) options_.on_fenced();
      return;  // never renews again
    }
    if (!status.ok() && options_.on_lapsed) {
      std::vector<ReplicaInfo> others;
      bool lapsed = false;
      absl::Time renewed;
      {
        absl::MutexLock lock(&mu_);
        renewed = renewed_;
        lapsed = clock_->Now() - renewed_ >= options_.ttl;
        for (const ReplicaInfo& r : replicas_) {
          if (r.id != self_.id) others.push_back(r);
        }
      }
      if (lapsed) options_.on_lapsed(others, renewed);
    }
    if (!status.ok() && !failing) {
      spdlog::warn(
          "cluster: {}; this replica keeps its last view and retries every "
          "{} (its leases lapse meanwhile)",
          status.message(), absl::FormatDuration(options_.refresh_interval));
    } else if (status.ok() && failing) {
      spdlog::info("cluster: {} is reachable again", conn_->description());
    }
    failing = !status.ok();
    {
      absl::MutexLock lock(&mu_);
      ++finished_;
      last_ = status;
    }
    Wait(options_.refresh_interval);
    const absl::Duration since = absl::Now() - began;
    if (since < kMinGap) absl::SleepFor(kMinGap - since);
  }
}

absl::Status PostgresCluster::Refresh() {
  if (conn_->Broken()) VARAN_RETURN_IF_ERROR(conn_->Reconnect());
  // LISTEN again after every reconnect (a new session listens to nothing);
  // repeating it on a live session is harmless and cheap.
  VARAN_RETURN_IF_ERROR(conn_->Exec("LISTEN varan_cluster", "listen"));
  absl::flat_hash_map<std::string, bool> changes;
  bool more = false;
  {
    absl::MutexLock lock(&mu_);
    // A bounded batch, so the renewing transaction stays short even when
    // thousands of peripheries connect at once: a long one would let this
    // replica's membership look expired to the others before it commits.
    while (!pending_.empty() && changes.size() < kMaxClaimsPerRenewal) {
      auto it = pending_.begin();
      changes.emplace(it->first, it->second);
      pending_.erase(it);
    }
    more = !pending_.empty();
    claims_in_flight_ = changes.size();
  }
  if (more) Wake();  // the rest right after this one
  absl::flat_hash_map<std::string, absl::Time> held;
  const absl::Time start = clock_->Now();
  const absl::Status renewed = Renew(changes, &held);
  {
    absl::MutexLock lock(&mu_);
    if (renewed.ok() && !crashed_) {
      // (A crash while the renewal ran keeps its leases cleared.)
      renewed_ = start;
      leases_ = std::move(held);
    } else {
      // Not recorded: again next time, unless superseded meanwhile. Leases
      // keep their deadlines and lapse by them.
      for (auto& [id, connected] : changes) pending_.try_emplace(id, connected);
    }
    claims_in_flight_ = 0;
  }
  VARAN_RETURN_IF_ERROR(renewed);
  return ReadView();
}

absl::Status PostgresCluster::Renew(
    const absl::flat_hash_map<std::string, bool>& changes,
    absl::flat_hash_map<std::string, absl::Time>* held) {
  // Before the transaction begins, so before the database's now().
  const absl::Time start = clock_->Now();
  const int64_t ttl_us = absl::ToInt64Microseconds(options_.ttl);
  postgres::Transaction txn(*conn_, /*read_only=*/false);
  VARAN_RETURN_IF_ERROR(txn.status());
  // Fenced: never renewed again (the others took this replica for dead).
  if (absl::Status fence = postgres::CheckNotFenced(*conn_, tag_);
      !fence.ok()) {
    if (absl::IsFailedPrecondition(fence)) {
      absl::MutexLock lock(&mu_);
      fenced_ = true;
      leases_.clear();
    }
    return fence;
  }
  VARAN_RETURN_IF_ERROR(
      conn_
          ->Run(kRenewReplica,
                Params().Text(self_.id).Text(self_.address).Int(ttl_us),
                "renew this replica's membership")
          .status());
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kForgetReplicas, "forget dead replicas").status());
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kForgetFences, "forget old fences").status());
  if (!changes.empty()) {
    VARAN_RETURN_IF_ERROR(
        conn_->Run(kLockClaims, "lock connection claims").status());
    for (const auto& [id, connected] : changes) {
      VARAN_RETURN_IF_ERROR(
          conn_
              ->Run(connected ? kClaim : kRelease,
                    Params().Text(id).Text(self_.id),
                    connected ? "claim a connection" : "drop a connection")
              .status());
    }
    VARAN_RETURN_IF_ERROR(
        conn_->Run(kNotify, "notify the other replicas").status());
  }
  for (const std::string& name : options_.leases) {
    VARAN_ASSIGN_OR_RETURN(
        postgres::Result r,
        conn_->Run(kTakeLease, Params().Text(name).Text(self_.id).Int(ttl_us),
                   "take or renew a lease"));
    if (r.rows() > 0) (*held)[name] = start + options_.ttl;
  }
  return txn.Commit();
}

absl::Status PostgresCluster::ReadView() {
  VARAN_ASSIGN_OR_RETURN(postgres::Result live,
                         conn_->Run(kLiveReplicas, "read the live replicas"));
  VARAN_ASSIGN_OR_RETURN(postgres::Result changed,
                         conn_->Run(kClaimsSince, Params().Int(last_seq_),
                                    "read connection claims"));
  VARAN_ASSIGN_OR_RETURN(postgres::Result holders,
                         conn_->Run(kLeaseHolders, "read lease holders"));
  std::vector<ReplicaInfo> replicas;
  replicas.reserve(static_cast<size_t>(live.rows()));
  for (int i = 0; i < live.rows(); ++i) {
    replicas.push_back(
        {std::string(live.Bytes(i, 0)), std::string(live.Bytes(i, 1))});
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  PresumeLocked(replicas, now);
  replicas_ = std::move(replicas);
  holders_.clear();
  for (int i = 0; i < holders.rows(); ++i) {
    holders_[std::string(holders.Bytes(i, 0))] =
        std::string(holders.Bytes(i, 1));
  }
  for (int i = 0; i < changed.rows(); ++i) {
    claims_[std::string(changed.Bytes(i, 0))] =
        Claim{std::string(changed.Bytes(i, 1)), changed.Int(i, 2)};
    last_seq_ = std::max(last_seq_, changed.Int(i, 3));
  }
  return absl::OkStatus();
}

void PostgresCluster::PresumeLocked(std::vector<ReplicaInfo>& read,
                                    absl::Time now) {
  absl::flat_hash_set<std::string> seen;
  for (const ReplicaInfo& r : read) seen.insert(r.id);
  // A gap in this replica's view: the database was out of its reach (or
  // this process stalled). Memberships that lapsed meanwhile may only wait
  // for their replica to reach the database again: those replicas stay
  // live for one ttl from now, and leave unless they renew by then. Without
  // it, the first replica back would take the others for dead and take over
  // the jobs they are running.
  if (last_view_ != absl::InfinitePast() &&
      now - last_view_ > kViewGap * options_.refresh_interval) {
    std::vector<std::string> kept;
    for (const ReplicaInfo& r : replicas_) {
      if (r.id == self_.id || seen.contains(r.id)) continue;
      if (presumed_.try_emplace(r.id, Presumed{r, now + options_.ttl}).second) {
        kept.push_back(r.id);
      }
    }
    if (!kept.empty()) {
      spdlog::warn(
          "cluster: after {} without a view of the cluster, replica(s) {} "
          "count as live for {} more in case they are still reconnecting",
          absl::FormatDuration(now - last_view_), absl::StrJoin(kept, ", "),
          absl::FormatDuration(options_.ttl));
    }
  }
  last_view_ = now;
  for (auto it = presumed_.begin(); it != presumed_.end();) {
    auto here = it++;
    if (seen.contains(here->first) || now >= here->second.until) {
      presumed_.erase(here);
    } else {
      read.push_back(here->second.info);
    }
  }
}

absl::Status PostgresCluster::Leave() {
  if (conn_->Broken()) VARAN_RETURN_IF_ERROR(conn_->Reconnect());
  postgres::Transaction txn(*conn_, /*read_only=*/false);
  VARAN_RETURN_IF_ERROR(txn.status());
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kLockClaims, "lock connection claims").status());
  const Params me = Params().Text(self_.id);
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kReleaseAll, me, "drop this replica's connections").status());
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kLeaveLeases, me, "give up this replica's leases").status());
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kLeaveReplica, me, "end this replica's membership").status());
  VARAN_RETURN_IF_ERROR(
      conn_->Run(kNotify, "notify the other replicas").status());
  return txn.Commit();
}

void PostgresCluster::Wake() {
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
}

void PostgresCluster::Wait(absl::Duration timeout) {
  const int pg = conn_->Broken() ? -1 : PQsocket(conn_->get());
  // Notifications libpq took in during the last refresh's statements.
  if (pg >= 0) {
    bool notified = false;
    while (PGnotify* n = PQnotifies(conn_->get())) {
      PQfreemem(n);
      notified = true;
    }
    if (notified) return;
  }
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {pg, POLLIN, 0}};
  const int ms = static_cast<int>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout)));
  if (poll(fds, pg >= 0 ? 2 : 1, ms) <= 0) return;
  if (fds[0].revents != 0) {
    uint64_t count;
    (void)!read(wake_fd_, &count, sizeof(count));
  }
  if (pg >= 0 && fds[1].revents != 0) {
    // A notification (or the connection closing: the next refresh sees
    // it). What they say does not matter: the refresh reads the tables.
    PQconsumeInput(conn_->get());
    while (PGnotify* n = PQnotifies(conn_->get())) PQfreemem(n);
  }
}

}  // namespace varan::core
