// TokenRegistry: operator tokens (name, role, optional expiry) and join
// tokens (TTL, use count), kept in memory and written through to the Store.
//
// Secrets are 256-bit random values. Only their SHA-256 hashes are kept, in
// memory and on disk; a presented secret is hashed and looked up, and the
// hashes are compared in constant time. A secret is returned once, by the
// Create call that made it.
//
// Bootstrap tokens come from files core was started with (admin.token and
// join.token in --data-dir, --admin-token-file, --join-token-file): they
// are admin tokens / join tokens without expiry or use limit, listed with
// `bootstrap` set, replaced as a whole by SetBootstrap (on SIGHUP), and
// cannot be revoked through the API.
//
// Thread-safe. Callbacks (`done`) run without the registry's lock, on the
// calling thread or the store's completer thread; they must not block.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "core/store/store.h"
#include "varan/v1/core.pb.h"

namespace varan::core {

// Who a valid operator token belongs to.
struct TokenIdentity {
  std::string name;
  varan::v1::Role role = varan::v1::ROLE_UNSPECIFIED;
  // The token's id, and what ties a client certificate to this very
  // secret: 16 hex digits of the SHA-256 of its stored hash (a bootstrap
  // token keeps its id when its file gets a new secret; the binding does
  // not).
  std::string id;
  std::string binding;
  // When it expires (InfiniteFuture: never).
  absl::Time expires = absl::InfiniteFuture();
};

// A token read from a file at start (or on SIGHUP).
struct BootstrapToken {
  // Name it is known by ("admin", "admin-file", "join", "join-file").
  std::string name;
  // Where it came from, e.g. "/var/lib/varan/core/admin.token" (logged,
  // never the secret).
  std::string source;
  std::string secret;
};

class TokenRegistry {
 public:
  // `store` must not be null (a MemoryStore where nothing is to persist);
  // both must outlive the registry.
  TokenRegistry(const Clock* clock, Store* store);

  // The pin of core's built-in cluster CA, appended to the join tokens
  // CreateJoinToken returns (CreateJoinTokenResponse.token); empty when
  // core has none. Changes when the CA is rotated.
  void set_ca_pin(std::string pin) {
    absl::MutexLock lock(&mu_);
    ca_pin_ = std::move(pin);
  }

  // Loads the stored tokens (call once, before serving).
  absl::Status Load();

  // Several replicas: re-reads the stored tokens (after the writes made here
  // so far are committed), so tokens created, used or revoked through
  // another replica count here too; a change made here after the read
  // began is kept. Blocks on the store: call it every few seconds from a
  // thread of its own (tokens_refresh.cc).
  absl::Status Refresh();

  // Several replicas: ReserveJoin looks a join token it does not know up in
  // the store (one created through another replica since the last
  // Refresh), at most once per kUnknownJoinGap.
  void set_look_up_unknown_joins(bool on) {
    absl::MutexLock lock(&mu_);
    look_up_unknown_joins_ = on;
  }
  static constexpr absl::Duration kUnknownJoinGap = absl::Milliseconds(200);

  // Replaces the bootstrap admin and join tokens.
  void SetBootstrap(std::vector<BootstrapToken> admin,
                    std::vector<BootstrapToken> join);

  // The identity of a valid operator token. UNAUTHENTICATED for an unknown,
  // expired or revoked one (the message says which, never the secret).
  absl::StatusOr<TokenIdentity> AuthenticateOperator(
      absl::string_view secret) const;
  // The same for a client certificate issued to the token with `id` and
  // `binding` (TokenIdentity): UNAUTHENTICATED when there is no such token
  // any more, or it was revoked, expired or given another secret.
  absl::StatusOr<TokenIdentity> OperatorByBinding(
      const std::string& id, const std::string& binding) const;

  // Takes one use of a valid join token and returns its id, to be given to
  // ReleaseJoin if the registration then fails. UNAUTHENTICATED for an
  // unknown, expired, revoked or used-up one. A CA pin after the secret
  // (common/secrets.h SplitJoinToken) is ignored. With
  // set_look_up_unknown_joins, an unknown one is looked up in the store
  // first (reading the join tokens: this blocks on the store).
  //
  // A token with a use limit is counted by the store (Store::UseJoinToken),
  // so that replicas sharing a database give its last use to one
  // registration: this waits for that commit, at most kJoinUseWait, then
  // fails UNAVAILABLE (a use the store takes later is given back); while
  // the store says it cannot reach its database (CheckBacklog UNAVAILABLE)
  // it fails UNAVAILABLE at once. A token without a limit is counted
  // without waiting.
  absl::StatusOr<std::string> ReserveJoin(absl::string_view token);
  static constexpr absl::Duration kJoinUseWait = absl::Seconds(10);
  // For tests: another wait than kJoinUseWait.
  void set_join_use_wait(absl::Duration wait) {
    absl::MutexLock lock(&mu_);
    join_use_wait_ = wait;
  }
  // Gives back a use taken by ReserveJoin.
  void ReleaseJoin(const std::string& id);
  // The name of the join token with `id` ("" if none): for logs.
  std::string JoinTokenName(const std::string& id) const;

  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  // The Admin API. `by` is the caller's token name. `done` is called once
  // the change is stored (or with the error).
  void CreateToken(const varan::v1::CreateTokenRequest& request,
                   const std::string& by,
                   Done<varan::v1::CreateTokenResponse> done);
  std::vector<varan::v1::Token> ListTokens(bool include_revoked) const;
  void RevokeToken(const std::string& name_or_id, const std::string& by,
                   Done<varan::v1::Token> done);
  void CreateJoinToken(const varan::v1::CreateJoinTokenRequest& request,
                       const std::string& by,
                       Done<varan::v1::CreateJoinTokenResponse> done);
  std::vector<varan::v1::JoinToken> ListJoinTokens(bool include_revoked) const;
  void RevokeJoinToken(const std::string& name_or_id, const std::string& by,
                       Done<varan::v1::JoinToken> done);

 private:
  // Bootstrap tokens' ids: this and their name ("bootstrap-admin").
  static constexpr char kBootstrapPrefix[] = "bootstrap-";

  struct Operator {
    StoredToken stored;
    bool bootstrap = false;
  };
  struct Join {
    StoredJoinToken stored;
    bool bootstrap = false;
  };

  varan::v1::TokenState StateOf(const varan::v1::Token& t,
                                absl::Time now) const;
  varan::v1::TokenState StateOf(const varan::v1::JoinToken& t,
                                absl::Time now) const;
  varan::v1::Token Render(const Operator& t, absl::Time now) const;
  // Who `t` is, or why it is not valid at `now`.
  absl::StatusOr<TokenIdentity> IdentityOf(const Operator& t,
                                           absl::Time now) const;
  varan::v1::JoinToken Render(const Join& t, absl::Time now) const;
  // Why `t` cannot be used at `now` (UNAUTHENTICATED naming it), or OK.
  absl::Status Unusable(const varan::v1::JoinToken& t, absl::Time now) const;
  // Store::UseJoinToken(id, kTake), waited for (ReserveJoin).
  absl::StatusOr<JoinUses> TakeStoredUse(const std::string& id);
  // Takes the join tokens stored that are not known here (tokens_refresh.cc);
  // what is known is left as it is (Refresh's to update).
  absl::Status ReadNewJoinTokens();
  // The use count the store reported for join token `id`.
  void SetUses(const std::string& id, uint32_t uses);
  // A token that is neither revoked nor expired has that name.
  bool NameTakenLocked(const std::string& name, absl::Time now) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // By id, else the newest token of that name that is not revoked.
  Operator* FindOperatorLocked(const std::string& name_or_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Join* FindJoinLocked(const std::string& name_or_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // What listing and revoking share for both kinds of token: `Entry` is
  // Operator or Join, `View` the API message it renders to.
  template <typename View, typename Entry>
  std::vector<View> ListOf(
      const absl::flat_hash_map<std::string, Entry>& entries,
      bool include_revoked) const;
  template <typename View, typename Entry>
  void Revoke(Entry* (TokenRegistry::*find)(const std::string&),
              absl::string_view what, const std::string& name_or_id,
              const std::string& by, Done<View> done);
  // Saves the token; `done` runs after the commit (on a store thread).
  void Persist(const StoredToken& t, std::function<void(absl::Status)> done);
  void Persist(const StoredJoinToken& t,
               std::function<void(absl::Status)> done);

  const Clock* const clock_;
  Store* const store_;
  mutable absl::Mutex mu_;
  std::string ca_pin_ ABSL_GUARDED_BY(mu_);
  absl::Duration join_use_wait_ ABSL_GUARDED_BY(mu_) = kJoinUseWait;
  bool look_up_unknown_joins_ ABSL_GUARDED_BY(mu_) = false;
  // When an unknown join token may next be looked up in the store.
  absl::Time next_unknown_join_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // By id; bootstrap tokens have ids "bootstrap-<name>".
  absl::flat_hash_map<std::string, Operator> operators_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Join> joins_ ABSL_GUARDED_BY(mu_);
  // Counts writes; by token id, the count at its last write here (Refresh
  // skips tokens written after its read began).
  uint64_t save_gen_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, uint64_t> written_ ABSL_GUARDED_BY(mu_);
  // Hash of the secret -> id.
  absl::flat_hash_map<std::string, std::string> operator_by_hash_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::string> join_by_hash_
      ABSL_GUARDED_BY(mu_);
};

// Token names: 1-63 of [A-Za-z0-9._-], starting with a letter or digit.
// INVALID_ARGUMENT naming `what` ("token name") otherwise.
absl::Status ValidateTokenName(absl::string_view name, absl::string_view what);

// "viewer", "operator", "admin" (and "unspecified").
std::string RoleName(varan::v1::Role role);

}  // namespace varan::core
