// Tests for core/server/tokens.h: operator tokens (roles, expiry,
// revocation, names), join tokens (TTL, use count, reserve/release),
// bootstrap tokens, and that only hashes reach the store and survive a
// restart. Time is a FakeClock.
#include "core/server/tokens.h"

#include <sqlite3.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/secrets.h"
#include "common/time_util.h"
#include "core/store/memory_store.h"
#include "core/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/temp_dir.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;
using varan::v1::ROLE_ADMIN;
using varan::v1::ROLE_OPERATOR;
using varan::v1::ROLE_VIEWER;

// Runs an async registry call and returns what its callback got (the
// callback has run once Sync returns).
template <typename T, typename Call>
absl::StatusOr<T> Await(Store* store, Call call) {
  std::optional<absl::StatusOr<T>> got;
  call([&got](absl::StatusOr<T> r) { got = std::move(r); });
  EXPECT_TRUE(store->Sync().ok());
  EXPECT_TRUE(got.has_value());
  return got.has_value() ? *std::move(got)
                         : absl::StatusOr<T>(absl::InternalError("no answer"));
}

class TokenRegistryTest : public ::testing::Test {
 protected:
  // The store's callbacks (an unlimited join token's count, SetUses) call
  // into the registries: they end before the registries do.
  ~TokenRegistryTest() override { (void)store_.Sync(); }

  absl::StatusOr<varan::v1::CreateTokenResponse> Create(
      const std::string& name, varan::v1::Role role,
      absl::Duration ttl = absl::ZeroDuration()) {
    varan::v1::CreateTokenRequest req;
    req.set_name(name);
    req.set_role(role);
    if (ttl > absl::ZeroDuration()) SetDuration(ttl, req.mutable_ttl());
    return Await<varan::v1::CreateTokenResponse>(&store_, [&](auto done) {
      tokens_.CreateToken(req, "admin", std::move(done));
    });
  }
  absl::StatusOr<varan::v1::Token> Revoke(const std::string& name) {
    return Await<varan::v1::Token>(&store_, [&](auto done) {
      tokens_.RevokeToken(name, "admin", std::move(done));
    });
  }
  absl::StatusOr<varan::v1::CreateJoinTokenResponse> CreateJoin(
      const std::string& name, absl::Duration ttl, uint32_t uses) {
    varan::v1::CreateJoinTokenRequest req;
    req.set_name(name);
    if (ttl > absl::ZeroDuration()) SetDuration(ttl, req.mutable_ttl());
    req.set_max_uses(uses);
    return Await<varan::v1::CreateJoinTokenResponse>(&store_, [&](auto done) {
      tokens_.CreateJoinToken(req, "admin", std::move(done));
    });
  }

  FakeClock clock_;
  MemoryStore store_;
  TokenRegistry tokens_{&clock_, &store_};
};

TEST_F(TokenRegistryTest, CreatedTokenAuthenticatesWithItsNameAndRole) {
  auto created = Create("ci", ROLE_OPERATOR);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->secret().size(), 64u);  // 256 bits, hex
  EXPECT_EQ(created->token().name(), "ci");
  EXPECT_EQ(created->token().state(), varan::v1::TOKEN_STATE_ACTIVE);
  EXPECT_FALSE(created->token().has_expire_time());
  auto id = tokens_.AuthenticateOperator(created->secret());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "ci");
  EXPECT_EQ(id->role, ROLE_OPERATOR);

  EXPECT_EQ(tokens_.AuthenticateOperator(GenerateSecret()).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(tokens_.AuthenticateOperator("").status().code(),
            absl::StatusCode::kUnauthenticated);
  // The secret is not listed.
  for (const auto& t : tokens_.ListTokens(true)) {
    EXPECT_THAT(t.DebugString(), ::testing::Not(HasSubstr(created->secret())));
  }
}

TEST_F(TokenRegistryTest, TokenExpiresAfterItsTtl) {
  auto created = Create("short", ROLE_VIEWER, absl::Hours(1));
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(FromTimestamp(created->token().expire_time()),
            clock_.Now() + absl::Hours(1));
  clock_.Advance(absl::Minutes(59));
  EXPECT_TRUE(tokens_.AuthenticateOperator(created->secret()).ok());
  clock_.Advance(absl::Minutes(1));
  auto expired = tokens_.AuthenticateOperator(created->secret());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.status().message(), HasSubstr("expired"));
  EXPECT_EQ(tokens_.ListTokens(false)[0].state(),
            varan::v1::TOKEN_STATE_EXPIRED);
}

TEST_F(TokenRegistryTest, RevokedTokenStopsWorkingAtOnceAndFreesItsName) {
  auto created = Create("ci", ROLE_ADMIN);
  ASSERT_TRUE(created.ok());
  auto revoked = Revoke("ci");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->state(), varan::v1::TOKEN_STATE_REVOKED);
  EXPECT_EQ(revoked->revoked_by(), "admin");
  auto refused = tokens_.AuthenticateOperator(created->secret());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("revoked"));

  EXPECT_TRUE(tokens_.ListTokens(false).empty());
  EXPECT_EQ(tokens_.ListTokens(true).size(), 1u);
  // The name can be used again; the old secret stays dead.
  auto again = Create("ci", ROLE_VIEWER);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(tokens_.AuthenticateOperator(created->secret()).ok());
  EXPECT_TRUE(tokens_.AuthenticateOperator(again->secret()).ok());
  EXPECT_EQ(Revoke("nope").status().code(), absl::StatusCode::kNotFound);
}

// Several replicas on one store: a token created or revoked through one
// counts on the other once it re-reads the store.
TEST_F(TokenRegistryTest, AnotherReplicaTakesTokensCreatedAndRevokedHere) {
  TokenRegistry other(&clock_, &store_);
  ASSERT_TRUE(other.Load().ok());
  auto created = Create("ci", varan::v1::ROLE_OPERATOR);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_FALSE(other.AuthenticateOperator(created->secret()).ok());
  ASSERT_TRUE(other.Refresh().ok());
  auto id = other.AuthenticateOperator(created->secret());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "ci");
  EXPECT_EQ(id->role, varan::v1::ROLE_OPERATOR);

  ASSERT_TRUE(Revoke("ci").ok());
  ASSERT_TRUE(other.Refresh().ok());
  EXPECT_EQ(other.AuthenticateOperator(created->secret()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // And a re-read here keeps the revocation this replica made.
  ASSERT_TRUE(tokens_.Refresh().ok());
  EXPECT_FALSE(tokens_.AuthenticateOperator(created->secret()).ok());
}

// Replicas share one count of a join token's uses: each one's copy says
// uses are left, the store gives the last one to one registration.
TEST_F(TokenRegistryTest, ReplicasShareAJoinTokensUseLimit) {
  TokenRegistry other(&clock_, &store_);
  auto created = CreateJoin("rack-7", absl::Hours(2), 3);
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(other.Load().ok());
  const std::string secret = created->token();
  ASSERT_TRUE(tokens_.ReserveJoin(secret).ok());
  ASSERT_TRUE(other.ReserveJoin(secret).ok());
  auto released = tokens_.ReserveJoin(secret);
  ASSERT_TRUE(released.ok()) << released.status();
  // The third use is given back: the other replica takes it.
  tokens_.ReleaseJoin(*released);
  ASSERT_TRUE(other.ReserveJoin(secret).ok());
  for (TokenRegistry* replica : {&tokens_, &other}) {
    auto refused = replica->ReserveJoin(secret);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(refused.status().message(), HasSubstr("used up (3"));
    auto list = replica->ListJoinTokens(false);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].uses(), 3u);
    EXPECT_EQ(list[0].state(), varan::v1::TOKEN_STATE_USED_UP);
  }
  // A revocation by a replica whose copy is behind keeps the count.
  auto revoked = Await<varan::v1::JoinToken>(&store_, [&](auto done) {
    other.RevokeJoinToken("rack-7", "admin", std::move(done));
  });
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  auto stored = store_.LoadJoinTokens();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].info.uses(), 3u);
  EXPECT_TRUE((*stored)[0].info.has_revoke_time());
}

// A join token made through one replica works through another at once,
// before that one's next Refresh; unknown tokens cost at most one read of
// the store per kUnknownJoinGap.
TEST_F(TokenRegistryTest, AJoinTokenMadeOnAnotherReplicaIsLookedUp) {
  TokenRegistry other(&clock_, &store_);
  ASSERT_TRUE(other.Load().ok());
  other.set_look_up_unknown_joins(true);
  // Nothing there yet: unknown, and the look-up is spent for a while.
  auto unknown = other.ReserveJoin("varan-join-nosuchsecret");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnauthenticated);
  auto created = CreateJoin("rack-7", absl::Hours(2), 0);
  ASSERT_TRUE(created.ok()) << created.status();
  auto early = other.ReserveJoin(created->token());
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnauthenticated)
      << "looked up twice within kUnknownJoinGap";
  clock_.Advance(TokenRegistry::kUnknownJoinGap);
  auto reserved = other.ReserveJoin(created->token());
  ASSERT_TRUE(reserved.ok()) << reserved.status();
  EXPECT_EQ(other.JoinTokenName(*reserved), "rack-7");
  // Without the look-up (one core), a token this registry did not make or
  // load stays unknown.
  TokenRegistry alone(&clock_, &store_);
  auto second = CreateJoin("rack-8", absl::Hours(2), 0);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(alone.Load().ok());
  auto third = CreateJoin("rack-9", absl::Hours(2), 0);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_TRUE(alone.ReserveJoin(second->token()).ok());
  EXPECT_EQ(alone.ReserveJoin(third->token()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // Their uses' callbacks run before `other` and `alone` end.
  ASSERT_TRUE(store_.Sync().ok());
}

// The store saying its database is unreachable: a token with a use limit
// is refused UNAVAILABLE at once, its use not taken, instead of after
// kJoinUseWait; one without a limit is not held up.
TEST_F(TokenRegistryTest, ALimitedTokenIsRefusedAtOnceWhileTheStoreIsDown) {
  auto limited = CreateJoin("rack-7", absl::Hours(2), 2);
  ASSERT_TRUE(limited.ok()) << limited.status();
  auto unlimited = CreateJoin("rack-8", absl::Hours(2), 0);
  ASSERT_TRUE(unlimited.ok()) << unlimited.status();
  store_.SetBacklog(absl::UnavailableError("the database cannot be reached"));
  auto refused = tokens_.ReserveJoin(limited->token());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("the database cannot be reached"));
  EXPECT_TRUE(tokens_.ReserveJoin(unlimited->token()).ok());
  store_.SetBacklog(absl::OkStatus());
  ASSERT_TRUE(tokens_.ReserveJoin(limited->token()).ok());
  for (const varan::v1::JoinToken& t : tokens_.ListJoinTokens(false)) {
    if (t.name() == "rack-7") {
      EXPECT_EQ(t.uses(), 1u);  // the refused one took none
    }
  }
}

// The store not answering in time (its database unreachable): UNAVAILABLE,
// and the use it takes later is given back.
TEST_F(TokenRegistryTest, AUseTheStoreCountsTooLateIsGivenBack) {
  auto created = CreateJoin("rack-7", absl::Hours(2), 1);
  ASSERT_TRUE(created.ok()) << created.status();
  tokens_.set_join_use_wait(absl::Milliseconds(100));
  // A commit callback that holds the store's callbacks up (as a store
  // whose commits stall does).
  absl::Notification release;
  StoredToken other;
  other.info.set_id("other");
  store_.SaveToken(other,
                   [&](const absl::Status&) { release.WaitForNotification(); });
  auto late = tokens_.ReserveJoin(created->secret());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(late.status().message(),
              HasSubstr("could not count a use of the join token"));
  release.Notify();
  ASSERT_TRUE(store_.Sync().ok());
  ASSERT_TRUE(store_.Sync().ok());  // the give-back, queued by a callback
  auto stored = store_.LoadJoinTokens();
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].info.uses(), 0u);
  // So the one use is still there.
  EXPECT_TRUE(tokens_.ReserveJoin(created->secret()).ok());
}

TEST_F(TokenRegistryTest, RefusesBadRequests) {
  ASSERT_TRUE(Create("ci", ROLE_VIEWER).ok());
  struct Case {
    std::string name;
    varan::v1::Role role;
    absl::StatusCode code;
  } cases[] = {
      {"ci", ROLE_VIEWER, absl::StatusCode::kAlreadyExists},
      {"admin", ROLE_VIEWER, absl::StatusCode::kOk},  // no bootstrap yet
      {"", ROLE_VIEWER, absl::StatusCode::kInvalidArgument},
      {"-x", ROLE_VIEWER, absl::StatusCode::kInvalidArgument},
      {"has space", ROLE_VIEWER, absl::StatusCode::kInvalidArgument},
      {std::string(64, 'a'), ROLE_VIEWER, absl::StatusCode::kInvalidArgument},
      {"norole", varan::v1::ROLE_UNSPECIFIED,
       absl::StatusCode::kInvalidArgument},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Create(c.name, c.role).status().code(), c.code) << c.name;
  }
  varan::v1::CreateTokenRequest negative;
  negative.set_name("neg");
  negative.set_role(ROLE_VIEWER);
  negative.mutable_ttl()->set_seconds(-5);
  auto r = Await<varan::v1::CreateTokenResponse>(&store_, [&](auto done) {
    tokens_.CreateToken(negative, "admin", std::move(done));
  });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TokenRegistryTest, BootstrapTokensAreAdminsThatCannotBeRevoked) {
  const std::string admin = GenerateSecret();
  const std::string join = GenerateSecret();
  tokens_.SetBootstrap({{"admin", "/data/admin.token", admin}},
                       {{"join", "/data/join.token", join}});
  auto id = tokens_.AuthenticateOperator(admin);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->name, "admin");
  EXPECT_EQ(id->role, ROLE_ADMIN);
  auto revoke = Revoke("admin");
  EXPECT_EQ(revoke.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(revoke.status().message(), HasSubstr("/data/admin.token"));
  EXPECT_EQ(Create("admin", ROLE_VIEWER).status().code(),
            absl::StatusCode::kAlreadyExists);
  auto list = tokens_.ListTokens(false);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_TRUE(list[0].bootstrap());

  // A bootstrap join token has no use limit.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(tokens_.ReserveJoin(join).ok());

  // Replacing the bootstrap set (SIGHUP after rotating the file) retires
  // the old secret.
  const std::string rotated = GenerateSecret();
  tokens_.SetBootstrap({{"admin", "/data/admin.token", rotated}}, {});
  EXPECT_FALSE(tokens_.AuthenticateOperator(admin).ok());
  EXPECT_TRUE(tokens_.AuthenticateOperator(rotated).ok());
  EXPECT_FALSE(tokens_.ReserveJoin(join).ok());
}

TEST_F(TokenRegistryTest, JoinTokenHasAUseCountAndATtl) {
  auto created = CreateJoin("rack-7", absl::Hours(2), 2);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string secret = created->secret();
  auto first = tokens_.ReserveJoin(secret);
  ASSERT_TRUE(first.ok());
  // A registration that fails afterwards gives its use back.
  tokens_.ReleaseJoin(*first);
  ASSERT_TRUE(tokens_.ReserveJoin(secret).ok());
  ASSERT_TRUE(tokens_.ReserveJoin(secret).ok());
  auto used_up = tokens_.ReserveJoin(secret);
  EXPECT_EQ(used_up.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(used_up.status().message(), HasSubstr("used up"));
  auto list = tokens_.ListJoinTokens(false);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].uses(), 2u);
  EXPECT_EQ(list[0].state(), varan::v1::TOKEN_STATE_USED_UP);

  auto unlimited = CreateJoin("", absl::Hours(1), 0);
  ASSERT_TRUE(unlimited.ok());
  EXPECT_EQ(unlimited->join_token().name(), unlimited->join_token().id());
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(tokens_.ReserveJoin(unlimited->secret()).ok());
  }
  clock_.Advance(absl::Hours(1));
  auto expired = tokens_.ReserveJoin(unlimited->secret());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.status().message(), HasSubstr("expired"));

  auto revocable = CreateJoin("r", absl::ZeroDuration(), 0);
  ASSERT_TRUE(revocable.ok());
  auto revoked = Await<varan::v1::JoinToken>(&store_, [&](auto done) {
    tokens_.RevokeJoinToken("r", "admin", std::move(done));
  });
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(tokens_.ReserveJoin(revocable->secret()).status().code(),
            absl::StatusCode::kUnauthenticated);
  // An operator token is not a join token, and the reverse.
  auto op = Create("ci", ROLE_ADMIN);
  ASSERT_TRUE(op.ok());
  EXPECT_FALSE(tokens_.ReserveJoin(op->secret()).ok());
  EXPECT_FALSE(tokens_.AuthenticateOperator(revocable->secret()).ok());
}

TEST(TokenStoreTest, OnlyHashesAreStoredAndTokensSurviveARestart) {
  varan::testing::UnitTempDir dir;
  const std::string path = dir.path() + "/core.db";
  FakeClock clock;
  std::string operator_secret, join_secret;
  {
    auto store = SqliteStore::Open(path, {});
    ASSERT_TRUE(store.ok()) << store.status();
    TokenRegistry tokens(&clock, store->get());
    ASSERT_TRUE(tokens.Load().ok());
    varan::v1::CreateTokenRequest req;
    req.set_name("ci");
    req.set_role(ROLE_OPERATOR);
    SetDuration(absl::Hours(24), req.mutable_ttl());
    auto created = Await<varan::v1::CreateTokenResponse>(
        store->get(),
        [&](auto done) { tokens.CreateToken(req, "admin", std::move(done)); });
    ASSERT_TRUE(created.ok()) << created.status();
    operator_secret = created->secret();
    varan::v1::CreateJoinTokenRequest jreq;
    jreq.set_max_uses(3);
    auto join =
        Await<varan::v1::CreateJoinTokenResponse>(store->get(), [&](auto done) {
          tokens.CreateJoinToken(jreq, "admin", std::move(done));
        });
    ASSERT_TRUE(join.ok());
    join_secret = join->secret();
    ASSERT_TRUE(tokens.ReserveJoin(join_secret).ok());
    ASSERT_TRUE((*store)->Sync().ok());
  }
  // Neither secret appears anywhere in the database file.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT hash, info FROM tokens", -1, &stmt,
                                 nullptr),
              SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      ++rows;
      std::string hash(
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
      std::string info(static_cast<const char*>(sqlite3_column_blob(stmt, 1)),
                       static_cast<size_t>(sqlite3_column_bytes(stmt, 1)));
      EXPECT_THAT(hash + info, ::testing::Not(HasSubstr(operator_secret)));
      EXPECT_THAT(hash + info, ::testing::Not(HasSubstr(join_secret)));
      EXPECT_TRUE(hash == SecretHash(operator_secret) ||
                  hash == SecretHash(join_secret));
    }
    EXPECT_EQ(rows, 2);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  auto store = SqliteStore::Open(path, {});
  ASSERT_TRUE(store.ok());
  TokenRegistry tokens(&clock, store->get());
  ASSERT_TRUE(tokens.Load().ok());
  auto id = tokens.AuthenticateOperator(operator_secret);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->name, "ci");
  EXPECT_EQ(id->role, ROLE_OPERATOR);
  auto joins = tokens.ListJoinTokens(false);
  ASSERT_EQ(joins.size(), 1u);
  EXPECT_EQ(joins[0].uses(), 1u);
  EXPECT_EQ(joins[0].max_uses(), 3u);
  clock.Advance(absl::Hours(24));
  EXPECT_FALSE(tokens.AuthenticateOperator(operator_secret).ok());
}

}  // namespace
}  // namespace varan::core
