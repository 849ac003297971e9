#include "core/fleet/registry.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/address.h"
#include "common/log.h"
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

google::protobuf::Map<std::string, std::string> ApplyLabelOverrides(
    const google::protobuf::Map<std::string, std::string>& reported,
    const varan::v1::UpdateLabelsRequest& overrides) {
  google::protobuf::Map<std::string, std::string> out = reported;
  for (const auto& [k, v] : overrides.set()) out[k] = v;
  for (const auto& k : overrides.remove()) out.erase(k);
  return out;
}

FleetRegistry::FleetRegistry(const Clock* clock, FleetOptions options,
                             Store* store, Cluster* cluster)
    : clock_(clock),
      options_(options),
      store_(RequireStore(store, "FleetRegistry")),
      cluster_(cluster) {}

void FleetRegistry::SetGoneListener(
    std::function<void(const std::string&, const std::string&)> listener) {
  absl::MutexLock lock(&mu_);
  gone_listener_ = std::move(listener);
}

absl::StatusOr<size_t> FleetRegistry::Load() {
  auto stored = store_->LoadPeripheries();
  if (!stored.ok()) return stored.status();
  const absl::Time now = clock_->Now();
  const absl::Duration grace = options_.restart_grace > absl::ZeroDuration()
                                   ? options_.restart_grace
                                   : ttl();
  absl::MutexLock lock(&mu_);
  size_t online = 0;
  size_t hashed = 0;
  for (StoredPeriphery& p : *stored) {
    Record r;
    r.first_seen = FromTimestamp(p.info.first_seen());
    r.last_seen = FromTimestamp(p.info.last_seen());
    r.local_seen = r.last_seen;
    r.removed = p.info.state() == varan::v1::PERIPHERY_STATE_REMOVED;
    if (!r.removed && p.confirmed &&
        p.info.state() == varan::v1::PERIPHERY_STATE_ONLINE) {
      r.grace_until = now + grace;
      r.was_online = true;
      ++online;
    }
    r.stored = std::move(p);
    const std::string id = r.stored.info.id();
    if (!r.removed) id_by_name_[r.stored.info.name()] = id;
    Record& slot = by_id_[id] = std::move(r);
    // A credential kept in the clear before: only its hash from now on.
    if (options_.hash_credentials && !slot.stored.credential.empty() &&
        !absl::StartsWith(slot.stored.credential, kCredentialHashPrefix)) {
      slot.stored.credential = Kept(slot.stored.credential);
      SaveLocked(slot, now);
      ++hashed;
    }
  }
  if (hashed > 0) {
    spdlog::info("keeping only the hashes of {} periphery credential(s) now",
                 hashed);
  }
  if (!by_id_.empty()) {
    spdlog::info(
        "loaded {} periphery record(s); {} were online and stay so for {} "
        "while they reconnect",
        by_id_.size(), online, absl::FormatDuration(grace));
  }
  return by_id_.size();
}

std::string FleetRegistry::Kept(const std::string& credential) const {
  if (!options_.hash_credentials) return credential;
  return absl::StrCat(kCredentialHashPrefix, SecretHash(credential));
}

bool FleetRegistry::CredentialMatches(const std::string& stored,
                                      absl::string_view given) {
  if (given.empty() || stored.empty()) return false;
  absl::string_view hash = stored;
  if (absl::ConsumePrefix(&hash, kCredentialHashPrefix)) {
    return SecretEquals(SecretHash(given), hash);
  }
  return SecretEquals(given, stored);
}

void FleetRegistry::SaveLocked(Record& r, absl::Time now) {
  r.dirty = false;
  r.saved_gen = ++save_gen_;
  StoredPeriphery p = r.stored;
  p.info.set_state(r.removed        ? varan::v1::PERIPHERY_STATE_REMOVED
                   : Online(r, now) ? varan::v1::PERIPHERY_STATE_ONLINE
                                    : varan::v1::PERIPHERY_STATE_OFFLINE);
  SetTimestamp(r.first_seen, p.info.mutable_first_seen());
  SetTimestamp(r.last_seen, p.info.mutable_last_seen());
  store_->SavePeriphery(p);
}

bool FleetRegistry::IsOnline(const std::string& id) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  return it != by_id_.end() && Online(it->second, now);
}

std::string FleetRegistry::NameOf(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? std::string() : it->second.stored.info.name();
}

absl::StatusOr<FleetRegistry::Registration> FleetRegistry::Register(
    const varan::v1::RegisterRequest& req, const std::string& peer,
    varan::v1::Connection connection) {
  if (absl::Status s = ValidatePeripheryName(req.name()); !s.ok()) return s;
  for (const auto& [k, v] : req.labels()) {
    if (absl::Status s = ValidateLabelKey(k); !s.ok()) return s;
    if (absl::Status s = ValidateLabelValue(v); !s.ok()) return s;
  }
  std::string address;
  if (connection != varan::v1::CONNECTION_TUNNEL ||
      !req.advertise_address().empty()) {
    auto addr = ParseDialAddress(req.advertise_address());
    if (!addr.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("advertise address: ", addr.status().message()));
    }
    address = FormatHostPort(*addr);
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  std::string id;
  Record r;
  r.first_seen = now;
  if (auto it = id_by_name_.find(req.name()); it != id_by_name_.end()) {
    id = it->second;
    const Record& old = by_id_[id];
    if (old.stored.confirmed) {
      return absl::AlreadyExistsError(absl::StrCat(
          "periphery \"", req.name(),
          "\" is registered already and holds its credential; if this is it "
          "after losing its state directory, remove it first (varanctl "
          "peripheries remove ",
          req.name(), ")"));
    }
    r.first_seen = old.first_seen;
    r.stored.label_overrides = old.stored.label_overrides;
  } else {
    id = GenerateSecret().substr(0, 16);
  }
  varan::v1::Periphery& info = r.stored.info;
  info.set_id(id);
  info.set_name(req.name());
  *info.mutable_reported_labels() = req.labels();
  *info.mutable_labels() =
      ApplyLabelOverrides(req.labels(), r.stored.label_overrides);
  info.set_address(address);
  *info.mutable_facts() = req.facts();
  info.set_version(req.version());
  info.set_peer_address(peer);
  info.set_connection(connection);
  SetDuration(options_.heartbeat_interval, info.mutable_heartbeat_interval());
  const std::string credential = GenerateSecret();
  r.stored.credential = Kept(credential);
  r.stored.confirmed = false;  // until a heartbeat shows it holds it
  r.last_seen = now;
  r.local_seen = now;
  Registration out{id, credential};
  Record& slot = by_id_[id];
  r.here = slot.here;  // a claim made here stays until released
  slot = std::move(r);
  id_by_name_[req.name()] = id;
  SaveLocked(slot, now);
  return out;
}

absl::Status FleetRegistry::CheckCredential(
    const std::string& id, absl::string_view credential) const {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.removed) {
    return absl::NotFoundError(absl::StrCat("no periphery with id ", id));
  }
  if (!CredentialMatches(it->second.stored.credential, credential)) {
    return absl::UnauthenticatedError("wrong credential for this periphery");
  }
  return absl::OkStatus();
}

absl::Status FleetRegistry::Heartbeat(const std::string& id,
                                      absl::string_view credential,
                                      const varan::v1::HostStats& stats,
                                      const std::string& peer) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.removed) {
    return absl::NotFoundError(absl::StrCat("no periphery with id ", id));
  }
  Record& r = it->second;
  if (!CredentialMatches(r.stored.credential, credential)) {
    return absl::UnauthenticatedError("wrong credential for this periphery");
  }
  r.last_seen = now;
  r.local_seen = now;
  SetHereLocked(r, true);
  *r.stored.info.mutable_stats() = stats;
  r.stored.info.set_peer_address(peer);
  r.dirty = true;
  if (!r.stored.confirmed || !r.was_online) {
    if (!r.was_online) {
      spdlog::info("periphery {} is online", r.stored.info.name());
    }
    r.stored.confirmed = true;
    r.was_online = true;
    SaveLocked(r, now);
  }
  return absl::OkStatus();
}

void FleetRegistry::Trusts(const std::string& id,
                           const std::vector<std::string>& pins) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.removed) return;
  Record& r = it->second;
  const auto& held = r.stored.info.trusted_ca_pins();
  if (std::equal(held.begin(), held.end(), pins.begin(), pins.end())) return;
  r.stored.info.mutable_trusted_ca_pins()->Assign(pins.begin(), pins.end());
  SaveLocked(r, now);
}

std::vector<std::string> FleetRegistry::NotTrusting(
    const std::vector<std::string>& pins) const {
  // By name, as operators read them.
  std::vector<std::pair<std::string, std::string>> found;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : by_id_) {
      if (r.removed) continue;
      const auto& held = r.stored.info.trusted_ca_pins();
      for (const std::string& pin : pins) {
        if (std::find(held.begin(), held.end(), pin) == held.end()) {
          found.emplace_back(r.stored.info.name(), id);
          break;
        }
      }
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  out.reserve(found.size());
  for (auto& [name, id] : found) out.push_back(std::move(id));
  return out;
}

void FleetRegistry::Readdress(const std::string& id,
                              const std::string& address) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.removed) return;
  Record& r = it->second;
  if (r.stored.info.address() == address) return;
  spdlog::info("periphery {} is now dialed at {} (was {})",
               r.stored.info.name(), address, r.stored.info.address());
  r.stored.info.set_address(address);
  SaveLocked(r, now);
}

bool FleetRegistry::Online(const Record& r, absl::Time now) const {
  if (r.removed || !r.stored.confirmed) return false;
  return now - r.local_seen <= ttl() || now < r.grace_until ||
         now < r.remote_until;
}

void FleetRegistry::Tick() {
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, std::string>> gone;
  std::function<void(const std::string&, const std::string&)> listener;
  {
    absl::MutexLock lock(&mu_);
    UpdateOwnersLocked(now);
    const bool persist_due = now - last_persist_ >= options_.persist_interval;
    if (persist_due) last_persist_ = now;
    for (auto& [id, r] : by_id_) {
      if (r.removed) continue;
      const bool going = r.was_online && !Online(r, now);
      // Asked before SetHereLocked (and only of those going offline).
      const bool writes = going && WritesTransitionsLocked(r);
      if (r.here && now - r.local_seen > ttl()) SetHereLocked(r, false);
      if (going) {
        r.was_online = false;
        std::string reason = absl::StrCat(
            "periphery ", r.stored.info.name(), " went offline: no heartbeat ",
            r.remote_until > r.local_seen && r.remote_until > r.grace_until
                ? absl::StrCat("since no core replica holds its connection "
                               "(last seen ",
                               absl::FormatDuration(now - r.last_seen), " ago)")
            : r.last_seen < r.grace_until
                ? absl::StrCat(
                      "since core restarted (grace ",
                      absl::FormatDuration(r.grace_until - r.last_seen), ")")
                : absl::StrCat("for ", absl::FormatDuration(now - r.last_seen),
                               " (TTL ", absl::FormatDuration(ttl()), ")"));
        spdlog::warn("{}", reason);
        gone.emplace_back(id, std::move(reason));
        if (writes) SaveLocked(r, now);
      } else if (persist_due && r.dirty) {
        SaveLocked(r, now);
      }
    }
    listener = gone_listener_;
  }
  if (listener) {
    for (const auto& [id, reason] : gone) listener(id, reason);
  }
}

varan::v1::Periphery FleetRegistry::Render(const Record& r) const {
  varan::v1::Periphery p = r.stored.info;
  p.set_state(r.removed                  ? varan::v1::PERIPHERY_STATE_REMOVED
              : Online(r, clock_->Now()) ? varan::v1::PERIPHERY_STATE_ONLINE
                                         : varan::v1::PERIPHERY_STATE_OFFLINE);
  SetTimestamp(r.first_seen, p.mutable_first_seen());
  SetTimestamp(r.last_seen, p.mutable_last_seen());
  return p;
}

absl::StatusOr<std::vector<const FleetRegistry::Record*>> FleetRegistry::Match(
    const varan::v1::Target& target, bool include_removed) const {
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
  if (!names.empty() && !include_removed) {
    // Named targets: look them up rather than scanning the fleet.
    for (const auto& n : names) {
      const Record& r = by_id_.at(id_by_name_.at(n));
      Labels labels(r.stored.info.labels().begin(),
                    r.stored.info.labels().end());
      if (selector->Matches(labels)) out.push_back(&r);
    }
    return out;  // `names` is sorted, and names are unique
  }
  for (const auto& [id, r] : by_id_) {
    if (r.removed && !include_removed) continue;
    if (!names.empty() && !names.contains(r.stored.info.name())) continue;
    Labels labels(r.stored.info.labels().begin(), r.stored.info.labels().end());
    if (!selector->Matches(labels)) continue;
    out.push_back(&r);
  }
  std::sort(out.begin(), out.end(), [](const Record* a, const Record* b) {
    return PositionOf(*a) < PositionOf(*b);
  });
  return out;
}

std::string FleetRegistry::PageToken(const Position& pos) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(pos.name, "\n", pos.removed ? "1" : "0", "\n", pos.id));
}

bool FleetRegistry::ParsePageToken(absl::string_view token,
                                   std::string* storage, Position* pos) {
  if (token.size() > 4096 || !absl::WebSafeBase64Unescape(token, storage)) {
    return false;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(*storage, '\n');
  if (parts.size() != 3 || parts[0].empty() || parts[2].empty() ||
      (parts[1] != "0" && parts[1] != "1")) {
    return false;
  }
  *pos = Position{parts[0], parts[1] == "1", parts[2]};
  return true;
}

absl::StatusOr<varan::v1::ListPeripheriesResponse> FleetRegistry::ListPage(
    const varan::v1::Target& target, bool include_removed,
    absl::string_view page_token, size_t limit) const {
  std::string token_storage;
  std::optional<Position> after;
  if (!page_token.empty()) {
    Position pos;
    if (!ParsePageToken(page_token, &token_storage, &pos)) {
      return absl::InvalidArgumentError(
          "invalid page_token: pass next_page_token from the previous page");
    }
    after = pos;
  }
  limit = std::max<size_t>(1, limit);
  absl::MutexLock lock(&mu_);
  auto matched = Match(target, include_removed);
  if (!matched.ok()) return matched.status();
  auto it = matched->begin();
  if (after.has_value()) {
    it = std::upper_bound(matched->begin(), matched->end(), *after,
                          [](const Position& pos, const Record* r) {
                            return pos < PositionOf(*r);
                          });
  }
  varan::v1::ListPeripheriesResponse out;
  for (; it != matched->end() &&
         static_cast<size_t>(out.peripheries_size()) < limit;
       ++it) {
    *out.add_peripheries() = Render(**it);
  }
  if (it != matched->end() && out.peripheries_size() > 0) {
    out.set_next_page_token(PageToken(PositionOf(**std::prev(it))));
  }
  return out;
}

absl::StatusOr<std::vector<varan::v1::Periphery>> FleetRegistry::List(
    const varan::v1::Target& target, bool include_removed) const {
  absl::MutexLock lock(&mu_);
  auto matched = Match(target, include_removed);
  if (!matched.ok()) return matched.status();
  std::vector<varan::v1::Periphery> out;
  for (const Record* r : *matched) out.push_back(Render(*r));
  return out;
}

const FleetRegistry::Record* FleetRegistry::FindLocked(
    const std::string& name_or_id) const {
  auto by_name = id_by_name_.find(name_or_id);
  const std::string& id =
      by_name != id_by_name_.end() ? by_name->second : name_or_id;
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

absl::StatusOr<varan::v1::Periphery> FleetRegistry::Get(
    const std::string& name_or_id) const {
  absl::MutexLock lock(&mu_);
  const Record* r = FindLocked(name_or_id);
  if (r == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no periphery named or with id \"", name_or_id, "\""));
  }
  return Render(*r);
}

absl::StatusOr<std::vector<DialTarget>> FleetRegistry::Resolve(
    const varan::v1::Target& target) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto matched = Match(target, /*include_removed=*/false);
  if (!matched.ok()) return matched.status();
  std::vector<DialTarget> out;
  for (const Record* r : *matched) {
    // A hash is nothing to present.
    const std::string& kept = r->stored.credential;
    out.push_back(DialTarget{
        r->stored.info.id(), r->stored.info.name(), r->stored.info.address(),
        absl::StartsWith(kept, kCredentialHashPrefix) ? "" : kept,
        Online(*r, now), r->last_seen});
  }
  return out;
}

absl::StatusOr<varan::v1::Periphery> FleetRegistry::Remove(
    const std::string& name_or_id) {
  const absl::Time now = clock_->Now();
  std::string id, reason;
  varan::v1::Periphery out;
  std::function<void(const std::string&, const std::string&)> listener;
  {
    absl::MutexLock lock(&mu_);
    Record* r = FindLocked(name_or_id);
    if (r == nullptr || r->removed) {
      return absl::NotFoundError(
          absl::StrCat("no periphery named or with id \"", name_or_id, "\""));
    }
    id = r->stored.info.id();
    id_by_name_.erase(r->stored.info.name());
    r->removed = true;
    r->was_online = false;
    SetHereLocked(*r, false);
    r->stored.credential.clear();  // revoked: heartbeats and dials stop
    SaveLocked(*r, now);
    out = Render(*r);
    reason = absl::StrCat("periphery ", r->stored.info.name(),
                          " was removed from the fleet");
    listener = gone_listener_;
  }
  spdlog::info("{}", reason);
  if (listener) listener(id, reason);
  return out;
}

absl::StatusOr<varan::v1::Periphery> FleetRegistry::UpdateLabels(
    const varan::v1::UpdateLabelsRequest& request) {
  for (const auto& [k, v] : request.set()) {
    if (absl::Status s = ValidateLabelKey(k); !s.ok()) return s;
    if (absl::Status s = ValidateLabelValue(v); !s.ok()) return s;
  }
  for (const auto& k : request.remove()) {
    if (absl::Status s = ValidateLabelKey(k); !s.ok()) return s;
    if (request.set().contains(k)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label \"", k, "\" is both set and removed"));
    }
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  Record* r = FindLocked(request.name_or_id());
  if (r == nullptr || r->removed) {
    return absl::NotFoundError(absl::StrCat("no periphery named or with id \"",
                                            request.name_or_id(), "\""));
  }
  varan::v1::UpdateLabelsRequest& o = r->stored.label_overrides;
  for (const auto& [k, v] : request.set()) {
    (*o.mutable_set())[k] = v;
    auto* removed = o.mutable_remove();
    removed->erase(std::remove(removed->begin(), removed->end(), k),
                   removed->end());
  }
  for (const auto& k : request.remove()) {
    o.mutable_set()->erase(k);
    if (std::find(o.remove().begin(), o.remove().end(), k) ==
        o.remove().end()) {
      o.add_remove(k);
    }
  }
  *r->stored.info.mutable_labels() =
      ApplyLabelOverrides(r->stored.info.reported_labels(), o);
  SaveLocked(*r, now);
  return Render(*r);
}

}  // namespace varan::core
