// The Store contract suite (store_contract_test.cc, store_output_test.cc)
// on the embedded backends: memory and SQLite. PostgreSQL's instantiation
// is in tests/postgres/postgres_store_test.cc.
#include "tests/unit/store/store_contract.h"

namespace varan::core::store_test {
namespace {

INSTANTIATE_TEST_SUITE_P(Memory, StoreContractTest,
                         ::testing::Values(&MemoryBackend::Make),
                         BackendTestName);
INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContractTest,
                         ::testing::Values(&SqliteBackend::Make),
                         BackendTestName);

}  // namespace
}  // namespace varan::core::store_test
