// What every Store backend shares (core/store/store.h).
#include "core/store/store.h"

#include "absl/strings/str_cat.h"

namespace varan::core {

bool ApplyJoinUse(JoinUse use, varan::v1::JoinToken* stored) {
  switch (use) {
    case JoinUse::kTake:
      if (stored->has_revoke_time()) return false;
      if (stored->max_uses() > 0 && stored->uses() >= stored->max_uses()) {
        return false;
      }
      stored->set_uses(stored->uses() + 1);
      return true;
    case JoinUse::kGiveBack:
      if (stored->uses() > 0) stored->set_uses(stored->uses() - 1);
      return true;
  }
  return false;
}

absl::Status NoSuchJoinToken(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no join token with id ", id));
}

}  // namespace varan::core
