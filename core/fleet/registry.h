// FleetRegistry: every periphery core knows — identity, labels, address,
// facts, stats, credential and liveness — kept in memory and written through
// to the Store.
//
// Liveness. A periphery is online once a heartbeat has confirmed its latest
// registration (it holds the credential core issued; peripheries heartbeat
// right after registering) and while its last heartbeat is no older than
// `ttl_intervals` heartbeat intervals. After a core restart, peripheries
// that were online when core stopped stay online for `restart_grace`, so a
// restart never marks the fleet down while it reconnects. Time comes from
// the injected Clock; Tick() (called periodically by core, directly by
// tests) notices peripheries going offline and tells the listener, so their
// running targets become LOST.
//
// Persistence. Registrations, label changes, removals and online/offline
// transitions are written at once; stats and last-seen times of healthy
// peripheries at most every `persist_interval` (from Tick).
//
// Replicas (#19). With a Cluster (several core replicas on one database),
// the fleet is shared through the store: Refresh() (every few seconds, on
// a thread of its own) re-reads it, so a periphery registered, relabeled
// or removed on another replica shows here. Each replica counts the
// heartbeats it receives itself; a periphery whose connection another live
// replica holds (Cluster::OwnerOf) is online here while that lasts and for
// one TTL after, so a replica dying hands its peripheries to the others
// without marking them offline. The replica receiving a periphery's
// heartbeats claims its connection (Cluster::Connected) and writes its
// stats and its online/offline transitions; the others write only what an
// operator changes through them (labels, removal). A change made here is
// not overwritten by a refresh that read the store before the change was
// committed.
//
// Thread-safe. The listener is called without the registry's lock.
#pragma once

#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/cluster/cluster.h"
#include "core/fleet/selector.h"
#include "core/store/store.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

struct FleetOptions {
  absl::Duration heartbeat_interval = absl::Seconds(10);
  int ttl_intervals = 3;
  // After a restart, how long peripheries that were online stay online
  // without a heartbeat. Zero: one TTL.
  absl::Duration restart_grace = absl::ZeroDuration();
  // How often stats and last-seen times are written to the store.
  absl::Duration persist_interval = absl::Seconds(30);
  // Keep only a hash of each periphery's credential (kCredentialHashPrefix
  // and SecretHash): for a core that authenticates to peripheries with its
  // certificate (the built-in CA) and so never presents the credential.
  // Records loaded with a credential in the clear are converted. Without
  // it the store keeps the credential itself, which core presents when it
  // dials the periphery (plaintext, or an operator's certificates).
  bool hash_credentials = false;
};

// How a stored credential that is a hash begins.
inline constexpr char kCredentialHashPrefix[] = "sha256:";

// What the dispatcher needs to reach one periphery.
struct DialTarget {
  std::string id;
  std::string name;
  std::string address;
  // The credential to present, "" when only its hash is kept (core then
  // authenticates with its certificate).
  std::string credential;
  bool online = false;
  absl::Time last_seen;
};

class FleetRegistry {
 public:
  // `store` must not be null (a MemoryStore where nothing is to persist);
  // `cluster` is null for a core alone. All must outlive the registry.
  FleetRegistry(const Clock* clock, FleetOptions options, Store* store,
                Cluster* cluster = nullptr);

  // Loads the stored fleet (call once, before serving). Peripheries that
  // were online get the restart grace period. Returns how many were loaded.
  absl::StatusOr<size_t> Load();

  // Called with (periphery id, reason) when an online periphery goes
  // offline or is removed. Set before serving.
  void SetGoneListener(
      std::function<void(const std::string&, const std::string&)> listener);

  struct Registration {
    std::string id;
    std::string credential;
  };

  // Adds a periphery, or takes over the record of the same name (keeping
  // its id, first-seen time and operator labels, issuing a new credential)
  // as long as no heartbeat has confirmed that record's credential yet.
  // INVALID_ARGUMENT for a bad name, label or address; ALREADY_EXISTS when
  // a confirmed periphery has the name (a join token does not let anyone
  // take over a periphery that holds its credential: an operator removes it
  // first). `peer` is the caller's normalised address. A periphery
  // registering through a tunnel (CONNECTION_TUNNEL) may give no address.
  absl::StatusOr<Registration> Register(
      const varan::v1::RegisterRequest& req, const std::string& peer,
      varan::v1::Connection connection = varan::v1::CONNECTION_DIAL);

  // True when the periphery with `id` is online now (heartbeats within the
  // TTL, or the restart grace).
  bool IsOnline(const std::string& id) const;

  // Name of the periphery with `id` (empty if unknown).
  std::string NameOf(const std::string& id) const;

  // Dial mode: `address` (host:port, as FormatHostPort writes it) is where
  // periphery `id` is dialed from now on, when it changed; stored and
  // logged. Call after its heartbeat was recorded (which authenticated it).
  void Readdress(const std::string& id, const std::string& address);

  // Records a heartbeat. NOT_FOUND for an unknown or removed id,
  // UNAUTHENTICATED when `credential` is not the one issued to that id.
  absl::Status Heartbeat(const std::string& id, absl::string_view credential,
                         const varan::v1::HostStats& stats,
                         const std::string& peer);

  // Records the pins of the CAs periphery `id` says it trusts (its
  // heartbeats, core's built-in CA), written to the store when they
  // changed. Call after its heartbeat was recorded.
  void Trusts(const std::string& id, const std::vector<std::string>& pins);
  // The ids of the registered (not removed) peripheries, online or not,
  // that have not said they trust every pin in `pins`, sorted by the
  // peripheries' names: a switch to a new CA
  // would cut them off. With replicas, what the others heard shows after
  // the next Refresh.
  std::vector<std::string> NotTrusting(
      const std::vector<std::string>& pins) const;

  // OK when `credential` is the one issued to periphery `id`. NOT_FOUND for
  // an unknown or removed id, UNAUTHENTICATED otherwise.
  absl::Status CheckCredential(const std::string& id,
                               absl::string_view credential) const;

  // Peripheries matching `target`, sorted by name. INVALID_ARGUMENT for a bad
  // selector; NOT_FOUND when a named periphery does not exist.
  absl::StatusOr<std::vector<varan::v1::Periphery>> List(
      const varan::v1::Target& target, bool include_removed = false) const;

  // One page of List: at most `limit` (at least 1) peripheries after the
  // one `page_token` names (empty: from the start), and the token of the
  // next page (empty on the last). A token is opaque to callers: the
  // position (name, live or removed, id) of the page's last periphery, so a
  // periphery registered or removed between pages neither shifts nor
  // repeats the others. INVALID_ARGUMENT for a malformed token; otherwise
  // List's errors.
  absl::StatusOr<varan::v1::ListPeripheriesResponse> ListPage(
      const varan::v1::Target& target, bool include_removed,
      absl::string_view page_token, size_t limit) const;

  // One periphery by name or id (a removed one only by id). NOT_FOUND
  // otherwise.
  absl::StatusOr<varan::v1::Periphery> Get(const std::string& name_or_id) const;

  // Like List (without removed ones), with what is needed to dial each match.
  absl::StatusOr<std::vector<DialTarget>> Resolve(
      const varan::v1::Target& target) const;

  // Removes a periphery (see Fleet.RemovePeriphery); returns its last
  // record. NOT_FOUND.
  absl::StatusOr<varan::v1::Periphery> Remove(const std::string& name_or_id);

  // Applies an UpdateLabels request; returns the updated record. NOT_FOUND;
  // INVALID_ARGUMENT for a bad key or value, or a key both set and removed.
  absl::StatusOr<varan::v1::Periphery> UpdateLabels(
      const varan::v1::UpdateLabelsRequest& request);

  // Notices online peripheries that went offline (telling the listener) and
  // writes stats due for persistence. Call every fraction of a heartbeat
  // interval.
  void Tick();

  // With a Cluster: re-reads the fleet from the store (after the writes
  // made here so far are committed) and takes what the other replicas
  // changed, and which peripheries they hold. Only what was saved since the
  // last re-read is read (Store::LoadChangedPeripheries), and all of it
  // every `kFullRefreshEvery` calls, in case. Blocks on the store; call it
  // every few seconds from one thread of its own. Without one: OK, nothing
  // to do.
  absl::Status Refresh();
  static constexpr int kFullRefreshEvery = 60;

  absl::Duration heartbeat_interval() const {
    return options_.heartbeat_interval;
  }
  absl::Duration ttl() const {
    return options_.heartbeat_interval * options_.ttl_intervals;
  }

 private:
  struct Record {
    StoredPeriphery stored;  // info.state, first/last seen filled on read
    absl::Time first_seen;
    absl::Time last_seen;
    // Last heartbeat received by this replica (Load: the stored last seen).
    absl::Time local_seen = absl::InfinitePast();
    // Online until then even without heartbeats (restart grace).
    absl::Time grace_until = absl::InfinitePast();
    // Online until then because another replica holds its connection.
    absl::Time remote_until = absl::InfinitePast();
    // This replica claimed its connection (Cluster::Connected).
    bool here = false;
    // save_gen_ at this record's last write (Refresh skips records written
    // after its read began).
    uint64_t saved_gen = 0;
    // Online as of the last Tick or transition (what was last persisted).
    bool was_online = false;
    bool removed = false;
    // Stats or times changed since the last write.
    bool dirty = false;
  };

  // Where a record sorts in List and ListPage: by name, a live one before
  // removed ones, then by id. Views into a record or a parsed token.
  struct Position {
    absl::string_view name;
    bool removed = false;
    absl::string_view id;
    friend bool operator<(const Position& a, const Position& b) {
      return std::tie(a.name, a.removed, a.id) <
             std::tie(b.name, b.removed, b.id);
    }
  };
  static Position PositionOf(const Record& r) {
    return Position{r.stored.info.name(), r.removed, r.stored.info.id()};
  }
  // A page token names a position: web-safe base64 of
  // "name\nremoved (0 or 1)\nid".
  static std::string PageToken(const Position& pos);
  // The position `token` names; its views point into `storage`. False for
  // a malformed token.
  static bool ParsePageToken(absl::string_view token, std::string* storage,
                             Position* pos);

  // Matching records sorted by name, a live one before removed ones of the
  // same name, then by id (RecordBefore).
  absl::StatusOr<std::vector<const Record*>> Match(
      const varan::v1::Target& target, bool include_removed) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The record with that name (live ones only) or id, or null.
  const Record* FindLocked(const std::string& name_or_id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Record* FindLocked(const std::string& name_or_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return const_cast<Record*>(
        static_cast<const FleetRegistry*>(this)->FindLocked(name_or_id));
  }
  varan::v1::Periphery Render(const Record& r) const;
  bool Online(const Record& r, absl::Time now) const;
  // Writes `r` to the store with its current state.
  void SaveLocked(Record& r, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What the store keeps of `credential` (see hash_credentials).
  std::string Kept(const std::string& credential) const;
  // Whether `given` is the credential `stored` keeps (itself or its hash).
  static bool CredentialMatches(const std::string& stored,
                                absl::string_view given);
  // Takes `p` (read by Refresh) into the registry; records gone (removed
  // elsewhere) are appended to `gone`. registry_sync.cc.
  void MergeLocked(StoredPeriphery p,
                   std::vector<std::pair<std::string, std::string>>* gone)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // With a Cluster: counts the peripheries other live replicas hold as
  // online (Record::remote_until). From memory only, so Tick runs it too:
  // a store that cannot be read (a database outage) never makes them
  // offline.
  void UpdateOwnersLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether this replica writes `r`'s online/offline transitions: alone,
  // when it received its heartbeats, or when no live replica holds it and
  // this one holds the liveness lease.
  bool WritesTransitionsLocked(const Record& r) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Claims or releases the connection of `r` (Cluster) as its heartbeats
  // start or stop arriving here.
  void SetHereLocked(Record& r, bool here) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* const clock_;
  const FleetOptions options_;
  Store* const store_;
  Cluster* const cluster_;
  // Refresh's own (one thread at a time): where the next read of changed
  // peripheries starts, and how many reads since the last full one.
  uint64_t changed_cursor_ = 0;
  int changed_reads_ = 0;
  mutable absl::Mutex mu_;
  // Counts writes (Record::saved_gen).
  uint64_t save_gen_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, Record> by_id_ ABSL_GUARDED_BY(mu_);
  // Peripheries not removed, by name.
  absl::flat_hash_map<std::string, std::string> id_by_name_
      ABSL_GUARDED_BY(mu_);
  absl::Time last_persist_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::function<void(const std::string&, const std::string&)> gone_listener_
      ABSL_GUARDED_BY(mu_);
};

// Periphery names: 1-63 of [A-Za-z0-9._-], starting with a letter or digit.
absl::Status ValidatePeripheryName(absl::string_view name);

// The labels `reported` with `overrides` (set, then remove) applied.
google::protobuf::Map<std::string, std::string> ApplyLabelOverrides(
    const google::protobuf::Map<std::string, std::string>& reported,
    const varan::v1::UpdateLabelsRequest& overrides);

}  // namespace varan::core
