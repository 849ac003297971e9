// TokenRegistry, part 1 of 3: loading, bootstrap tokens, authentication and
// join-token uses. The Admin API is in tokens_admin.cc, sharing between
// replicas in tokens_refresh.cc; the class and its contract are in tokens.h.
#include "core/server/tokens.h"

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/time_util.h"

namespace varan::core {
namespace {

bool Expired(const google::protobuf::Timestamp* expire, bool has_expire,
             absl::Time now) {
  return has_expire && FromTimestamp(*expire) <= now;
}

}  // namespace

absl::Status ValidateTokenName(absl::string_view name, absl::string_view what) {
  bool ok = !name.empty() && name.size() <= 63 &&
            absl::ascii_isalnum(static_cast<unsigned char>(name.front()));
  for (char c : name) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
          c == '_' || c == '-')) {
      ok = false;
    }
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid ", what, " \"", name,
                   "\": use 1-63 characters of [A-Za-z0-9._-], starting with "
                   "a letter or digit"));
}

std::string RoleName(varan::v1::Role role) {
  switch (role) {
    case varan::v1::ROLE_VIEWER:
      return "viewer";
    case varan::v1::ROLE_OPERATOR:
      return "operator";
    case varan::v1::ROLE_ADMIN:
      return "admin";
    case varan::v1::ROLE_UNSPECIFIED:
    // protoc's sentinels, listed for -Wswitch-enum; never a real value.
    case varan::v1::Role_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::Role_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  // Also a value this build does not know (a newer peer's role).
  return "unspecified";
}

TokenRegistry::TokenRegistry(const Clock* clock, Store* store)
    : clock_(clock), store_(RequireStore(store, "TokenRegistry")) {}

absl::Status TokenRegistry::Load() {
  auto tokens = store_->LoadTokens();
  if (!tokens.ok()) return tokens.status();
  auto joins = store_->LoadJoinTokens();
  if (!joins.ok()) return joins.status();
  absl::MutexLock lock(&mu_);
  for (StoredToken& t : *tokens) {
    const std::string id = t.info.id();
    operator_by_hash_[t.hash] = id;
    operators_[id] = Operator{std::move(t), false};
  }
  for (StoredJoinToken& t : *joins) {
    const std::string id = t.info.id();
    join_by_hash_[t.hash] = id;
    joins_[id] = Join{std::move(t), false};
  }
  return absl::OkStatus();
}

void TokenRegistry::SetBootstrap(std::vector<BootstrapToken> admin,
                                 std::vector<BootstrapToken> join) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  for (auto it = operators_.begin(); it != operators_.end();) {
    if (it->second.bootstrap) {
      operator_by_hash_.erase(it->second.stored.hash);
      operators_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto it = joins_.begin(); it != joins_.end();) {
    if (it->second.bootstrap) {
      join_by_hash_.erase(it->second.stored.hash);
      joins_.erase(it++);
    } else {
      ++it;
    }
  }
  for (const BootstrapToken& b : admin) {
    Operator t;
    t.bootstrap = true;
    t.stored.info.set_id(absl::StrCat(kBootstrapPrefix, b.name));
    t.stored.info.set_name(b.name);
    t.stored.info.set_role(varan::v1::ROLE_ADMIN);
    t.stored.info.set_created_by(b.source);
    SetTimestamp(now, t.stored.info.mutable_create_time());
    t.stored.hash = SecretHash(b.secret);
    operator_by_hash_[t.stored.hash] = t.stored.info.id();
    operators_[t.stored.info.id()] = std::move(t);
  }
  for (const BootstrapToken& b : join) {
    Join t;
    t.bootstrap = true;
    t.stored.info.set_id(absl::StrCat(kBootstrapPrefix, b.name));
    t.stored.info.set_name(b.name);
    t.stored.info.set_created_by(b.source);
    SetTimestamp(now, t.stored.info.mutable_create_time());
    t.stored.hash = SecretHash(b.secret);
    join_by_hash_[t.stored.hash] = t.stored.info.id();
    joins_[t.stored.info.id()] = std::move(t);
  }
}

varan::v1::TokenState TokenRegistry::StateOf(const varan::v1::Token& t,
                                             absl::Time now) const {
  if (t.has_revoke_time()) return varan::v1::TOKEN_STATE_REVOKED;
  if (Expired(&t.expire_time(), t.has_expire_time(), now)) {
    return varan::v1::TOKEN_STATE_EXPIRED;
  }
  return varan::v1::TOKEN_STATE_ACTIVE;
}

varan::v1::TokenState TokenRegistry::StateOf(const varan::v1::JoinToken& t,
                                             absl::Time now) const {
  if (t.has_revoke_time()) return varan::v1::TOKEN_STATE_REVOKED;
  if (Expired(&t.expire_time(), t.has_expire_time(), now)) {
    return varan::v1::TOKEN_STATE_EXPIRED;
  }
  if (t.max_uses() > 0 && t.uses() >= t.max_uses()) {
    return varan::v1::TOKEN_STATE_USED_UP;
  }
  return varan::v1::TOKEN_STATE_ACTIVE;
}

varan::v1::Token TokenRegistry::Render(const Operator& t,
                                       absl::Time now) const {
  varan::v1::Token out = t.stored.info;
  out.set_state(StateOf(out, now));
  out.set_bootstrap(t.bootstrap);
  return out;
}

varan::v1::JoinToken TokenRegistry::Render(const Join& t,
                                           absl::Time now) const {
  varan::v1::JoinToken out = t.stored.info;
  out.set_state(StateOf(out, now));
  out.set_bootstrap(t.bootstrap);
  return out;
}

absl::StatusOr<TokenIdentity> TokenRegistry::AuthenticateOperator(
    absl::string_view secret) const {
  if (secret.empty()) {
    return absl::UnauthenticatedError(
        "no operator token (send it as 'authorization: Bearer <token>' "
        "metadata)");
  }
  const std::string hash = SecretHash(secret);
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = operator_by_hash_.find(hash);
  if (it == operator_by_hash_.end()) {
    return absl::UnauthenticatedError("unknown operator token");
  }
  const Operator& t = operators_.at(it->second);
  // The map lookup found it by hash already; comparing the hashes again in
  // constant time keeps the check itself free of timing differences.
  if (!SecretEquals(hash, t.stored.hash)) {
    return absl::UnauthenticatedError("unknown operator token");
  }
  return IdentityOf(t, now);
}

absl::StatusOr<TokenIdentity> TokenRegistry::OperatorByBinding(
    const std::string& id, const std::string& binding) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = operators_.find(id);
  if (it == operators_.end()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the operator token \"", id,
                     "\" this certificate was issued for is gone"));
  }
  const Operator& t = it->second;
  if (!SecretEquals(binding, SecretHash(t.stored.hash).substr(0, 16))) {
    return absl::UnauthenticatedError(absl::StrCat(
        "operator token \"", t.stored.info.name(),
        "\" has another secret than when this certificate was issued"));
  }
  return IdentityOf(t, now);
}

absl::StatusOr<TokenIdentity> TokenRegistry::IdentityOf(const Operator& t,
                                                        absl::Time now) const {
  switch (StateOf(t.stored.info, now)) {
    case varan::v1::TOKEN_STATE_REVOKED:
      return absl::UnauthenticatedError(absl::StrCat(
          "operator token \"", t.stored.info.name(), "\" was revoked"));
    case varan::v1::TOKEN_STATE_EXPIRED:
      return absl::UnauthenticatedError(absl::StrCat(
          "operator token \"", t.stored.info.name(), "\" has expired"));
    case varan::v1::TOKEN_STATE_ACTIVE:
    // Operator tokens have no use count: never USED_UP.
    case varan::v1::TOKEN_STATE_USED_UP:
    // StateOf never returns these.
    case varan::v1::TOKEN_STATE_UNSPECIFIED:
    case varan::v1::TokenState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TokenState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  TokenIdentity identity;
  identity.name = t.stored.info.name();
  identity.role = t.stored.info.role();
  identity.id = t.stored.info.id();
  identity.binding = SecretHash(t.stored.hash).substr(0, 16);
  if (t.stored.info.has_expire_time()) {
    identity.expires = FromTimestamp(t.stored.info.expire_time());
  }
  return identity;
}

absl::StatusOr<std::string> TokenRegistry::ReserveJoin(
    absl::string_view token) {
  const std::string secret = SplitJoinToken(token).secret;
  if (secret.empty()) {
    return absl::UnauthenticatedError(
        "no join token (send it as 'authorization: Bearer <token>' "
        "metadata)");
  }
  const std::string hash = SecretHash(secret);
  const absl::Time now = clock_->Now();
  bool look_up = false;
  {
    absl::MutexLock lock(&mu_);
    if (look_up_unknown_joins_ && !join_by_hash_.contains(hash) &&
        now >= next_unknown_join_) {
      // Perhaps made through another replica since the last Refresh.
      next_unknown_join_ = now + kUnknownJoinGap;
      look_up = true;
    }
  }
  if (look_up) {
    if (absl::Status s = ReadNewJoinTokens(); !s.ok()) {
      spdlog::warn("looking an unknown join token up in the store: {}",
                   s.message());
    }
  }
  std::string id;
  bool limited = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = join_by_hash_.find(hash);
    if (it == join_by_hash_.end()) {
      return absl::UnauthenticatedError("unknown join token");
    }
    Join& t = joins_.at(it->second);
    if (!SecretEquals(hash, t.stored.hash)) {
      return absl::UnauthenticatedError("unknown join token");
    }
    if (absl::Status s = Unusable(t.stored.info, now); !s.ok()) return s;
    id = t.stored.info.id();
    if (t.bootstrap) return id;
    limited = t.stored.info.max_uses() > 0;
    written_[id] = ++save_gen_;
    // An unlimited token's count only informs: counted here at once, and
    // set to the store's once the store has counted it.
    if (!limited) t.stored.info.set_uses(t.stored.info.uses() + 1);
  }
  if (!limited) {
    store_->UseJoinToken(id, JoinUse::kTake,
                         [this, id](absl::StatusOr<JoinUses> r) {
                           if (r.ok()) SetUses(id, r->token.uses());
                         });
    return id;
  }
  // A limited token's last use goes to one registration among all the
  // replicas': the store decides. When it cannot be reached, say so now
  // rather than after kJoinUseWait.
  if (absl::Status s = store_->CheckBacklog(); absl::IsUnavailable(s)) {
    return absl::UnavailableError(absl::StrCat(
        "core could not count a use of the join token: ", s.message()));
  }
  absl::StatusOr<JoinUses> counted = TakeStoredUse(id);
  if (!counted.ok()) return counted.status();
  SetUses(id, counted->token.uses());
  if (counted->taken) return id;
  absl::Status refused = Unusable(counted->token, now);
  if (refused.ok()) {
    return absl::InternalError("the store refused a use of an active token");
  }
  return refused;
}

absl::Status TokenRegistry::Unusable(const varan::v1::JoinToken& t,
                                     absl::Time now) const {
  const std::string& name = t.name();
  switch (StateOf(t, now)) {
    case varan::v1::TOKEN_STATE_REVOKED:
      return absl::UnauthenticatedError(
          absl::StrCat("join token \"", name, "\" was revoked"));
    case varan::v1::TOKEN_STATE_EXPIRED:
      return absl::UnauthenticatedError(
          absl::StrCat("join token \"", name, "\" has expired"));
    case varan::v1::TOKEN_STATE_USED_UP:
      return absl::UnauthenticatedError(
          absl::StrCat("join token \"", name, "\" is used up (", t.max_uses(),
                       " registrations)"));
    case varan::v1::TOKEN_STATE_ACTIVE:
    // StateOf never returns these.
    case varan::v1::TOKEN_STATE_UNSPECIFIED:
    case varan::v1::TokenState_INT_MIN_SENTINEL_DO_NOT_USE_:
    case varan::v1::TokenState_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<JoinUses> TokenRegistry::TakeStoredUse(const std::string& id) {
  struct Wait {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    bool abandoned ABSL_GUARDED_BY(mu) = false;
    absl::StatusOr<JoinUses> result ABSL_GUARDED_BY(mu);
  };
  absl::Duration wait_for;
  {
    absl::MutexLock lock(&mu_);
    wait_for = join_use_wait_;
  }
  auto wait = std::make_shared<Wait>();
  store_->UseJoinToken(id, JoinUse::kTake,
                       [wait, store = store_, id](absl::StatusOr<JoinUses> r) {
                         absl::MutexLock lock(&wait->mu);
                         if (wait->abandoned) {
                           // The registration was refused already: the use goes
                           // back.
                           if (r.ok() && r->taken) {
                             store->UseJoinToken(id, JoinUse::kGiveBack,
                                                 nullptr);
                           }
                           return;
                         }
                         wait->result = std::move(r);
                         wait->done = true;
                       });
  absl::MutexLock lock(&wait->mu);
  if (!wait->mu.AwaitWithTimeout(absl::Condition(&wait->done), wait_for)) {
    wait->abandoned = true;
    return absl::UnavailableError(absl::StrCat(
        "core could not count a use of the join token: the store did not "
        "answer within ",
        absl::FormatDuration(wait_for), "; try again"));
  }
  if (absl::IsNotFound(wait->result.status())) {
    return absl::UnauthenticatedError("unknown join token");
  }
  if (!wait->result.ok()) {
    return absl::UnavailableError(
        absl::StrCat("core could not count a use of the join token: ",
                     wait->result.status().message()));
  }
  return *wait->result;
}

void TokenRegistry::SetUses(const std::string& id, uint32_t uses) {
  absl::MutexLock lock(&mu_);
  auto it = joins_.find(id);
  if (it != joins_.end() && !it->second.bootstrap) {
    it->second.stored.info.set_uses(uses);
  }
}

void TokenRegistry::ReleaseJoin(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = joins_.find(id);
    if (it == joins_.end() || it->second.bootstrap) return;
    written_[id] = ++save_gen_;
    varan::v1::JoinToken& info = it->second.stored.info;
    if (info.uses() > 0) info.set_uses(info.uses() - 1);
  }
  store_->UseJoinToken(id, JoinUse::kGiveBack,
                       [this, id](absl::StatusOr<JoinUses> r) {
                         if (r.ok()) SetUses(id, r->token.uses());
                       });
}

std::string TokenRegistry::JoinTokenName(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = joins_.find(id);
  return it == joins_.end() ? std::string() : it->second.stored.info.name();
}

bool TokenRegistry::NameTakenLocked(const std::string& name,
                                    absl::Time now) const {
  for (const auto& [id, t] : operators_) {
    if (t.stored.info.name() == name &&
        StateOf(t.stored.info, now) == varan::v1::TOKEN_STATE_ACTIVE) {
      return true;
    }
  }
  return false;
}

TokenRegistry::Operator* TokenRegistry::FindOperatorLocked(
    const std::string& name_or_id) {
  if (auto it = operators_.find(name_or_id); it != operators_.end()) {
    return &it->second;
  }
  Operator* best = nullptr;
  for (auto& [id, t] : operators_) {
    if (t.stored.info.name() != name_or_id || t.stored.info.has_revoke_time()) {
      continue;
    }
    if (best == nullptr || FromTimestamp(t.stored.info.create_time()) >
                               FromTimestamp(best->stored.info.create_time())) {
      best = &t;
    }
  }
  return best;
}

TokenRegistry::Join* TokenRegistry::FindJoinLocked(
    const std::string& name_or_id) {
  if (auto it = joins_.find(name_or_id); it != joins_.end()) {
    return &it->second;
  }
  Join* best = nullptr;
  for (auto& [id, t] : joins_) {
    if (t.stored.info.name() != name_or_id || t.stored.info.has_revoke_time()) {
      continue;
    }
    if (best == nullptr || FromTimestamp(t.stored.info.create_time()) >
                               FromTimestamp(best->stored.info.create_time())) {
      best = &t;
    }
  }
  return best;
}

}  // namespace varan::core
