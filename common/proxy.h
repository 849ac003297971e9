// HTTP CONNECT proxies for the daemons' outgoing channels: a periphery's
// channel to core, core's channels to the peripheries it dials.
//
// gRPC makes the connection; these helpers choose and describe the proxy.
// gRPC 1.51 takes the first that is set of: the channel argument
// grpc.http_proxy (from --proxy), then the environment variables
// grpc_proxy, https_proxy, http_proxy. A target whose host is listed in
// no_grpc_proxy (or, when that is unset, no_proxy: comma-separated name
// suffixes or CIDR ranges) is dialed directly whichever proxy was chosen.
// --proxy none turns proxies off for the daemon's channels, the environment
// notwithstanding.
//
// Proxy URLs are http://[user:password@]host:port; the user and password
// are sent as Proxy-Authorization: Basic, and never logged (see
// RedactProxyUrl).
//
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/channel_arguments.h"

namespace varan {

// The value of --proxy that turns proxies off.
inline constexpr char kNoProxy[] = "none";

// Checks a --proxy value: empty, "none", or http://[user:password@]host:port
// (host a name, an IPv4 literal or a bracketed IPv6 literal). The error
// (INVALID_ARGUMENT) shows the URL redacted.
absl::Status CheckProxyUrl(absl::string_view url);

// `url` with its user and password replaced by "***"
// ("http://***@proxy:3128"); unchanged when it carries none.
std::string RedactProxyUrl(absl::string_view url);

// The proxy gRPC will use for this daemon's channels, and where it came
// from ("--proxy", "grpc_proxy", "https_proxy", "http_proxy"); url empty:
// none. `env` reads the environment (ProcessEnv, or a fake in tests).
struct ProxyChoice {
  std::string url;
  std::string source;
};
ProxyChoice ChooseProxy(
    const std::string& flag,
    const std::function<std::optional<std::string>(const char*)>& env);

// The environment's exemptions ("no_grpc_proxy=..." or "no_proxy=..."),
// for the log; empty when neither is set.
std::string ProxyExemptions(
    const std::function<std::optional<std::string>(const char*)>& env);

// The process's environment, for ChooseProxy and ProxyExemptions.
std::optional<std::string> ProcessEnv(const char* name);

// Sets `args` for the --proxy value `flag`: the URL as grpc.http_proxy,
// proxies off for "none", nothing (the environment decides) when empty.
void ApplyProxy(const std::string& flag, grpc::ChannelArguments* args);

// Logs, for the channels toward `peer` ("core", "peripheries"), which
// proxy they use (redacted) and where it was set, or that they connect
// directly.
void LogProxy(const std::string& flag, const std::string& peer);

}  // namespace varan
