// Label selectors in Kubernetes syntax, and label validation.
//
//   env=prod,tier!=db,region in (eu,us),!draining
//
// A selector is a comma-separated list of requirements, all of which must
// hold: `k=v` / `k==v` (k exists with value v), `k!=v` (k absent or another
// value), `k in (a,b)`, `k notin (a,b)` (k absent or another value), `k`
// (k exists), `!k` (k absent). The empty selector matches everything.
//
// Selector objects are immutable after Parse and safe to share.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace varan::core {

using Labels = std::map<std::string, std::string>;

class Selector {
 public:
  enum class Op { kEquals, kNotEquals, kIn, kNotIn, kExists, kDoesNotExist };
  struct Requirement {
    std::string key;
    Op op;
    std::vector<std::string> values;  // one for (Not)Equals, 1+ for (Not)In
  };

  // Parses `text`. INVALID_ARGUMENT errors quote the selector and give the
  // 1-based character position of the problem.
  static absl::StatusOr<Selector> Parse(absl::string_view text);

  bool Matches(const Labels& labels) const;
  bool empty() const { return requirements_.empty(); }
  const std::vector<Requirement>& requirements() const { return requirements_; }

 private:
  std::vector<Requirement> requirements_;
};

// Kubernetes label key rules: optional "prefix/" (a DNS subdomain up to 253
// characters) and a name of 1-63 of [A-Za-z0-9-_.], alphanumeric at both
// ends. INVALID_ARGUMENT names the key.
absl::Status ValidateLabelKey(absl::string_view key);
// Label values: empty, or 1-63 characters like a key's name part.
absl::Status ValidateLabelValue(absl::string_view value);

}  // namespace varan::core
