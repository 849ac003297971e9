// The fixture of the Store contract suite (StoreContractTest): the backends
// it runs on, each opening fresh, empty stores. Its tests are in
// store_contract_test.cc (which instantiates the suite once per backend)
// and store_output_test.cc. Tests only.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "core/store/memory_store.h"
#include "core/store/sqlite_store.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_test_util.h"
#include "tests/unit/temp_dir.h"

namespace varan::core::store_test {

// What every backend can be opened with.
struct ContractOptions {
  RetentionOptions retention;
  const Clock* clock = nullptr;
};

// Opens stores of one backend for one test.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  // A new, empty store on each call.
  virtual std::unique_ptr<Store> Open(const ContractOptions& options) = 0;
};

class MemoryBackend final : public StoreBackend {
 public:
  static std::unique_ptr<StoreBackend> Make() {
    return std::make_unique<MemoryBackend>();
  }
  std::unique_ptr<Store> Open(const ContractOptions& options) override {
    MemoryStoreOptions o;
    o.retention = options.retention;
    o.clock = options.clock;
    return std::make_unique<MemoryStore>(o);
  }
};

class SqliteBackend final : public StoreBackend {
 public:
  static std::unique_ptr<StoreBackend> Make() {
    return std::make_unique<SqliteBackend>();
  }
  std::unique_ptr<Store> Open(const ContractOptions& options) override {
    SqliteStoreOptions o;
    o.retention = options.retention;
    o.clock = options.clock;
    // Small batches, so that the tests cross batch and retention
    // transaction boundaries.
    o.max_batch_ops = 7;
    o.prune_batch_jobs = 2;
    auto store =
        SqliteStore::Open(absl::StrCat(dir_.path(), "/core-", ++n_, ".db"), o);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

 private:
  varan::testing::UnitTempDir dir_;
  int n_ = 0;
};

using BackendFactory = std::unique_ptr<StoreBackend> (*)();

// The parameter is a function pointer: name the test after the suite's
// prefix (Memory/, Sqlite/, Postgres/), not the pointer's value, which
// differs from run to run and would keep ctest from finding the test it
// discovered.
inline std::string BackendTestName(
    const ::testing::TestParamInfo<BackendFactory>&) {
  return "Store";
}

class StoreContractTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  void SetUp() override { backend_ = GetParam()(); }

  // Opens a fresh store, replacing the test's previous one.
  Store& Open(ContractOptions options = {}) {
    store_.reset();
    store_ = backend_->Open(options);
    if (store_ == nullptr) std::abort();  // Open has reported why
    return *store_;
  }

  // Creates the jobs and waits for their commit.
  static void CreateAll(Store& store, const std::vector<varan::v1::Job>& jobs) {
    for (const varan::v1::Job& j : jobs) store.CreateJob(j, nullptr);
    ASSERT_TRUE(store.Sync().ok());
  }

  static void CreateWithEvents(Store& store, const varan::v1::Job& job) {
    store.CreateJob(job, nullptr);
    store.AppendEvents(job.id(),
                       {MakeEvent(job.id(), 0), MakeEvent(job.id(), 1)});
  }

  std::unique_ptr<StoreBackend> backend_;
  std::unique_ptr<Store> store_;
};

}  // namespace varan::core::store_test
