// The Cluster contract suite (core/cluster/cluster.h), run against every
// implementation: MemoryCluster here (cluster_backends in
// store_backends_test.cc), PostgresCluster on a real PostgreSQL 15
// (tests/postgres/postgres_cluster_test.cc). A backend gives replicas of
// one shared cluster, a way to let time pass and a way to kill one.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "core/cluster/cluster.h"
#include "gtest/gtest.h"

namespace varan::core::cluster_test {

class ClusterBackend {
 public:
  virtual ~ClusterBackend() = default;
  // A new replica of this backend's one cluster, with `leases` wanted and
  // ttl() as its ttl.
  virtual std::unique_ptr<Cluster> Join(const std::string& id,
                                        std::vector<std::string> leases) = 0;
  // The ttl the backend's replicas use.
  virtual absl::Duration ttl() const = 0;
  // Lets `d` pass on the cluster's clock (really, for a database's).
  virtual void Advance(absl::Duration d) = 0;
  // `replica` dies without leaving.
  virtual void Crash(Cluster& replica) = 0;
};

using ClusterBackendFactory = std::unique_ptr<ClusterBackend> (*)();

class ClusterContractTest
    : public ::testing::TestWithParam<ClusterBackendFactory> {
 protected:
  void SetUp() override { backend_ = GetParam()(); }
  ClusterBackend& backend() { return *backend_; }

 private:
  std::unique_ptr<ClusterBackend> backend_;
};

}  // namespace varan::core::cluster_test
