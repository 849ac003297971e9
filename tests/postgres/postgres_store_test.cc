// PostgresStore (core/store/postgres_store.h) on a real PostgreSQL 15: the
// Store contract suite (tests/unit/store/store_contract_test.cc and
// store_output_test.cc, compiled into this binary) instantiated on it, and
// what only a shared database server has — replicas migrating an empty
// database at once, the server restarting under writes, the URL's password
// kept out of every message.
#include "core/store/postgres_store.h"

#include <libpq-fe.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/postgres/test_postgres.h"
#include "tests/unit/store/store_contract.h"
#include "tests/unit/store/store_test_util.h"

namespace varan::core::store_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using varan::testing::TestPostgres;

TestPostgres& Server() { return varan::testing::SharedTestPostgres(); }
std::string NewDatabase() { return varan::testing::NewTestDatabase("store"); }

class PostgresBackend final : public StoreBackend {
 public:
  static std::unique_ptr<StoreBackend> Make() {
    return std::make_unique<PostgresBackend>();
  }
  std::unique_ptr<Store> Open(const ContractOptions& options) override {
    PostgresStoreOptions o;
    o.retention = options.retention;
    o.clock = options.clock;
    // Small batches, so that the tests cross batch and retention
    // transaction boundaries.
    o.max_batch_ops = 7;
    o.prune_batch_jobs = 2;
    auto store = PostgresStore::Open(NewDatabase(), o);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
};

INSTANTIATE_TEST_SUITE_P(Postgres, StoreContractTest,
                         ::testing::Values(&PostgresBackend::Make),
                         BackendTestName);

// --- What only a shared database server has --------------------------------

PostgresStoreOptions Options(bool exclusive = true) {
  PostgresStoreOptions o;
  o.lock = exclusive ? DatabaseLock::kExclusive : DatabaseLock::kNone;
  return o;
}

// Replicas starting at once on an empty database: every one opens it, and
// each schema step ran once (a second run would fail its version row).
TEST(PostgresStoreTest, StoresOpeningAnEmptyDatabaseAtOnceMigrateItOnce) {
  const std::string url = NewDatabase();
  constexpr int kStores = 4;
  std::vector<absl::Status> opened(kStores);
  std::vector<std::unique_ptr<PostgresStore>> stores(kStores);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStores; ++i) {
    threads.emplace_back([&, i] {
      auto store = PostgresStore::Open(url, Options(/*exclusive=*/false));
      opened[i] = store.status();
      if (store.ok()) stores[i] = *std::move(store);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : opened) EXPECT_TRUE(s.ok()) << s;
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r = PQexec(conn, "SELECT count(*), max(version) FROM varan_schema");
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  EXPECT_EQ(std::string(PQgetvalue(r, 0, 0)),
            absl::StrCat(PostgresStore::kSchemaVersion));
  EXPECT_EQ(std::string(PQgetvalue(r, 0, 1)),
            absl::StrCat(PostgresStore::kSchemaVersion));
  PQclear(r);
  PQfinish(conn);
  // And what one writes, another reads.
  stores[0]->CreateJob(MakeJob(JobId(1), varan::v1::JOB_STATE_RUNNING, kT0),
                       nullptr);
  ASSERT_TRUE(stores[0]->Sync().ok());
  EXPECT_TRUE(stores[3]->LoadJob(JobId(1)).ok());
}

TEST(PostgresStoreTest, ASecondCoreOnTheSameDatabaseIsRefused) {
  const std::string url = NewDatabase();
  auto first = PostgresStore::Open(url, Options());
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = PostgresStore::Open(url, Options());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr("is in use by another varan-core"));
  // Once the first is gone, the database is free again (as soon as the
  // server has noticed the first one's session end).
  first->reset();
  EXPECT_TRUE(varan::testing::WaitFor(
      [&] { return PostgresStore::Open(url, Options()).ok(); },
      absl::Seconds(10)));
}

TEST(PostgresStoreTest, ANewerSchemaIsRefused) {
  const std::string url = NewDatabase();
  ASSERT_TRUE(PostgresStore::Open(url, Options()).ok());
  PGconn* conn = PQconnectdb(url.c_str());
  PGresult* r =
      PQexec(conn, absl::StrCat("INSERT INTO varan_schema (version) VALUES (",
                                PostgresStore::kSchemaVersion + 1, ")")
                       .c_str());
  ASSERT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(conn);
  auto store = PostgresStore::Open(url, Options());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("newer than this"));
}

// The URL's password appears in no error; the database is named by host,
// port and name.
TEST(PostgresStoreTest,
     AnUnreachableServerIsUnavailableAndThePasswordIsNotSaid) {
  const uint16_t port = varan::testing::FreePort();
  auto store = PostgresStore::Open(
      absl::StrCat("postgresql://varan:s3cret-pw@127.0.0.1:", port, "/db1"),
      Options());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr(absl::StrCat(port)));
  EXPECT_THAT(store.status().message(), Not(HasSubstr("s3cret-pw")));
}

// The server stops under writes and comes back: reads and new work fail
// UNAVAILABLE meanwhile, writes wait, and every one is committed once it is
// back.
TEST(PostgresStoreTest, WritesWaitForARestartedServerAndNoneIsLost) {
  const std::string url = NewDatabase();
  auto opened = PostgresStore::Open(url, Options());
  ASSERT_TRUE(opened.ok()) << opened.status();
  PostgresStore& store = **opened;
  constexpr int kJobs = 200;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  const auto create = [&](int i) {
    store.CreateJob(MakeJob(JobId(i), varan::v1::JOB_STATE_RUNNING, kT0),
                    [&](const absl::Status& s) { (s.ok() ? ok : failed)++; });
    store.AppendEvents(JobId(i), {MakeEvent(JobId(i), 0)});
  };
  for (int i = 0; i < kJobs / 2; ++i) create(i);
  Server().Stop();  // fast shutdown: the connections are closed
  for (int i = kJobs / 2; i < kJobs; ++i) create(i);
  const auto down = store.LoadJob(JobId(0));
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable)
      << down.status();
  EXPECT_THAT(down.status().message(), HasSubstr("PostgreSQL database"));
  // New work is refused at once meanwhile.
  absl::Status refused;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    refused = store.CheckBacklog();
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("database is unreachable"));
  ASSERT_TRUE(Server().Start().ok());
  ASSERT_TRUE(store.Sync().ok());
  EXPECT_TRUE(store.CheckBacklog().ok());
  EXPECT_EQ(ok.load(), kJobs);
  EXPECT_EQ(failed.load(), 0);
  for (int i = 0; i < kJobs; ++i) {
    auto job = store.LoadJob(JobId(i));
    ASSERT_TRUE(job.ok()) << i << ": " << job.status();
    EXPECT_EQ(job->events.size(), 1u) << i;
  }
}

// Replicas re-read only what changed: once the transactions that saved the
// rows are over, a read from the last cursor holds none of them (other
// tests' transactions on the shared server may hold the cursor back for a
// moment, so it is retried).
TEST(PostgresStoreTest, ChangedPeripheriesLeaveOutWhatWasReadBefore) {
  auto opened = PostgresStore::Open(NewDatabase(), Options());
  ASSERT_TRUE(opened.ok()) << opened.status();
  PostgresStore& store = **opened;
  const auto online = varan::v1::PERIPHERY_STATE_ONLINE;
  for (int i = 0; i < 50; ++i) {
    store.SavePeriphery(
        MakePeriphery(absl::StrCat("p", i), absl::StrCat("n", i), online));
  }
  ASSERT_TRUE(store.Sync().ok());
  uint64_t cursor = 0;
  auto all = store.LoadChangedPeripheries(&cursor);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 50u);
  size_t again = all->size();
  for (int i = 0; i < 100 && again > 0; ++i) {
    auto changed = store.LoadChangedPeripheries(&cursor);
    ASSERT_TRUE(changed.ok()) << changed.status();
    again = changed->size();
    if (again > 0) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(again, 0u);
  // One saved now is read, alone.
  store.SavePeriphery(MakePeriphery("p7", "renamed", online));
  ASSERT_TRUE(store.Sync().ok());
  auto one = store.LoadChangedPeripheries(&cursor);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_GE(one->size(), 1u);
  EXPECT_LT(one->size(), 50u);
  bool renamed = false;
  for (const auto& p : *one) renamed |= p.info.name() == "renamed";
  EXPECT_TRUE(renamed);
}

}  // namespace
}  // namespace varan::core::store_test
