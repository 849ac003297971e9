// Tests for common/secrets.h: generation, private files, and errors that
// name the file but never leak the secret.
#include "common/secrets.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace varan {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/varan-secrets-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static unsigned Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  std::string dir_;
};

TEST_F(SecretsTest, GenerateSecretIs64LowercaseHexAndFresh) {
  const std::string a = GenerateSecret();
  const std::string b = GenerateSecret();
  for (const std::string& s : {a, b}) {
    ASSERT_EQ(s.size(), 64u) << s;
    for (char c : s) {
      EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << s;
    }
  }
  EXPECT_NE(a, b);
}

TEST_F(SecretsTest, WriteSecretFileIsPrivateAndReadsBackTrimmed) {
  const std::string path = dir_ + "/token";
  const std::string secret = GenerateSecret();
  ASSERT_TRUE(WriteSecretFile(path, secret).ok());
  EXPECT_EQ(Mode(path), 0600u);
  EXPECT_EQ(Slurp(path), secret + "\n");
  absl::StatusOr<std::string> read = ReadSecretFile(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, secret);
  // No temporary file is left beside it.
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    names.push_back(e.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"token"});
}

TEST_F(SecretsTest, WriteSecretFileReplacesAWorldReadableFile) {
  const std::string path = dir_ + "/token";
  std::ofstream(path) << "old\n";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  // A stale temporary file from a crashed writer must not keep its mode.
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  std::ofstream(tmp) << "stale\n";
  ASSERT_EQ(chmod(tmp.c_str(), 0666), 0);
  ASSERT_TRUE(WriteSecretFile(path, "new-secret").ok());
  EXPECT_EQ(Mode(path), 0600u);
  EXPECT_EQ(Slurp(path), "new-secret\n");
}

TEST_F(SecretsTest, ReadSecretFileTrimsSurroundingWhitespace) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc", "abc"},
      {"abc\n", "abc"},
      {"  abc \r\n\t", "abc"},
      {"\n\nab c\n", "ab c"},
  };
  for (const auto& [content, want] : cases) {
    SCOPED_TRACE(content);
    const std::string path = dir_ + "/s";
    std::ofstream(path) << content;
    absl::StatusOr<std::string> read = ReadSecretFile(path);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, want);
  }
}

TEST_F(SecretsTest, EnsureSecretFileCreatesOnceThenReuses) {
  const std::string path = dir_ + "/join.token";
  bool created = false;
  absl::StatusOr<std::string> first = EnsureSecretFile(path, &created);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(created);
  EXPECT_EQ(first->size(), 64u);
  EXPECT_EQ(Mode(path), 0600u);
  EXPECT_EQ(Slurp(path), *first + "\n");

  absl::StatusOr<std::string> second = EnsureSecretFile(path, &created);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(created);
  EXPECT_EQ(*second, *first);
}

TEST_F(SecretsTest, EnsureSecretFileDoesNotOverwriteAnEmptyFile) {
  const std::string path = dir_ + "/join.token";
  std::ofstream(path) << "\n";
  bool created = true;
  absl::StatusOr<std::string> got = EnsureSecretFile(path, &created);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(created);
  EXPECT_EQ(Slurp(path), "\n");
}

TEST_F(SecretsTest, ReadingAMissingFileIsNotFoundNamingThePath) {
  const std::string path = dir_ + "/missing.token";
  absl::StatusOr<std::string> read = ReadSecretFile(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(path));
}

TEST_F(SecretsTest, EmptyOrBlankFileIsInvalidArgumentNamingThePath) {
  for (const std::string content : {"", "\n", "  \t\n "}) {
    SCOPED_TRACE(content);
    const std::string path = dir_ + "/empty.token";
    std::ofstream(path) << content;
    absl::StatusOr<std::string> read = ReadSecretFile(path);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(read.status().message()), HasSubstr(path));
  }
}

TEST_F(SecretsTest, ErrorsNeverContainTheSecret) {
  const std::string secret = GenerateSecret();

  // An oversized file made of the secret.
  const std::string big = dir_ + "/big.token";
  {
    std::ofstream out(big);
    for (int i = 0; i < 2000; ++i) out << secret << "\n";
  }
  absl::StatusOr<std::string> read = ReadSecretFile(big);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr(big));
  EXPECT_THAT(read.status().ToString(), Not(HasSubstr(secret)));

  // Writing where no directory exists.
  const std::string nowhere = dir_ + "/no/such/dir/token";
  absl::Status write = WriteSecretFile(nowhere, secret);
  ASSERT_FALSE(write.ok());
  EXPECT_EQ(write.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(write.message()), HasSubstr(nowhere));
  EXPECT_THAT(write.ToString(), Not(HasSubstr(secret)));
  EXPECT_FALSE(std::filesystem::exists(nowhere));
}

TEST_F(SecretsTest, SecretEquals) {
  struct Case {
    std::string a, b;
    bool want;
  };
  const std::vector<Case> cases = {
      {"abc", "abc", true},  {"", "", true},
      {"abc", "abd", false}, {"abc", "xbc", false},
      {"abc", "ab", false},  {"ab", "abc", false},
      {"", "a", false},      {"ab", std::string("ab\0", 3), false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.a + " vs " + c.b);
    EXPECT_EQ(SecretEquals(c.a, c.b), c.want);
    EXPECT_EQ(SecretEquals(c.b, c.a), c.want);
  }
  const std::string s = GenerateSecret();
  EXPECT_TRUE(SecretEquals(s, std::string(s)));
}

TEST_F(SecretsTest, EnsurePrivateDirCreatesParentsWithMode0700) {
  const std::string dir = dir_ + "/a/b/state";
  ASSERT_TRUE(EnsurePrivateDir(dir).ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_EQ(Mode(dir), 0700u);
  // Existing directories are fine.
  EXPECT_TRUE(EnsurePrivateDir(dir).ok());
}

TEST_F(SecretsTest, EnsurePrivateDirRejectsAFile) {
  const std::string file = dir_ + "/file";
  std::ofstream(file) << "x";
  absl::Status status = EnsurePrivateDir(file);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr(file));
}

}  // namespace
}  // namespace varan

namespace varan {
namespace {

TEST(SecretHashTest, IsSha256InHex) {
  // FIPS 180-2 test vector.
  EXPECT_EQ(SecretHash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_NE(SecretHash("a"), SecretHash("b"));
}

TEST(LoosePermissionsTest, WarnsAboutFilesOthersCanRead) {
  char tmpl[] = "/tmp/varan-perm-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string path = std::string(tmpl) + "/token";
  ASSERT_TRUE(WriteSecretFile(path, "x").ok());
  EXPECT_EQ(LoosePermissionsWarning(path), "");  // 0600
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  EXPECT_THAT(
      LoosePermissionsWarning(path),
      ::testing::AllOf(::testing::HasSubstr(path), ::testing::HasSubstr("0640"),
                       ::testing::HasSubstr("chmod 600")));
  EXPECT_EQ(LoosePermissionsWarning(path + ".missing"), "");
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace varan
