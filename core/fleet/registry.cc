#include "core/fleet/registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/address.h"
#include "common/secrets.h"
#include "common/time_util.h"

namespace varan::core {

absl::Status ValidatePeripheryName(absl::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 &&
            absl::ascii_isalnum(static_cast<unsigned char>(name.front()));
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
          c == '_' || c == '-')) {
      ok = false;
    }
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid periphery name \"", name,
      "\": use 1-63 characters of [A-Za-z0-9._-], starting with a letter or "
      "digit"));
}

FleetRegistry::FleetRegistry(const Clock* clock, FleetOptions options)
    : clock_(clock), options_(options) {}

absl::StatusOr<FleetRegistry::Registration> FleetRegistry::Register(
    const varan::v1::RegisterRequest& req, const std::string& peer) {
  if (absl::Status s = ValidatePeripheryName(req.name()); !s.ok()) return s;
  for (const auto& [k, v] : req.labels()) {
    if (absl::Status s = ValidateLabelKey(k); !s.ok()) return s;
    if (absl::Status s = ValidateLabelValue(v); !s.ok()) return s;
  }
  auto addr = ParseDialAddress(req.advertise_address());
  if (!addr.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("advertise address: ", addr.status().message()));
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  std::string id;
  absl::Time first_seen = now;
  if (auto it = id_by_name_.find(req.name()); it != id_by_name_.end()) {
    id = it->second;
    first_seen = by_id_[id].first_seen;
  } else {
    id = GenerateSecret().substr(0, 16);
  }
  Record r;
  r.info.set_id(id);
  r.info.set_name(req.name());
  r.info.mutable_labels()->insert(req.labels().begin(), req.labels().end());
  r.info.set_address(FormatHostPort(*addr));
  *r.info.mutable_facts() = req.facts();
  r.info.set_version(req.version());
  r.info.set_peer_address(peer);
  r.credential = GenerateSecret();
  r.first_seen = first_seen;
  r.last_seen = now;
  r.confirmed = false;  // until a heartbeat shows it holds the credential
  Registration out{id, r.credential};
  by_id_[id] = std::move(r);
  id_by_name_[req.name()] = id;
  return out;
}

absl::Status FleetRegistry::Heartbeat(const std::string& id,
                                      absl::string_view credential,
                                      const varan::v1::HostStats& stats,
                                      const std::string& peer) {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return absl::NotFoundError(absl::StrCat("no periphery with id ", id));
  }
  if (!SecretEquals(credential, it->second.credential)) {
    return absl::UnauthenticatedError("wrong credential for this periphery");
  }
  it->second.last_seen = clock_->Now();
  it->second.confirmed = true;
  *it->second.info.mutable_stats() = stats;
  it->second.info.set_peer_address(peer);
  return absl::OkStatus();
}

bool FleetRegistry::Online(const Record& r) const {
  return r.confirmed &&
         clock_->Now() - r.last_seen <=
             options_.heartbeat_interval * options_.ttl_intervals;
}

varan::v1::Periphery FleetRegistry::Render(const Record& r) const {
  varan::v1::Periphery p = r.info;
  p.set_state(Online(r) ? varan::v1::PERIPHERY_STATE_ONLINE
                        : varan::v1::PERIPHERY_STATE_OFFLINE);
  SetTimestamp(r.first_seen, p.mutable_first_seen());
  SetTimestamp(r.last_seen, p.mutable_last_seen());
  return p;
}

absl::StatusOr<std::vector<const FleetRegistry::Record*>> FleetRegistry::Match(
    const varan::v1::Target& target) const {
  auto selector = Selector::Parse(target.selector());
  if (!selector.ok()) return selector.status();
  std::set<std::string> names(target.names().begin(), target.names().end());
  std::vector<std::string> missing;
  for (const auto& n : names) {
    if (!id_by_name_.contains(n)) missing.push_back(n);
  }
  if (!missing.empty()) {
    return absl::NotFoundError(absl::StrCat(
        missing.size() == 1 ? "no periphery named " : "no peripheries named ",
        absl::StrJoin(missing, ", ")));
  }
  std::vector<const Record*> out;
  for (const auto& [id, r] : by_id_) {
    if (!names.empty() && !names.contains(r.info.name())) continue;
    Labels labels(r.info.labels().begin(), r.info.labels().end());
    if (!selector->Matches(labels)) continue;
    out.push_back(&r);
  }
  std::sort(out.begin(), out.end(), [](const Record* a, const Record* b) {
    return a->info.name() < b->info.name();
  });
  return out;
}

absl::StatusOr<std::vector<varan::v1::Periphery>> FleetRegistry::List(
    const varan::v1::Target& target) const {
  absl::MutexLock lock(&mu_);
  auto matched = Match(target);
  if (!matched.ok()) return matched.status();
  std::vector<varan::v1::Periphery> out;
  for (const Record* r : *matched) out.push_back(Render(*r));
  return out;
}

absl::StatusOr<varan::v1::Periphery> FleetRegistry::Get(
    const std::string& name_or_id) const {
  absl::MutexLock lock(&mu_);
  auto by_name = id_by_name_.find(name_or_id);
  const std::string& id =
      by_name != id_by_name_.end() ? by_name->second : name_or_id;
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no periphery named or with id \"", name_or_id, "\""));
  }
  return Render(it->second);
}

absl::StatusOr<std::vector<DialTarget>> FleetRegistry::Resolve(
    const varan::v1::Target& target) const {
  absl::MutexLock lock(&mu_);
  auto matched = Match(target);
  if (!matched.ok()) return matched.status();
  std::vector<DialTarget> out;
  for (const Record* r : *matched) {
    out.push_back(DialTarget{r->info.id(), r->info.name(), r->info.address(),
                             r->credential, Online(*r), r->last_seen});
  }
  return out;
}

}  // namespace varan::core
