// FleetRegistry: every periphery core knows, its identity, labels, address,
// facts, stats, credential and liveness.
//
// A periphery is online once a heartbeat has confirmed its latest
// registration (it holds the credential core issued; peripheries heartbeat
// right after registering) and while its last heartbeat is no older than
// `ttl_intervals` heartbeat intervals. Time comes from the
// injected Clock. In-memory for now: a core restart forgets the fleet and
// peripheries register again on their next heartbeat.
//
// Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/fleet/selector.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

struct FleetOptions {
  absl::Duration heartbeat_interval = absl::Seconds(10);
  int ttl_intervals = 3;
};

// What the dispatcher needs to reach one periphery.
struct DialTarget {
  std::string id;
  std::string name;
  std::string address;
  std::string credential;
  bool online = false;
  absl::Time last_seen;
};

class FleetRegistry {
 public:
  FleetRegistry(const Clock* clock, FleetOptions options);

  struct Registration {
    std::string id;
    std::string credential;
  };

  // Adds a periphery, or takes over the record of the same name (keeping
  // its id, issuing a new credential). INVALID_ARGUMENT for a bad name,
  // label or address. `peer` is the caller's normalised address.
  absl::StatusOr<Registration> Register(const varan::v1::RegisterRequest& req,
                                        const std::string& peer);

  // Records a heartbeat. NOT_FOUND for an unknown id, UNAUTHENTICATED when
  // `credential` is not the one issued to that id.
  absl::Status Heartbeat(const std::string& id, absl::string_view credential,
                         const varan::v1::HostStats& stats,
                         const std::string& peer);

  // Peripheries matching `target`, sorted by name. INVALID_ARGUMENT for a bad
  // selector; NOT_FOUND when a named periphery does not exist.
  absl::StatusOr<std::vector<varan::v1::Periphery>> List(
      const varan::v1::Target& target) const;

  // One periphery by name or id. NOT_FOUND otherwise.
  absl::StatusOr<varan::v1::Periphery> Get(const std::string& name_or_id) const;

  // Like List, with what is needed to dial each match.
  absl::StatusOr<std::vector<DialTarget>> Resolve(
      const varan::v1::Target& target) const;

  absl::Duration heartbeat_interval() const {
    return options_.heartbeat_interval;
  }

 private:
  struct Record {
    varan::v1::Periphery info;  // state and times filled on read
    std::string credential;
    absl::Time first_seen;
    absl::Time last_seen;
    // A heartbeat with the credential issued at the latest registration
    // arrived: the periphery has it, so core may dial it.
    bool confirmed = false;
  };

  // Matching records sorted by name.
  absl::StatusOr<std::vector<const Record*>> Match(
      const varan::v1::Target& target) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  varan::v1::Periphery Render(const Record& r) const;
  bool Online(const Record& r) const;

  const Clock* const clock_;
  const FleetOptions options_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Record> by_id_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> id_by_name_
      ABSL_GUARDED_BY(mu_);
};

// Periphery names: 1-63 of [A-Za-z0-9._-], starting with a letter or digit.
absl::Status ValidatePeripheryName(absl::string_view name);

}  // namespace varan::core
