// IssueClientCertificate (core/server/operator_certificates.h) over a real
// in-memory PeripheryCa: how long an operator's certificate lives, what it
// says, and that OperatorOf reads back the token it names and refuses a
// periphery's certificate.
#include "core/server/operator_certificates.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "common/pki.h"
#include "common/time_util.h"
#include "core/fleet/periphery_ca.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan::core {
namespace {

using ::testing::HasSubstr;

class OperatorCertificatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca =
        pki::CreateAuthority("test-ca", absl::Now(), absl::Hours(24 * 365));
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<PeripheryCa>(*ca, absl::Hours(1));
    auto key = pki::NewPrivateKey();
    ASSERT_TRUE(key.ok());
    auto csr = pki::CreateRequest(*key, "me");
    ASSERT_TRUE(csr.ok());
    csr_ = *csr;
    token_.name = "ci";
    token_.role = varan::v1::ROLE_VIEWER;
    token_.id = "tok-1";
    token_.binding = "0123456789abcdef";
  }

  absl::StatusOr<varan::v1::IssueClientCertificateResponse> Issue(
      absl::Duration lifetime) {
    varan::v1::IssueClientCertificateRequest req;
    req.set_csr(csr_);
    if (lifetime != absl::ZeroDuration()) {
      SetDuration(lifetime, req.mutable_lifetime());
    }
    return IssueClientCertificate(*ca_, token_, req, now_);
  }

  std::unique_ptr<PeripheryCa> ca_;
  std::string csr_;
  TokenIdentity token_;
  const absl::Time now_ = absl::Now();
};

TEST_F(OperatorCertificatesTest, LivesADayUnlessAskedAtMostThirtyDays) {
  auto daily = Issue(absl::ZeroDuration());
  ASSERT_TRUE(daily.ok()) << daily.status();
  EXPECT_LE(absl::AbsDuration(FromTimestamp(daily->not_after()) -
                              (now_ + absl::Hours(24))),
            absl::Seconds(1));
  auto info = pki::Inspect(daily->certificate());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->not_after, FromTimestamp(daily->not_after()));
  EXPECT_EQ(info->common_name, "tok-1:0123456789abcdef");

  auto year = Issue(absl::Hours(24 * 365));
  ASSERT_TRUE(year.ok()) << year.status();
  EXPECT_LE(absl::AbsDuration(FromTimestamp(year->not_after()) -
                              (now_ + kMaxOperatorCertLifetime)),
            absl::Seconds(1));

  EXPECT_EQ(Issue(-absl::Hours(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(OperatorCertificatesTest, NeverOutlivesItsToken) {
  token_.expires = now_ + absl::Hours(3);
  auto issued = Issue(absl::Hours(48));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_LE(
      absl::AbsDuration(FromTimestamp(issued->not_after()) - token_.expires),
      absl::Seconds(1));
  token_.expires = now_ - absl::Seconds(1);
  EXPECT_EQ(Issue(absl::ZeroDuration()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(OperatorCertificatesTest, NamesItsTokenAndIsNoPeripherysCertificate) {
  auto issued = Issue(absl::ZeroDuration());
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto presented = ca_->OperatorOf(issued->certificate());
  ASSERT_TRUE(presented.ok()) << presented.status();
  EXPECT_EQ(presented->token_id, "tok-1");
  EXPECT_EQ(presented->binding, "0123456789abcdef");
  // Not a periphery's, though the same CA issued it.
  EXPECT_FALSE(
      ca_->CheckPresented("tok-1:0123456789abcdef", issued->certificate())
          .ok());
  // A periphery's is not an operator's.
  auto periphery = ca_->Issue("p-1", csr_);
  ASSERT_TRUE(periphery.ok());
  auto refused = ca_->OperatorOf(*periphery);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnauthenticated);
  // Nor is a bad request issued anything.
  varan::v1::IssueClientCertificateRequest bad;
  bad.set_csr("not a request");
  auto r = IssueClientCertificate(*ca_, token_, bad, now_);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("csr"));
}

}  // namespace
}  // namespace varan::core
