// Allowlist: the client networks a daemon accepts calls from (--allow CIDR).
//
// Rules are IPv4 or IPv6 networks ("10.0.0.0/8", "fd00::/8") or single
// addresses ("192.0.2.7" is a /32, "::1" a /128). IPv4 clients that reach a
// "[::]" listener arrive as IPv4-mapped IPv6 addresses ("::ffff:10.0.0.5");
// they match IPv4 rules (and IPv6 rules covering ::ffff:0:0/96). An empty
// allowlist allows everyone.
//
// Immutable after Parse; thread-safe.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace varan {

class Allowlist {
 public:
  // Allows everyone.
  Allowlist() = default;

  // Parses CIDR rules. INVALID_ARGUMENT naming the bad value ("--allow
  // \"10.0.0.0/33\": prefix length must be 0-32"). Host bits set below the
  // prefix ("10.0.0.1/8") are an error too: they suggest a typo.
  static absl::StatusOr<Allowlist> Parse(const std::vector<std::string>& rules);

  // Whether a client at `address` may call. `address` is a bare IP literal
  // as NormalizePeerAddress gives it ("10.0.0.5", "fd00::5",
  // "::ffff:10.0.0.5" also works); anything else (a unix socket peer, an
  // unparsable string) is refused unless the list is empty.
  bool Allows(absl::string_view address) const;

  bool empty() const { return rules_.empty(); }
  // The rules in canonical form ("10.0.0.0/8", "fd00::/8").
  std::vector<std::string> ToStrings() const;

 private:
  struct Rule {
    bool v6 = false;
    std::array<unsigned char, 16> addr{};  // IPv4 in the first 4 bytes
    int prefix = 0;
  };
  static bool Matches(const Rule& rule, bool v6,
                      const std::array<unsigned char, 16>& addr);

  std::vector<Rule> rules_;
};

}  // namespace varan
