#include "common/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace varan {
namespace {

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid address \"", text, "\": ", why));
}

// RFC 1123 host name: dot-separated labels of [A-Za-z0-9-], not starting or
// ending with '-', each 1-63 characters, 253 in all.
bool IsValidHostName(absl::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label_len = 0;
  char prev = '.';
  for (char c : host) {
    if (c == '.') {
      if (label_len == 0 || prev == '-') return false;
      label_len = 0;
    } else if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
               c == '_') {
      if (label_len == 0 && c == '-') return false;
      if (++label_len > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

absl::StatusOr<uint16_t> ParsePort(absl::string_view text,
                                   absl::string_view port_text,
                                   bool allow_zero) {
  if (port_text.empty()) return Invalid(text, "missing port");
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(),
                                   port_text.data() + port_text.size(), value);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size()) {
    return Invalid(text,
                   absl::StrCat("port \"", port_text, "\" is not a number"));
  }
  if (value > 65535) {
    return Invalid(
        text, absl::StrCat("port ", port_text, " is out of range (0-65535)"));
  }
  if (value == 0 && !allow_zero) {
    return Invalid(text, "port 0 cannot be dialed (use 1-65535)");
  }
  return static_cast<uint16_t>(value);
}

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Splits "host:port" / "[v6]:port" / "[v6]" / "host" into host and port text.
// `has_port` tells whether a port part was present.
struct Split {
  std::string host;
  absl::string_view port;
  bool has_port = false;
};

absl::StatusOr<Split> SplitHostPort(absl::string_view text) {
  Split out;
  if (text.empty()) return Invalid(text, "empty");
  for (char c : text) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) ||
        !absl::ascii_isprint(static_cast<unsigned char>(c))) {
      return Invalid(text, "contains whitespace or control characters");
    }
  }
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos) {
      return Invalid(text, "'[' without matching ']'");
    }
    out.host = std::string(text.substr(1, close - 1));
    if (!IsIPv6Literal(out.host)) {
      return Invalid(text, absl::StrCat("\"", out.host,
                                        "\" in brackets is not an IPv6 "
                                        "address"));
    }
    absl::string_view rest = text.substr(close + 1);
    if (rest.empty()) return out;
    if (rest.front() != ':') {
      return Invalid(text, "expected ':' and a port after ']'");
    }
    out.port = rest.substr(1);
    out.has_port = true;
    return out;
  }
  size_t colons = std::count(text.begin(), text.end(), ':');
  if (colons > 1) {
    // An unbracketed IPv6 literal. Without a port it is unambiguous only when
    // the whole text parses as IPv6; with a port it must be bracketed.
    size_t last = text.rfind(':');
    absl::string_view maybe_host = text.substr(0, last);
    absl::string_view maybe_port = text.substr(last + 1);
    if (IsIPv6Literal(maybe_host) && AllDigits(maybe_port)) {
      return Invalid(text, absl::StrCat("IPv6 addresses must be bracketed "
                                        "when a port follows: did you mean "
                                        "\"[",
                                        maybe_host, "]:", maybe_port, "\"?"));
    }
    if (IsIPv6Literal(text)) {
      out.host = std::string(text);
      return out;
    }
    return Invalid(text,
                   "too many ':' (bracket IPv6 addresses: "
                   "\"[fd00::1]:7700\")");
  }
  if (colons == 1) {
    size_t colon = text.find(':');
    out.host = std::string(text.substr(0, colon));
    out.port = text.substr(colon + 1);
    out.has_port = true;
    return out;
  }
  out.host = std::string(text);
  return out;
}

// IPv6 literals in their canonical (RFC 5952) form, zone kept, so that one
// address is always stored and compared the same way; other hosts as given.
std::string CanonicalHost(const std::string& host) {
  size_t pct = host.find('%');
  std::string bare = host.substr(0, pct);
  in6_addr addr{};
  if (inet_pton(AF_INET6, bare.c_str(), &addr) != 1) return host;
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &addr, buf, sizeof(buf));
  return pct == std::string::npos ? std::string(buf)
                                  : absl::StrCat(buf, host.substr(pct));
}

absl::Status ValidateHost(absl::string_view text, absl::string_view host) {
  if (IsIPv6Literal(host) || IsIPv4Literal(host)) return absl::OkStatus();
  if (AllDigits(absl::StrReplaceAll(host, {{".", ""}}))) {
    return Invalid(text,
                   absl::StrCat("\"", host, "\" is not a valid IPv4 address"));
  }
  if (!IsValidHostName(host)) {
    return Invalid(text, absl::StrCat("\"", host,
                                      "\" is not a valid host name or IP "
                                      "address"));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsIPv6Literal(absl::string_view host) {
  std::string h(host.substr(0, host.find('%')));
  if (host.find('%') != absl::string_view::npos &&
      host.size() == h.size() + 1) {
    return false;  // empty zone
  }
  in6_addr addr{};
  return inet_pton(AF_INET6, h.c_str(), &addr) == 1;
}

bool IsIPv4Literal(absl::string_view host) {
  std::string h(host);
  in_addr addr{};
  return inet_pton(AF_INET, h.c_str(), &addr) == 1;
}

// Parses an IPv6 literal, ignoring a "%zone" suffix.
bool ParseIPv6(absl::string_view host, in6_addr* addr) {
  std::string h(host.substr(0, host.find('%')));
  return inet_pton(AF_INET6, h.c_str(), addr) == 1;
}

bool IsWildcardHost(absl::string_view host) {
  if (host == "0.0.0.0") return true;
  in6_addr addr{};
  return ParseIPv6(host, &addr) && IN6_IS_ADDR_UNSPECIFIED(&addr);
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  if (IsIPv4Literal(host)) return absl::StartsWith(host, "127.");
  in6_addr addr{};
  if (ParseIPv6(host, &addr)) {
    if (IN6_IS_ADDR_LOOPBACK(&addr)) return true;
    // ::ffff:127.x.y.z
    return IN6_IS_ADDR_V4MAPPED(&addr) && addr.s6_addr[12] == 127;
  }
  return false;
}

std::string FormatHost(absl::string_view host) {
  if (host.find(':') != absl::string_view::npos) {
    return absl::StrCat("[", host, "]");
  }
  return std::string(host);
}

std::string FormatHostPort(const HostPort& hp) {
  return absl::StrCat(FormatHost(hp.host), ":", hp.port);
}

absl::StatusOr<HostPort> ParseListenAddress(absl::string_view text) {
  // Bare port: "7700" or ":7700" mean every address, IPv6 and IPv4.
  if (AllDigits(text) ||
      (text.size() > 1 && text.front() == ':' && AllDigits(text.substr(1)))) {
    absl::string_view port_text = text.front() == ':' ? text.substr(1) : text;
    auto port = ParsePort(text, port_text, /*allow_zero=*/true);
    if (!port.ok()) return port.status();
    return HostPort{"::", *port};
  }
  auto split = SplitHostPort(text);
  if (!split.ok()) return split.status();
  if (!split->has_port) {
    return Invalid(text, "missing port (e.g. \"[::]:7700\")");
  }
  if (split->host.empty()) {
    return Invalid(text, "empty host (use \"[::]\" for every address)");
  }
  auto status = ValidateHost(text, split->host);
  if (!status.ok()) return status;
  auto port = ParsePort(text, split->port, /*allow_zero=*/true);
  if (!port.ok()) return port.status();
  return HostPort{CanonicalHost(split->host), *port};
}

absl::StatusOr<HostPort> ParseDialAddress(absl::string_view text,
                                          uint16_t default_port) {
  auto split = SplitHostPort(text);
  if (!split.ok()) return split.status();
  if (split->host.empty()) return Invalid(text, "empty host");
  auto status = ValidateHost(text, split->host);
  if (!status.ok()) return status;
  if (IsWildcardHost(split->host)) {
    return Invalid(text, absl::StrCat("cannot dial the wildcard address \"",
                                      split->host, "\""));
  }
  if (!split->has_port) {
    if (default_port == 0) return Invalid(text, "missing port");
    return HostPort{CanonicalHost(split->host), default_port};
  }
  auto port = ParsePort(text, split->port, /*allow_zero=*/false);
  if (!port.ok()) return port.status();
  return HostPort{CanonicalHost(split->host), *port};
}

absl::StatusOr<std::vector<HostPort>> ParseDialAddressList(
    absl::string_view text, uint16_t default_port) {
  const std::vector<absl::string_view> elements = absl::StrSplit(text, ',');
  std::vector<HostPort> out;
  for (size_t i = 0; i < elements.size(); ++i) {
    const absl::string_view element = absl::StripAsciiWhitespace(elements[i]);
    if (element.empty()) {
      return absl::InvalidArgumentError(
          elements.size() == 1
              ? std::string("no address given")
              : absl::StrCat("address ", i + 1, " of ", elements.size(),
                             " in \"", text, "\" is empty"));
    }
    auto address = ParseDialAddress(element, default_port);
    if (!address.ok()) return address.status();
    for (const HostPort& earlier : out) {
      if (earlier == *address) {
        return absl::InvalidArgumentError(
            absl::StrCat("address \"", element, "\" is listed twice (as ",
                         FormatHostPort(*address), ")"));
      }
    }
    out.push_back(*std::move(address));
  }
  return out;
}

std::string NormalizePeerAddress(absl::string_view grpc_peer) {
  absl::string_view rest;
  if (absl::StartsWith(grpc_peer, "ipv4:")) {
    rest = grpc_peer.substr(5);
    size_t colon = rest.rfind(':');
    return std::string(rest.substr(0, colon));
  }
  if (!absl::StartsWith(grpc_peer, "ipv6:")) return std::string(grpc_peer);
  std::string decoded = absl::StrReplaceAll(
      grpc_peer.substr(5),
      {{"%5B", "["}, {"%5D", "]"}, {"%5b", "["}, {"%5d", "]"}, {"%25", "%"}});
  std::string host;
  if (!decoded.empty() && decoded.front() == '[') {
    size_t close = decoded.find(']');
    host = decoded.substr(
        1, close == std::string::npos ? std::string::npos : close - 1);
  } else {
    host = decoded.substr(0, decoded.rfind(':'));
  }
  in6_addr addr{};
  std::string bare = host.substr(0, host.find('%'));
  if (inet_pton(AF_INET6, bare.c_str(), &addr) == 1 &&
      IN6_IS_ADDR_V4MAPPED(&addr)) {
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr.s6_addr[12], buf, sizeof(buf));
    return buf;
  }
  return host;
}

}  // namespace varan
