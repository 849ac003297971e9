// Tests for core/jobs/execution_id.h: the "<job id>/<target>" wire form
// that core sends peripheries and reads back from their reports.
#include "core/jobs/execution_id.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;

class ExecutionIdTest : public ::testing::Test {};

TEST_F(ExecutionIdTest, ToStringJoinsJobAndTargetWithSlash) {
  EXPECT_EQ((ExecutionId{"0190abc", "web-1"}).ToString(), "0190abc/web-1");
}

TEST_F(ExecutionIdTest, ParseReadsWhatToStringWrites) {
  struct Case {
    std::string wire;
    ExecutionId want;
  };
  const std::vector<Case> cases = {
      {"0190abc/web-1", {"0190abc", "web-1"}},
      {"j/t", {"j", "t"}},
      // Everything after the first slash is the target.
      {"job/a/b", {"job", "a/b"}},
      {"job//", {"job", "/"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.wire);
    auto parsed = ExecutionId::Parse(c.wire);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, c.want);
    EXPECT_EQ(parsed->ToString(), c.wire);
  }
}

TEST_F(ExecutionIdTest, ParseRejectsMalformedIds) {
  struct Case {
    std::string wire;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"", "no '/'"},
      {"job-without-target", "no '/'"},
      {"/", "empty job id"},
      {"/web-1", "empty job id"},
      {"0190abc/", "empty target"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.wire);
    auto parsed = ExecutionId::Parse(c.wire);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.why));
    EXPECT_THAT(parsed.status().message(),
                HasSubstr(absl::StrCat("\"", c.wire, "\"")));
  }
}

}  // namespace
}  // namespace varan::core
