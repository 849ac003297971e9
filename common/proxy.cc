#include "common/proxy.h"

#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/address.h"
#include "common/log.h"

namespace varan {
namespace {

constexpr absl::string_view kScheme = "http://";

}  // namespace

std::string RedactProxyUrl(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  const size_t start =
      scheme_end == absl::string_view::npos ? 0 : scheme_end + 3;
  const size_t end = url.find('/', start);
  const absl::string_view authority = url.substr(start, end - start);
  const size_t at = authority.rfind('@');
  if (at == absl::string_view::npos) return std::string(url);
  return absl::StrCat(url.substr(0, start), "***",
                      url.substr(start + at, absl::string_view::npos));
}

absl::Status CheckProxyUrl(absl::string_view url) {
  if (url.empty() || url == kNoProxy) return absl::OkStatus();
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--proxy ", RedactProxyUrl(url), ": ", why,
        " (expected http://[user:password@]host:port, or \"none\")"));
  };
  if (!absl::StartsWith(url, kScheme)) {
    return bad("only http:// proxies (HTTP CONNECT) are supported");
  }
  absl::string_view rest = url.substr(kScheme.size());
  if (absl::EndsWith(rest, "/")) rest.remove_suffix(1);
  if (rest.find('/') != absl::string_view::npos) return bad("unexpected path");
  const size_t at = rest.rfind('@');
  if (at != absl::string_view::npos) rest = rest.substr(at + 1);
  if (!ParseDialAddress(rest).ok()) return bad("host and port expected");
  return absl::OkStatus();
}

ProxyChoice ChooseProxy(
    const std::string& flag,
    const std::function<std::optional<std::string>(const char*)>& env) {
  if (flag == kNoProxy) return {};
  if (!flag.empty()) return {flag, "--proxy"};
  for (const char* name : {"grpc_proxy", "https_proxy", "http_proxy"}) {
    // Set but empty: gRPC takes it, and uses no proxy.
    if (auto value = env(name); value.has_value()) {
      if (value->empty()) return {};
      return {*value, name};
    }
  }
  return {};
}

std::string ProxyExemptions(
    const std::function<std::optional<std::string>(const char*)>& env) {
  for (const char* name : {"no_grpc_proxy", "no_proxy"}) {
    if (auto value = env(name); value.has_value()) {
      return absl::StrCat(name, "=", *value);
    }
  }
  return "";
}

std::optional<std::string> ProcessEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

void ApplyProxy(const std::string& flag, grpc::ChannelArguments* args) {
  if (flag == kNoProxy) {
    args->SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  } else if (!flag.empty()) {
    args->SetString(GRPC_ARG_HTTP_PROXY, flag);
  }
}

void LogProxy(const std::string& flag, const std::string& peer) {
  const ProxyChoice choice = ChooseProxy(flag, ProcessEnv);
  if (choice.url.empty()) {
    spdlog::info("connecting to {} directly (no HTTP proxy{})", peer,
                 flag == kNoProxy ? ": --proxy none" : " set");
    return;
  }
  const std::string exemptions = ProxyExemptions(ProcessEnv);
  spdlog::info("connecting to {} through HTTP proxy {} (from {}){}", peer,
               RedactProxyUrl(choice.url), choice.source,
               exemptions.empty()
                   ? ""
                   : absl::StrCat("; directly to hosts in ", exemptions));
}

}  // namespace varan
