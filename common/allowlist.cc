#include "common/allowlist.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace varan {
namespace {

// Parses an IP literal (IPv6 may carry brackets). False if it is none.
bool ParseIp(absl::string_view text, bool* v6,
             std::array<unsigned char, 16>* out) {
  std::string s(text);
  if (s.size() >= 2 && s.front() == '[' && s.back() == ']') {
    s = s.substr(1, s.size() - 2);
  }
  out->fill(0);
  if (inet_pton(AF_INET, s.c_str(), out->data()) == 1) {
    *v6 = false;
    return true;
  }
  if (s.find('%') != std::string::npos) s = s.substr(0, s.find('%'));
  if (inet_pton(AF_INET6, s.c_str(), out->data()) == 1) {
    *v6 = true;
    return true;
  }
  return false;
}

bool IsV4Mapped(const std::array<unsigned char, 16>& a) {
  static const unsigned char kPrefix[12] = {0, 0, 0, 0, 0,    0,
                                            0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.data(), kPrefix, sizeof(kPrefix)) == 0;
}

std::string Format(bool v6, const std::array<unsigned char, 16>& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, a.data(), buf, sizeof(buf));
  return buf;
}

}  // namespace

absl::StatusOr<Allowlist> Allowlist::Parse(
    const std::vector<std::string>& rules) {
  Allowlist out;
  for (const std::string& text : rules) {
    auto error = [&text](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--allow \"", text, "\": ", why));
    };
    Rule rule;
    absl::string_view addr = text;
    std::optional<int> prefix;
    if (size_t slash = addr.find('/'); slash != absl::string_view::npos) {
      int p = 0;
      if (!absl::SimpleAtoi(addr.substr(slash + 1), &p)) {
        return error("the prefix length after '/' is not a number");
      }
      prefix = p;
      addr = addr.substr(0, slash);
    }
    if (!ParseIp(addr, &rule.v6, &rule.addr)) {
      return error(
          "expected an IPv4 or IPv6 network, e.g. 10.0.0.0/8, fd00::/8 or "
          "192.0.2.7");
    }
    const int max = rule.v6 ? 128 : 32;
    rule.prefix = prefix.value_or(max);
    if (rule.prefix < 0 || rule.prefix > max) {
      return error(absl::StrCat("prefix length must be 0-", max));
    }
    // Host bits below the prefix must be zero.
    for (int bit = rule.prefix; bit < max; ++bit) {
      if (rule.addr[static_cast<size_t>(bit / 8)] & (0x80 >> (bit % 8))) {
        Rule masked = rule;
        for (int b = rule.prefix; b < max; ++b) {
          masked.addr[static_cast<size_t>(b / 8)] &=
              static_cast<unsigned char>(~(0x80 >> (b % 8)));
        }
        return error(absl::StrCat("host bits are set; did you mean \"",
                                  Format(masked.v6, masked.addr), "/",
                                  rule.prefix, "\"?"));
      }
    }
    out.rules_.push_back(rule);
  }
  return out;
}

bool Allowlist::Matches(const Rule& rule, bool v6,
                        const std::array<unsigned char, 16>& addr) {
  if (rule.v6 != v6) return false;
  const int full = rule.prefix / 8;
  if (std::memcmp(rule.addr.data(), addr.data(), static_cast<size_t>(full)) !=
      0) {
    return false;
  }
  const int rest = rule.prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (rule.addr[static_cast<size_t>(full)] & mask) ==
         (addr[static_cast<size_t>(full)] & mask);
}

bool Allowlist::Allows(absl::string_view address) const {
  if (rules_.empty()) return true;
  bool v6 = false;
  std::array<unsigned char, 16> addr{};
  if (!ParseIp(address, &v6, &addr)) return false;
  // The same client as IPv4 and as IPv4-mapped IPv6, whichever it came as.
  std::array<unsigned char, 16> v4{};
  std::array<unsigned char, 16> mapped{};
  bool has_v4 = false;
  if (!v6) {
    v4 = addr;
    has_v4 = true;
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    std::memcpy(mapped.data() + 12, addr.data(), 4);
  } else {
    mapped = addr;
    if (IsV4Mapped(addr)) {
      std::memcpy(v4.data(), addr.data() + 12, 4);
      has_v4 = true;
    }
  }
  for (const Rule& rule : rules_) {
    if (has_v4 && Matches(rule, false, v4)) return true;
    if ((v6 || has_v4) && Matches(rule, true, mapped)) return true;
  }
  return false;
}

std::vector<std::string> Allowlist::ToStrings() const {
  std::vector<std::string> out;
  for (const Rule& r : rules_) {
    out.push_back(absl::StrCat(Format(r.v6, r.addr), "/", r.prefix));
  }
  return out;
}

}  // namespace varan
