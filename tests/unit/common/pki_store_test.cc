// Tests for pki::LoadOrCreateAuthority and pki::SeedAuthority: the cluster
// CA's files, their modes, and the states they refuse rather than silently
// making or taking a new CA.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "common/pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/common/pki_test_util.h"

namespace varan::pki {
namespace {

using pki_testing::kNow;
using pki_testing::Message;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr absl::Duration kYear = absl::Hours(24 * 365);

class PkiStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/varan-pki-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ca_dir_ = dir_ + "/ca";  // created by LoadOrCreateAuthority
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  absl::StatusOr<StoredAuthority> Load() {
    return LoadOrCreateAuthority(ca_dir_, "varan cluster CA", kNow, kYear);
  }
  // Creates the CA files and returns what was created.
  Authority Created() {
    absl::StatusOr<StoredAuthority> ca = Load();
    EXPECT_TRUE(ca.ok()) << ca.status();
    EXPECT_TRUE(ca.ok() && ca->created);
    return ca.ok() ? ca->authority : Authority{};
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static void Write(const std::string& path, const std::string& content,
                    mode_t mode) {
    std::ofstream(path) << content;
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
  }
  static unsigned Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  std::string key() const { return ca_dir_ + "/ca.key"; }
  std::string crt() const { return ca_dir_ + "/ca.crt"; }

  std::string dir_, ca_dir_;
};

TEST_F(PkiStoreTest, CreatesPrivateKeyAndPublicCertificate) {
  // A permissive umask must not leak the key.
  const mode_t old = umask(0);
  const Authority ca = Created();
  umask(old);

  EXPECT_EQ(Mode(key()), 0600u);
  EXPECT_EQ(Mode(crt()), 0644u);
  EXPECT_EQ(Mode(ca_dir_), 0700u);
  EXPECT_EQ(Slurp(key()), ca.key_pem);
  EXPECT_EQ(Slurp(crt()), ca.cert_pem);
  absl::StatusOr<CertificateInfo> info = Inspect(ca.cert_pem);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->is_ca);
  EXPECT_EQ(info->common_name, "varan cluster CA");
  // Only the two files: no temporary file left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator(ca_dir_)) {
    ++files;
  }
  EXPECT_EQ(files, 2);
}

TEST_F(PkiStoreTest, SecondCallLoadsTheSameAuthority) {
  const Authority first = Created();
  absl::StatusOr<StoredAuthority> again =
      LoadOrCreateAuthority(ca_dir_, "another name", kNow + kYear / 2, kYear);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->authority.cert_pem, first.cert_pem);
  EXPECT_EQ(again->authority.key_pem, first.key_pem);
}

TEST_F(PkiStoreTest, RefusesAKeyOthersCanRead) {
  Created();
  ASSERT_EQ(chmod(key().c_str(), 0644), 0);
  absl::Status s = Load().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(Message(s), AllOf(HasSubstr(key()), HasSubstr("0644")));
  ASSERT_EQ(chmod(key().c_str(), 0640), 0);
  EXPECT_EQ(Load().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(PkiStoreTest, RefusesALoneFile) {
  const Authority ca = Created();
  ASSERT_EQ(unlink(key().c_str()), 0);
  absl::Status s = Load().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(Message(s), AllOf(HasSubstr(crt()), HasSubstr(key())));
  // Nothing was replaced: the certificate is still the old CA's.
  EXPECT_EQ(Slurp(crt()), ca.cert_pem);

  ASSERT_EQ(unlink(crt().c_str()), 0);
  Write(key(), ca.key_pem, 0600);
  s = Load().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(Message(s), HasSubstr(crt()));
}

TEST_F(PkiStoreTest, RefusesAKeyThatDoesNotMatch) {
  Created();
  absl::StatusOr<std::string> other = NewPrivateKey();
  ASSERT_TRUE(other.ok());
  Write(key(), *other, 0600);
  absl::Status s = Load().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(Message(s),
              AllOf(HasSubstr(key()), HasSubstr("does not belong")));
}

TEST_F(PkiStoreTest, RefusesACertificateThatIsNotACa) {
  const Authority ca = Created();
  absl::StatusOr<std::string> leaf_key = NewPrivateKey();
  ASSERT_TRUE(leaf_key.ok());
  absl::StatusOr<std::string> leaf = IssueCertificate(
      ca, *leaf_key, pki_testing::Profile("core", true, false));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  Write(crt(), *leaf, 0644);
  Write(key(), *leaf_key, 0600);
  absl::Status s = Load().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(Message(s), AllOf(HasSubstr(crt()), HasSubstr("is not a CA")));
}

TEST_F(PkiStoreTest, MalformedFileIsInvalidArgumentNamingIt) {
  Created();
  Write(crt(), "not a certificate\n", 0644);
  absl::Status s = Load().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(Message(s), HasSubstr(crt()));
}

// Replicas of one cluster: the first CA offered is every replica's.
TEST_F(PkiStoreTest, AnEmptyDirectoryTakesTheClustersAuthority) {
  absl::StatusOr<Authority> cluster =
      CreateAuthority("varan cluster CA", kNow, kYear);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  int asked = 0;
  std::string offered;
  absl::StatusOr<StoredAuthority> ca = LoadOrCreateAuthority(
      ca_dir_, "varan cluster CA", kNow, kYear,
      [&](const Authority& mine) -> absl::StatusOr<Authority> {
        ++asked;
        offered = mine.cert_pem;
        return *cluster;
      });
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_EQ(asked, 1);
  EXPECT_NE(offered, cluster->cert_pem);  // it offered one of its own
  EXPECT_TRUE(ca->adopted);
  EXPECT_FALSE(ca->created);
  EXPECT_EQ(ca->authority.cert_pem, cluster->cert_pem);
  EXPECT_EQ(Slurp(crt()), cluster->cert_pem);
  EXPECT_EQ(Slurp(key()), cluster->key_pem);
  EXPECT_EQ(Mode(key()), 0600u);

  // The first replica: what it offered is what the cluster keeps.
  const std::string first_dir = dir_ + "/first";
  ca = LoadOrCreateAuthority(first_dir, "varan cluster CA", kNow, kYear,
                             [](const Authority& mine) { return mine; });
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_TRUE(ca->created);
  EXPECT_FALSE(ca->adopted);
  EXPECT_EQ(Slurp(first_dir + "/ca.crt"), ca->authority.cert_pem);
}

TEST_F(PkiStoreTest,
       ADirectoryHoldingAnotherAuthorityThanTheClustersIsRefused) {
  const Authority mine = Created();
  absl::StatusOr<Authority> cluster =
      CreateAuthority("varan cluster CA", kNow, kYear);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  absl::StatusOr<StoredAuthority> ca = LoadOrCreateAuthority(
      ca_dir_, "varan cluster CA", kNow, kYear,
      [&](const Authority&) -> absl::StatusOr<Authority> { return *cluster; });
  ASSERT_EQ(ca.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(ca.status()),
              AllOf(HasSubstr(crt()), HasSubstr(*AuthorityPin(mine.cert_pem)),
                    HasSubstr(*AuthorityPin(cluster->cert_pem)),
                    HasSubstr("other replicas share")));
  // Nothing was replaced.
  EXPECT_EQ(Slurp(crt()), mine.cert_pem);
  EXPECT_EQ(Slurp(key()), mine.key_pem);
  // Its own CA, once the cluster's, is loaded as before.
  ca = LoadOrCreateAuthority(ca_dir_, "varan cluster CA", kNow, kYear,
                             [](const Authority& m) { return m; });
  ASSERT_TRUE(ca.ok()) << ca.status();
  EXPECT_FALSE(ca->created || ca->adopted);
}

TEST_F(PkiStoreTest, WhatTheClusterAnswersIsCheckedAndErrorsPassThrough) {
  // Not a CA whose key matches: refused, and no file is written.
  absl::StatusOr<Authority> a = CreateAuthority("a", kNow, kYear);
  absl::StatusOr<Authority> b = CreateAuthority("b", kNow, kYear);
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<StoredAuthority> ca =
      LoadOrCreateAuthority(ca_dir_, "varan cluster CA", kNow, kYear,
                            [&](const Authority&) -> absl::StatusOr<Authority> {
                              return Authority{a->cert_pem, b->key_pem};
                            });
  EXPECT_FALSE(ca.ok());
  EXPECT_THAT(Message(ca.status()), HasSubstr("the cluster's CA"));
  EXPECT_FALSE(std::filesystem::exists(crt()));
  EXPECT_FALSE(std::filesystem::exists(key()));
  // The database unreachable: its error, and nothing written.
  ca = LoadOrCreateAuthority(ca_dir_, "varan cluster CA", kNow, kYear,
                             [](const Authority&) -> absl::StatusOr<Authority> {
                               return absl::UnavailableError("database down");
                             });
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(std::filesystem::exists(crt()));
}

// A CA made ahead of time (varanctl ca init) seeds a directory holding
// none, whatever the modes of its files (a Secret mounted 0440); the same
// CA again is fine, another is refused naming both pins.
TEST_F(PkiStoreTest, ACaMadeAheadOfTimeSeedsADirectoryHoldingNone) {
  const std::string from = dir_ + "/made";
  absl::StatusOr<StoredAuthority> made =
      LoadOrCreateAuthority(from, "varan cluster CA", kNow, kYear);
  ASSERT_TRUE(made.ok()) << made.status();
  ASSERT_EQ(chmod((from + "/ca.key").c_str(), 0440), 0);
  absl::StatusOr<bool> seeded = SeedAuthority(from, ca_dir_);
  ASSERT_TRUE(seeded.ok()) << seeded.status();
  EXPECT_TRUE(*seeded);
  EXPECT_EQ(Mode(key()), 0600u);
  EXPECT_EQ(Slurp(crt()), made->authority.cert_pem);
  absl::StatusOr<StoredAuthority> loaded = Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_FALSE(loaded->created);
  EXPECT_EQ(loaded->authority.key_pem, made->authority.key_pem);
  // Again: the same CA, nothing to do.
  seeded = SeedAuthority(from, ca_dir_);
  ASSERT_TRUE(seeded.ok()) << seeded.status();
  EXPECT_TRUE(*seeded);

  const std::string other = dir_ + "/other";
  absl::StatusOr<StoredAuthority> other_ca =
      LoadOrCreateAuthority(other, "varan cluster CA", kNow, kYear);
  ASSERT_TRUE(other_ca.ok()) << other_ca.status();
  seeded = SeedAuthority(other, ca_dir_);
  EXPECT_EQ(seeded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      Message(seeded.status()),
      AllOf(
          HasSubstr(crt()), HasSubstr("is not the CA in " + other),
          HasSubstr(AuthorityPin(other_ca->authority.cert_pem).value_or("?"))));
  EXPECT_EQ(Slurp(crt()), made->authority.cert_pem) << "left as it was";
}

TEST_F(PkiStoreTest, SeedingFromAnEmptyOrHalfDirectory) {
  const std::string from = dir_ + "/secret";
  ASSERT_TRUE(std::filesystem::create_directory(from));
  // Empty (an optional Secret that does not exist): nothing happens.
  absl::StatusOr<bool> seeded = SeedAuthority(from, ca_dir_);
  ASSERT_TRUE(seeded.ok()) << seeded.status();
  EXPECT_FALSE(*seeded);
  EXPECT_FALSE(std::filesystem::exists(crt()));
  // A certificate without its key: refused, naming both.
  const Authority ca = Created();
  Write(from + "/ca.crt", ca.cert_pem, 0644);
  seeded = SeedAuthority(from, dir_ + "/fresh");
  EXPECT_EQ(seeded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(seeded.status()),
              AllOf(HasSubstr(from + "/ca.crt exists but"),
                    HasSubstr(from + "/ca.key")));
  // A key that is not the certificate's.
  Write(from + "/ca.key", "not a key", 0600);
  seeded = SeedAuthority(from, dir_ + "/fresh");
  EXPECT_FALSE(seeded.ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/fresh/ca.crt"));
}

}  // namespace
}  // namespace varan::pki
