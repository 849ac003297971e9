// Network address parsing and formatting shared by both daemons and varanctl.
//
// Every address Varan prints, stores or advertises uses a form that parses
// back: IPv6 literals are always bracketed ("[fd00::1]:7701"), IPv4 literals
// and host names are not ("10.0.0.5:7701", "core.example:7700").
//
// All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace varan {

// A host (IPv4 literal, IPv6 literal without brackets, or DNS name) and a port.
struct HostPort {
  std::string host;
  uint16_t port = 0;

  bool operator==(const HostPort&) const = default;
};

// True when `host` is an IPv6 literal (optionally with a "%zone" suffix).
bool IsIPv6Literal(absl::string_view host);
// True when `host` is a dotted-quad IPv4 literal.
bool IsIPv4Literal(absl::string_view host);
// True when `host` is "::" or "0.0.0.0".
bool IsWildcardHost(absl::string_view host);
// True when `host` is a loopback literal (127.0.0.0/8, ::1) or "localhost".
bool IsLoopbackHost(absl::string_view host);

// Formats as "[v6]:port" or "host:port".
std::string FormatHostPort(const HostPort& hp);
// Formats a bare host: IPv6 literals bracketed ("[::1]"), others unchanged.
std::string FormatHost(absl::string_view host);

// Parses a listen address: "[::]:7700", "[fd00::1]:7700", "0.0.0.0:7700",
// "127.0.0.1:7700", "host:7700", ":7700" or "7700" (both meaning [::]:7700).
// Port 0 asks the kernel for a free port. Errors are INVALID_ARGUMENT with a
// message naming the value; an unbracketed IPv6 literal with a port gets the
// bracketed form as a suggestion. IPv6 literals come back in canonical form
// ("[fd00:0::5]:1" gives host "fd00::5").
absl::StatusOr<HostPort> ParseListenAddress(absl::string_view text);

// Parses an address to dial: like ParseListenAddress but the host is
// required and the port must be 1-65535. When `default_port` is non-zero a
// missing port ("core.example", "[fd00::1]", "10.0.0.1") takes it.
absl::StatusOr<HostPort> ParseDialAddress(absl::string_view text,
                                          uint16_t default_port = 0);

// Parses a comma-separated list of addresses to dial (several core
// replicas: "core-a:7700,core-b:7700"), each as ParseDialAddress does, in
// order; whitespace around an element is ignored. Errors are
// INVALID_ARGUMENT naming the element: an empty one ("a:7700,,b:7700",
// a trailing comma, an empty list), a malformed one, or one listed twice
// (after the default port is filled in).
absl::StatusOr<std::vector<HostPort>> ParseDialAddressList(
    absl::string_view text, uint16_t default_port = 0);

// Turns a gRPC peer string ("ipv4:127.0.0.1:5000",
// "ipv6:%5B::ffff:10.0.0.1%5D:5000", "unix:/path") into the bare client
// address: "127.0.0.1", "10.0.0.1" (IPv4-mapped IPv6 shown as IPv4), "::1".
// Returns the input unchanged when it is not an ipv4:/ipv6: peer.
std::string NormalizePeerAddress(absl::string_view grpc_peer);

}  // namespace varan
