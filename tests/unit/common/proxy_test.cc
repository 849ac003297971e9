#include "common/proxy.h"

#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ProxyTest, RedactHidesUserAndPassword) {
  struct Case {
    std::string url, want;
  } cases[] = {
      {"http://user:pa55@proxy:3128", "http://***@proxy:3128"},
      {"http://user@[fd00::1]:3128/", "http://***@[fd00::1]:3128/"},
      {"http://proxy.example:8080", "http://proxy.example:8080"},
      {"user:p@ss@10.0.0.1:3128", "***@10.0.0.1:3128"},
      {"", ""},
  };
  for (const auto& c : cases) EXPECT_EQ(RedactProxyUrl(c.url), c.want) << c.url;
}

TEST(ProxyTest, CheckAcceptsHttpUrlsAndNone) {
  for (const char* ok :
       {"", "none", "http://proxy:3128", "http://u:p@10.0.0.1:3128",
        "http://[fd00::1]:3128/", "http://u:p@[::1]:8080"}) {
    EXPECT_TRUE(CheckProxyUrl(ok).ok()) << ok;
  }
  struct Case {
    std::string url, expect;
  } bad[] = {
      {"https://u:secret@proxy:3128", "only http://"},
      {"socks5://proxy:1080", "only http://"},
      {"http://u:secret@proxy", "host and port"},
      {"http://proxy:3128/path", "unexpected path"},
      {"proxy:3128", "only http://"},
  };
  for (const auto& c : bad) {
    absl::Status s = CheckProxyUrl(c.url);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_THAT(s.message(), HasSubstr(c.expect)) << c.url;
    EXPECT_THAT(s.message(), Not(HasSubstr("secret"))) << c.url;
  }
}

TEST(ProxyTest, PrecedenceIsFlagThenGrpcThenHttpsThenHttp) {
  std::map<std::string, std::string> env;
  auto fake = [&](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  EXPECT_EQ(ChooseProxy("", fake).url, "");
  env["http_proxy"] = "http://h:1";
  EXPECT_EQ(ChooseProxy("", fake).source, "http_proxy");
  env["https_proxy"] = "http://s:1";
  EXPECT_EQ(ChooseProxy("", fake).url, "http://s:1");
  env["grpc_proxy"] = "http://g:1";
  EXPECT_EQ(ChooseProxy("", fake).source, "grpc_proxy");
  EXPECT_EQ(ChooseProxy("http://f:1", fake).url, "http://f:1");
  EXPECT_EQ(ChooseProxy("http://f:1", fake).source, "--proxy");
  EXPECT_EQ(ChooseProxy("none", fake).url, "");
  // Set but empty: no proxy (as gRPC reads it).
  env["grpc_proxy"] = "";
  EXPECT_EQ(ChooseProxy("", fake).url, "");

  EXPECT_EQ(ProxyExemptions(fake), "");
  env["no_proxy"] = "internal.example";
  EXPECT_EQ(ProxyExemptions(fake), "no_proxy=internal.example");
  env["no_grpc_proxy"] = "10.0.0.0/8";
  EXPECT_EQ(ProxyExemptions(fake), "no_grpc_proxy=10.0.0.0/8");
}

}  // namespace
}  // namespace varan
