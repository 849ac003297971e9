#include "core/cluster/cluster.h"

#include "absl/strings/str_cat.h"
#include "common/secrets.h"

namespace varan::core {

std::string NewReplicaId() {
  return absl::StrCat("r-", GenerateSecret().substr(0, 16));
}

}  // namespace varan::core
