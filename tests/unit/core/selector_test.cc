// Tests for core/fleet/selector.h: Kubernetes-style label selectors and
// label validation.
#include "core/fleet/selector.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;

class SelectorTest : public ::testing::Test {};

struct MatchCase {
  std::string selector;
  Labels labels;
  bool want;
};

TEST_F(SelectorTest, MatchesLabelSets) {
  const std::vector<MatchCase> cases = {
      // The empty selector matches everything.
      {"", {}, true},
      {"", {{"env", "prod"}}, true},
      {"  \t ", {{"env", "prod"}}, true},
      // Equality.
      {"env=prod", {{"env", "prod"}}, true},
      {"env=prod", {{"env", "dev"}}, false},
      {"env=prod", {}, false},
      {"env==prod", {{"env", "prod"}}, true},
      {"env==prod", {{"env", "prod2"}}, false},
      // An empty value, as in Kubernetes: the key exists with value "".
      {"env=", {{"env", ""}}, true},
      {"env=", {{"env", "prod"}}, false},
      {"env=", {}, false},
      // Inequality also holds when the key is absent.
      {"env!=prod", {{"env", "prod"}}, false},
      {"env!=prod", {{"env", "dev"}}, true},
      {"env!=prod", {}, true},
      // Set membership.
      {"env in (prod,staging)", {{"env", "staging"}}, true},
      {"env in (prod,staging)", {{"env", "dev"}}, false},
      {"env in (prod,staging)", {}, false},
      {"env in (prod)", {{"env", "prod"}}, true},
      {"env notin (prod,staging)", {{"env", "dev"}}, true},
      {"env notin (prod,staging)", {{"env", "prod"}}, false},
      {"env notin (prod,staging)", {}, true},
      // Existence.
      {"env", {{"env", ""}}, true},
      {"env", {{"env", "x"}}, true},
      {"env", {{"tier", "x"}}, false},
      {"!env", {}, true},
      {"!env", {{"env", "x"}}, false},
      {"!env", {{"tier", "x"}}, true},
      // Comma means AND.
      {"env=prod,tier!=db", {{"env", "prod"}, {"tier", "web"}}, true},
      {"env=prod,tier!=db", {{"env", "prod"}, {"tier", "db"}}, false},
      {"env=prod,tier!=db", {{"env", "dev"}, {"tier", "web"}}, false},
      {"env=prod,tier!=db", {{"env", "prod"}}, true},
      {"env=prod,region in (eu,us),!draining",
       {{"env", "prod"}, {"region", "us"}},
       true},
      {"env=prod,region in (eu,us),!draining",
       {{"env", "prod"}, {"region", "us"}, {"draining", ""}},
       false},
      // Whitespace around tokens is ignored.
      {"  env = prod ,  tier in ( a , b )  ",
       {{"env", "prod"}, {"tier", "b"}},
       true},
      {" ! draining ", {}, true},
      {"env  notin  (a)", {{"env", "b"}}, true},
      // Prefixed keys.
      {"example.com/role=db", {{"example.com/role", "db"}}, true},
      {"example.com/role=db", {{"role", "db"}}, false},
      {"!example.com/role", {{"role", "db"}}, true},
      // Keys and values are case-sensitive.
      {"Env=Prod", {{"Env", "Prod"}}, true},
      {"Env=Prod", {{"env", "prod"}}, false},
      {"v=1.2_3-x", {{"v", "1.2_3-x"}}, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("selector \"" + c.selector + "\"");
    absl::StatusOr<Selector> s = Selector::Parse(c.selector);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->Matches(c.labels), c.want);
  }
}

TEST_F(SelectorTest, ParsesIntoRequirements) {
  absl::StatusOr<Selector> s =
      Selector::Parse("a=1,b!=2,c in (x,y),d notin (z),e,!f");
  ASSERT_TRUE(s.ok()) << s.status();
  const auto& r = s->requirements();
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[0].key, "a");
  EXPECT_EQ(r[0].op, Selector::Op::kEquals);
  EXPECT_EQ(r[0].values, std::vector<std::string>{"1"});
  EXPECT_EQ(r[1].op, Selector::Op::kNotEquals);
  EXPECT_EQ(r[2].op, Selector::Op::kIn);
  EXPECT_EQ(r[2].values, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(r[3].op, Selector::Op::kNotIn);
  EXPECT_EQ(r[4].key, "e");
  EXPECT_EQ(r[4].op, Selector::Op::kExists);
  EXPECT_EQ(r[5].key, "f");
  EXPECT_EQ(r[5].op, Selector::Op::kDoesNotExist);
  EXPECT_FALSE(s->empty());
  EXPECT_TRUE(Selector::Parse("")->empty());
}

TEST_F(SelectorTest, RejectsMalformedSelectorsWithAPosition) {
  const std::vector<std::string> cases = {
      "=x",
      "env in prod",
      "env in (a,",
      "env in (a",
      "env in ()",
      "env notin ()",
      "env in (a,)",
      "env in (,a)",
      "env in (a b)",
      "env==a,,b",
      "env=prod,",
      ",env",
      "!",
      "!=x",
      "env=a b",
      "env>1",
      "env=(a)",
      "-env=x",
      "env=-x",
      "Example.com/role=x",
      "/role=x",
      "a/b/c=x",
      "env=" + std::string(64, 'v'),
  };
  for (const auto& text : cases) {
    SCOPED_TRACE("selector \"" + text + "\"");
    absl::StatusOr<Selector> s = Selector::Parse(text);
    ASSERT_FALSE(s.ok()) << "accepted with " << s->requirements().size()
                         << " requirements";
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("at position"));
    EXPECT_THAT(std::string(s.status().message()),
                HasSubstr("\"" + text + "\""));
  }
}

TEST_F(SelectorTest, ErrorPositionIsOneBasedAtTheProblem) {
  struct Case {
    std::string text;
    int position;
  };
  const std::vector<Case> cases = {
      {"=x", 1},           // no key
      {"env in prod", 8},  // '(' expected at "prod"
      {"env=a b", 7},      // ',' expected at "b"
      {"env==a,,b", 8},    // key expected after the first ','
      {"a=1, -x=2", 6},    // the bad key itself
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<Selector> s = Selector::Parse(c.text);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.status().message()),
                HasSubstr("at position " + std::to_string(c.position) + ":"));
  }
}

// A DNS subdomain of exactly `size` characters, in labels of at most 63.
std::string DnsName(size_t size) {
  std::string out;
  while (out.size() < size) {
    if (!out.empty()) out += '.';
    out += std::string(std::min<size_t>(63, size - out.size()), 'p');
  }
  return out;
}

TEST_F(SelectorTest, ValidateLabelKey) {
  ASSERT_EQ(DnsName(253).size(), 253u);
  ASSERT_EQ(DnsName(254).size(), 254u);
  const std::vector<std::string> valid = {
      "a",
      "app",
      "A-b_c.d",
      "9lives",
      "app.kubernetes.io/name",
      "example.com/role",
      "a-b.c/x",
      std::string(63, 'k'),
      DnsName(253) + "/x",
  };
  for (const auto& key : valid) {
    EXPECT_TRUE(ValidateLabelKey(key).ok()) << key;
  }
  const std::vector<std::string> invalid = {
      "",
      "-a",
      "a-",
      ".a",
      "a b",
      "a=b",
      "a,b",
      std::string(64, 'k'),
      "Example.com/x",
      "/x",
      "x/",
      "a/b/c",
      "ex_ample.com/x",
      "-ex.com/x",
      "ex..com/x",
      DnsName(254) + "/x",
      std::string(64, 'p') + ".com/x",
  };
  for (const auto& key : invalid) {
    absl::Status s = ValidateLabelKey(key);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(std::string(s.message()), HasSubstr("\"" + key + "\""));
  }
}

TEST_F(SelectorTest, ValidateLabelValue) {
  const std::vector<std::string> valid = {"", "prod", "a.b-c_d", "1",
                                          std::string(63, 'v')};
  for (const auto& value : valid) {
    EXPECT_TRUE(ValidateLabelValue(value).ok()) << value;
  }
  const std::vector<std::string> invalid = {
      "-a", "a-", "_a", "a b", "a/b", "a=b", std::string(64, 'v')};
  for (const auto& value : invalid) {
    absl::Status s = ValidateLabelValue(value);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << value;
    EXPECT_THAT(std::string(s.message()), HasSubstr("\"" + value + "\""));
  }
}

}  // namespace
}  // namespace varan::core
