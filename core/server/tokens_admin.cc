// TokenRegistry, part 2 of 3: the Admin API (create, list and revoke
// operator and join tokens). The class and its contract are in tokens.h.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "core/server/tokens.h"

namespace varan::core {
namespace {

absl::Status NotFound(absl::string_view what, absl::string_view name_or_id) {
  return absl::NotFoundError(
      absl::StrCat("no ", what, " named or with id \"", name_or_id, "\""));
}

}  // namespace

void TokenRegistry::Persist(const StoredToken& t,
                            std::function<void(absl::Status)> done) {
  {
    absl::MutexLock lock(&mu_);
    written_[t.info.id()] = ++save_gen_;
  }
  store_->SaveToken(t,
                    done ? CommitCallback(std::move(done)) : CommitCallback());
}

void TokenRegistry::Persist(const StoredJoinToken& t,
                            std::function<void(absl::Status)> done) {
  {
    absl::MutexLock lock(&mu_);
    written_[t.info.id()] = ++save_gen_;
  }
  store_->SaveJoinToken(
      t, done ? CommitCallback(std::move(done)) : CommitCallback());
}

void TokenRegistry::CreateToken(const varan::v1::CreateTokenRequest& request,
                                const std::string& by,
                                Done<varan::v1::CreateTokenResponse> done) {
  if (absl::Status s = ValidateTokenName(request.name(), "token name");
      !s.ok()) {
    done(s);
    return;
  }
  if (request.role() != varan::v1::ROLE_VIEWER &&
      request.role() != varan::v1::ROLE_OPERATOR &&
      request.role() != varan::v1::ROLE_ADMIN) {
    done(absl::InvalidArgumentError(
        "a token needs a role: viewer, operator or admin"));
    return;
  }
  const absl::Duration ttl = FromDuration(request.ttl());
  if (ttl < absl::ZeroDuration()) {
    done(absl::InvalidArgumentError("the TTL must not be negative"));
    return;
  }
  const absl::Time now = clock_->Now();
  const std::string secret = GenerateSecret();
  StoredToken t;
  bool taken = false;
  {
    absl::MutexLock lock(&mu_);
    taken =
        operators_.contains(absl::StrCat(kBootstrapPrefix, request.name())) ||
        NameTakenLocked(request.name(), now);
    if (!taken) {
      t.info.set_id(GenerateSecret().substr(0, 16));
      t.info.set_name(request.name());
      t.info.set_role(request.role());
      SetTimestamp(now, t.info.mutable_create_time());
      if (ttl > absl::ZeroDuration()) {
        SetTimestamp(now + ttl, t.info.mutable_expire_time());
      }
      t.info.set_created_by(by);
      t.hash = SecretHash(secret);
      operator_by_hash_[t.hash] = t.info.id();
      operators_[t.info.id()] = Operator{t, false};
    }
  }
  if (taken) {
    done(absl::AlreadyExistsError(absl::StrCat(
        "a token named \"", request.name(),
        "\" exists already (revoke it first, or choose another name)")));
    return;
  }
  Persist(t, [this, t, secret, done = std::move(done)](absl::Status s) {
    if (!s.ok()) {
      {
        absl::MutexLock lock(&mu_);
        operator_by_hash_.erase(t.hash);
        operators_.erase(t.info.id());
      }
      done(absl::UnavailableError(
          absl::StrCat("core could not store the token: ", s.message())));
      return;
    }
    varan::v1::CreateTokenResponse response;
    *response.mutable_token() = Render(Operator{t, false}, clock_->Now());
    response.set_secret(secret);
    spdlog::info("token {} ({}) created by {}", t.info.name(),
                 RoleName(t.info.role()), t.info.created_by());
    done(std::move(response));
  });
}

template <typename View, typename Entry>
std::vector<View> TokenRegistry::ListOf(
    const absl::flat_hash_map<std::string, Entry>& entries,
    bool include_revoked) const {
  const absl::Time now = clock_->Now();
  std::vector<View> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, t] : entries) {
      if (!include_revoked && t.stored.info.has_revoke_time()) continue;
      out.push_back(Render(t, now));
    }
  }
  std::sort(out.begin(), out.end(), [](const View& a, const View& b) {
    if (a.name() != b.name()) return a.name() < b.name();
    return FromTimestamp(a.create_time()) < FromTimestamp(b.create_time());
  });
  return out;
}

template <typename View, typename Entry>
void TokenRegistry::Revoke(Entry* (TokenRegistry::*find)(const std::string&),
                           absl::string_view what,
                           const std::string& name_or_id, const std::string& by,
                           Done<View> done) {
  const absl::Time now = clock_->Now();
  decltype(Entry::stored) save;
  absl::StatusOr<View> answer_now;  // OK: go on and store
  {
    absl::MutexLock lock(&mu_);
    Entry* t = (this->*find)(name_or_id);
    if (t == nullptr) {
      answer_now = NotFound(what, name_or_id);
    } else if (t->bootstrap) {
      answer_now = absl::FailedPreconditionError(absl::StrCat(
          what, " \"", t->stored.info.name(), "\" is read from ",
          t->stored.info.created_by(),
          " at start: replace or delete that file and send core SIGHUP"));
    } else if (t->stored.info.has_revoke_time()) {
      answer_now = Render(*t, now);  // revoked already: nothing to do
    } else {
      SetTimestamp(now, t->stored.info.mutable_revoke_time());
      t->stored.info.set_revoked_by(by);
      save = t->stored;
    }
  }
  if (save.info.id().empty()) {
    done(std::move(answer_now));
    return;
  }
  spdlog::info("{} {} revoked by {}", what, save.info.name(), by);
  Persist(save, [this, what = std::string(what), save,
                 done = std::move(done)](absl::Status s) {
    if (!s.ok()) {
      // Revoked in memory already; only the record of it may be lost.
      done(absl::UnavailableError(absl::StrCat(
          "the ", what,
          " is revoked until core restarts, but core could not store that: ",
          s.message())));
      return;
    }
    done(Render(Entry{save, false}, clock_->Now()));
  });
}

std::vector<varan::v1::Token> TokenRegistry::ListTokens(
    bool include_revoked) const {
  return ListOf<varan::v1::Token>(operators_, include_revoked);
}

void TokenRegistry::RevokeToken(const std::string& name_or_id,
                                const std::string& by,
                                Done<varan::v1::Token> done) {
  Revoke<varan::v1::Token, Operator>(&TokenRegistry::FindOperatorLocked,
                                     "token", name_or_id, by, std::move(done));
}

void TokenRegistry::CreateJoinToken(
    const varan::v1::CreateJoinTokenRequest& request, const std::string& by,
    Done<varan::v1::CreateJoinTokenResponse> done) {
  if (!request.name().empty()) {
    if (absl::Status s = ValidateTokenName(request.name(), "join token name");
        !s.ok()) {
      done(s);
      return;
    }
  }
  const absl::Duration ttl = FromDuration(request.ttl());
  if (ttl < absl::ZeroDuration()) {
    done(absl::InvalidArgumentError("the TTL must not be negative"));
    return;
  }
  const absl::Time now = clock_->Now();
  const std::string secret = GenerateSecret();
  StoredJoinToken t;
  const std::string id = GenerateSecret().substr(0, 16);
  const std::string name = request.name().empty() ? id : request.name();
  bool taken = false;
  {
    absl::MutexLock lock(&mu_);
    taken = joins_.contains(absl::StrCat(kBootstrapPrefix, name));
    for (const auto& [other_id, j] : joins_) {
      if (j.stored.info.name() == name &&
          StateOf(j.stored.info, now) == varan::v1::TOKEN_STATE_ACTIVE) {
        taken = true;
      }
    }
    if (!taken) {
      t.info.set_id(id);
      t.info.set_name(name);
      SetTimestamp(now, t.info.mutable_create_time());
      if (ttl > absl::ZeroDuration()) {
        SetTimestamp(now + ttl, t.info.mutable_expire_time());
      }
      t.info.set_max_uses(request.max_uses());
      t.info.set_created_by(by);
      t.hash = SecretHash(secret);
      join_by_hash_[t.hash] = id;
      joins_[id] = Join{t, false};
    }
  }
  if (taken) {
    done(absl::AlreadyExistsError(absl::StrCat(
        "a join token named \"", name,
        "\" exists already (revoke it first, or choose another name)")));
    return;
  }
  Persist(t, [this, t, secret, done = std::move(done)](absl::Status s) {
    if (!s.ok()) {
      {
        absl::MutexLock lock(&mu_);
        join_by_hash_.erase(t.hash);
        joins_.erase(t.info.id());
      }
      done(absl::UnavailableError(
          absl::StrCat("core could not store the join token: ", s.message())));
      return;
    }
    varan::v1::CreateJoinTokenResponse response;
    *response.mutable_join_token() = Render(Join{t, false}, clock_->Now());
    response.set_secret(secret);
    std::string pin;
    {
      absl::MutexLock lock(&mu_);
      pin = ca_pin_;
    }
    response.set_token(JoinTokenWithPin(secret, pin));
    response.set_ca_pin(pin);
    spdlog::info("join token {} created by {}", t.info.name(),
                 t.info.created_by());
    done(std::move(response));
  });
}

std::vector<varan::v1::JoinToken> TokenRegistry::ListJoinTokens(
    bool include_revoked) const {
  return ListOf<varan::v1::JoinToken>(joins_, include_revoked);
}

void TokenRegistry::RevokeJoinToken(const std::string& name_or_id,
                                    const std::string& by,
                                    Done<varan::v1::JoinToken> done) {
  Revoke<varan::v1::JoinToken, Join>(&TokenRegistry::FindJoinLocked,
                                     "join token", name_or_id, by,
                                     std::move(done));
}

}  // namespace varan::core
